"""A CI-sized part of the coverage matrix (tools/bench/coverage.py runs all of it): shipped models
on every preset at serving shapes, each of which must run (or be refused because it does not
fit HBM) and reach its share of the roofline computed from the model's shapes alone
(tools/bench/roofline.py): 50% when the roofline time is 1 ms or more, 20% when shorter.
Label slow: Release build only."""
import os
import sys

import pytest

import tessera

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools", "bench"))
import roofline  # noqa: E402

# (preset, model, dtype, phase, batch, length): the kernel paths serving exercises on each
# kind of chip: weight streams with split K or groups of tokens, GEMMs through L2 or multicast,
# wide SwiGLU rows (70B on a GPU), attention over long contexts with split keys, grouped short
# units, the MoE experts, and the preset whose NoC starved its HBM.
CASES = [
    ("maia100-class", "llama-3-8b", "bf16", "decode", 32, 1024),
    ("maia100-class", "mistral-7b", "bf16", "decode", 1, 8192),
    ("maia100-class", "gpt2", "bf16", "prefill", 1, 128),
    ("h100-sxm", "llama-3.1-70b", "fp8e4m3", "decode", 1, 4096),
    ("h200-sxm", "llama-3-70b", "fp8e4m3", "decode", 8, 2048),
    ("h100-sxm", "llama-3-8b", "bf16", "decode", 128, 128),
    ("tpu-v4-class", "llama-3-8b", "bf16", "decode", 32, 2048),
    ("a100-sxm", "qwen2-7b", "bf16", "decode", 8, 8192),
    ("mi300x", "mixtral-8x7b", "fp8e4m3", "decode", 32, 2048),
    ("b200", "llama-3-8b", "fp8e4m3", "decode", 8, 128),
    ("b200", "llama-3.1-405b", "fp8e4m3", "decode", 1, 128),  # does not fit: refused for HBM
]


@pytest.mark.parametrize("preset,model,dtype,phase,batch,length", CASES,
                         ids=["-".join(map(str, c)) for c in CASES])
def test_runs_near_its_roofline(preset, model, dtype, phase, batch, length):
    arch = tessera.Arch.load(preset)
    kw = {"seq" if phase == "prefill" else "context": length}
    try:
        r = tessera.run(arch, model=model, phase=phase, batch=batch, dtype=dtype, **kw)
    except tessera.CompileError as e:
        assert " of HBM " in str(e), f"refused for something other than HBM capacity: {e}"
        assert roofline.step(model, phase, batch, length, dtype)[1] > arch.derived()["hbm_capacity"] * 0.5
        return
    d = arch.derived()
    roof = roofline.roofline_seconds(model, phase, batch, length, d["peak_flops"],
                                     d["hbm_bandwidth"], dtype)
    need = 0.5 if roof >= 1e-3 else 0.2
    assert roof / r["seconds"] >= need, f"{roof / r['seconds']:.2f} of its roofline ({r['bound']})"
    # The simulator does the model's work: FLOPs as the roofline counts them. An MoE decode step
    # runs every token row of its block through each expert that has tokens (it is bound by
    # reading their weights): the routed FLOPs, and up to E / k times them on the experts.
    flops = roofline.step(model, phase, batch, length, dtype)[0]
    shapes = roofline.Shapes(model)
    if shapes.experts and phase == "decode":
        assert flops * 0.98 <= r["flops"] <= flops * shapes.experts / shapes.top_k
    else:
        assert r["flops"] == pytest.approx(flops, rel=0.02)
