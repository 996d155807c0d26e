"""The ONNX path end to end: a tiny Llama-style decoder built in PyTorch, exported to ONNX,
imported, compiled, simulated in functional mode; its logits match PyTorch's."""
import os
import subprocess
import sys

import numpy as np
import pytest

import tessera

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "compiler", "onnx", "make_tiny_decoder.py")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    subprocess.run([sys.executable, SCRIPT, str(out), "--batch", "2", "--seq", "8"], check=True)
    return out


@pytest.mark.parametrize("preset", ["maia100-class", "tpu-v4-class", "h100-sxm"])
def test_onnx_decoder_logits_match_pytorch(exported, preset):
    ids = np.load(exported / "input_ids.npy")
    want = np.load(exported / "logits.npy").astype(np.float64)
    arch = tessera.Arch.load(preset)
    program = tessera.compile_onnx(arch, str(exported / "tiny_decoder.onnx"), token_ids=ids.ravel().tolist())
    sim = tessera.Simulation(arch, functional=True)
    for t in program.tensors:
        if "data" in t:
            sim.write(t["addr"], t["data"], t["dtype"])
    sim.run(program)
    out = next(t for t in program.tensors if t["name"] == "logits")
    got = sim.read(out["addr"], int(np.prod(out["shape"])), out["dtype"]).reshape(want.shape)
    err = float(np.linalg.norm(got - want) / np.linalg.norm(want))
    assert err < 2e-2, f"{preset}: relative L2 error {err:.4f}"
