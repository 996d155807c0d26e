"""Tessera: simulate LLM inference on in-house AI accelerators and compare with GPUs.

    import tessera
    arch = tessera.Arch.load("maia100-class").with_(**{"hbm.stacks": 6})
    program = tessera.compile_model(arch, "llama-3-8b", phase="decode", batch=32, context=1024)
    result = tessera.Simulation(arch).run(program)
"""
from ._tessera import (  # noqa: F401
    Arch,
    ArchError,
    CompileError,
    Program,
    SimError,
    Simulation,
    TesseraError,
    compile_model,
    compile_onnx,
)
