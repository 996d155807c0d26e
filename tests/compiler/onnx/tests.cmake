# Tests of the ONNX frontend (included from tests/CMakeLists.txt).
# The models they import are exported from PyTorch into the build tree by the fixture
# onnx_models (generated files are not committed): the default tiny decoder, one with batch 2
# and another prompt length, and one exported with dynamic batch and sequence axes.
if(NOT Python3_EXECUTABLE)
  set(Python3_EXECUTABLE /usr/bin/python3)  # Debian's, which has torch and onnx
endif()
set(onnx_data ${CMAKE_CURRENT_BINARY_DIR}/compiler/onnx)
set(onnx_script ${CMAKE_CURRENT_SOURCE_DIR}/compiler/onnx/make_tiny_decoder.py)
add_test(NAME onnx_make_tiny_decoder COMMAND ${Python3_EXECUTABLE} ${onnx_script} ${onnx_data}/tiny)
add_test(NAME onnx_make_tiny_decoder_b2 COMMAND ${Python3_EXECUTABLE} ${onnx_script} ${onnx_data}/b2 --batch 2 --seq 5)
add_test(NAME onnx_make_tiny_decoder_dynamic COMMAND ${Python3_EXECUTABLE} ${onnx_script} ${onnx_data}/dynamic --dynamic)
set_tests_properties(onnx_make_tiny_decoder onnx_make_tiny_decoder_b2 onnx_make_tiny_decoder_dynamic
                     PROPERTIES FIXTURES_SETUP onnx_models LABELS unit)

# Not tessera_test(): the discovered tests must require the fixture.
add_executable(onnx_frontend_tests compiler/onnx/onnx_frontend_test.cpp)
target_link_libraries(onnx_frontend_tests PRIVATE tessera_onnx GTest::gtest GTest::gtest_main GTest::gmock fmt::fmt)
target_compile_definitions(onnx_frontend_tests PRIVATE TESSERA_ONNX_DATA="${onnx_data}")
gtest_discover_tests(onnx_frontend_tests TEST_PREFIX onnx.
                     PROPERTIES LABELS unit FIXTURES_REQUIRED onnx_models DISCOVERY_TIMEOUT 60)
