"""Every multi-chip preset runs a model mapped onto all its chips (a decode step of Llama-3-8B,
batch 8, context 256, the mapping left to the search: tensor parallelism, in pipeline stages
where the heads do not split over every chip, as on the 72 GPUs of gb200-nvl72 or the 64 chips
of tpu-v5p-x64): the report covers all its chips, tp x pp is the chips, the TDP is theirs, the
all-reduces take time and move bytes over the links (their energy counted), utilisation is the
chips' mean (at most 1), and the step is faster than on one of its chips. A model whose heads do
not split over the `tp` asked for is refused naming the chip counts that split it.
Label slow: Release build only. Host time: about 25 s of it is gb200-nvl72's 72 chips."""
import pytest

import tessera

SYSTEMS = [p for p in tessera.Arch.presets() if tessera.Arch.load(p).to_dict()["system"]["chips"] > 1]


def test_there_are_system_presets():
    assert {"hgx-h100x8", "mi300x-x8", "maia100-x8", "hgx-h100x16", "gb200-nvl72", "maia200-server",
            "maia200-x8", "tpu-v5p-x64"} <= set(SYSTEMS)


@pytest.mark.parametrize("preset", SYSTEMS)
def test_a_model_split_over_the_system(preset):
    arch = tessera.Arch.load(preset)
    chips = arch.to_dict()["system"]["chips"]
    step = dict(model="llama-3-8b", phase="decode", batch=8, context=256)
    r = tessera.run(arch, **step)
    assert r["chips"] == chips
    assert r["parallelism"]["tp"] * r["parallelism"]["pp"] == chips
    assert r["tdp_w"] == pytest.approx(chips * arch.to_dict()["power"]["tdp"])
    ops = {op["name"]: op for op in r["breakdown"]["ops"]}
    assert ops["attn_all_reduce"]["seconds"] > 0 and ops["mlp_all_reduce"]["seconds"] > 0
    assert r["energy_breakdown_j"]["link"] > 0
    for resource in ("compute", "hbm_bandwidth", "dma", "noc"):
        assert 0 < r["utilization"][resource] <= 1.0, resource
    one = tessera.run(arch, chips=1, **step)
    assert r["seconds"] < one["seconds"], f"{chips} chips {r['seconds']:.3g} s, one {one['seconds']:.3g} s"


def test_a_model_that_does_not_split_says_what_does():
    with pytest.raises(Exception, match=r"28 attention heads do not split evenly over 8 chips .*it splits over 2, 4 chips"):
        tessera.run(tessera.Arch.load("hgx-h100x8"), model="qwen2-7b", phase="decode", batch=1, context=16,
                    tp=8)
