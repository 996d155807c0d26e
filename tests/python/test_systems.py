"""Every multi-chip preset runs a model split over its chips by tensor parallelism (a decode step
of Llama-3-8B, batch 8, context 256): the report covers all its chips, the all-reduces take time
and move bytes over the links (their energy counted), utilisation is the chips' mean (at most 1),
and the step is faster than on one of its chips. A model whose heads do not split over the chips
is refused naming the chip counts that split it. Label slow: Release build only."""
import pytest

import tessera

SYSTEMS = [p for p in tessera.Arch.presets() if tessera.Arch.load(p).to_dict()["system"]["chips"] > 1]


def test_there_are_system_presets():
    assert {"hgx-h100x8", "mi300x-x8", "maia100-x8", "hgx-h100x16"} <= set(SYSTEMS)


@pytest.mark.parametrize("preset", SYSTEMS)
def test_a_model_split_over_the_system(preset):
    arch = tessera.Arch.load(preset)
    chips = arch.to_dict()["system"]["chips"]
    step = dict(model="llama-3-8b", phase="decode", batch=8, context=256)
    r = tessera.run(arch, **step)
    assert r["chips"] == chips
    ops = {op["name"]: op for op in r["breakdown"]["ops"]}
    assert ops["attn_all_reduce"]["seconds"] > 0 and ops["mlp_all_reduce"]["seconds"] > 0
    assert r["energy_breakdown_j"]["link"] > 0
    for resource in ("compute", "hbm_bandwidth", "dma", "noc"):
        assert 0 < r["utilization"][resource] <= 1.0, resource
    one = tessera.run(arch, chips=1, **step)
    assert r["seconds"] < one["seconds"], f"{chips} chips {r['seconds']:.3g} s, one {one['seconds']:.3g} s"


def test_a_model_that_does_not_split_says_what_does():
    with pytest.raises(Exception, match=r"28 attention heads do not split evenly over 8 chips .*it splits over 2, 4 chips"):
        tessera.run(tessera.Arch.load("hgx-h100x8"), model="qwen2-7b", phase="decode", batch=1, context=16)
