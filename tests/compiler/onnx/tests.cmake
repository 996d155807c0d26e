# Tests of the ONNX frontend (included from tests/CMakeLists.txt).
