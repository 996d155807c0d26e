"""The kernels' paths for tile SRAM too small to hold whole operands, against numpy.

- Attention walking the keys in blocks (online softmax): the tiny models' heads fit any tile
  SRAM whole, so the compiler is asked for key blocks of 8; the prefill's causal blocks then
  cross the diagonal, and the decode step's blocks come partly from the KV cache the prefill
  wrote and partly from the step's own keys.
- Weight streaming with x in slices: with 24 KiB of SRAM per SM, x no longer fits next to the
  weight chunks, so each chunk comes with its columns of x.
"""
import numpy as np
import pytest

import tessera
from test_functional_models import (check_prefill_then_decode, load, logits_of, random_weights, reference_logits,
                                    rel_l2, tiny_config)


@pytest.mark.parametrize("preset", ["maia100-class", "h100-sxm"])
def test_key_blocks_match_numpy(tmp_path, preset):
    cfg, path = tiny_config(tmp_path, "llama")
    # 19 + 1 positions: blocks of 8, 8 and 4, the last straddling cache and step.
    prefill = check_prefill_then_decode(tessera.Arch.load(preset), cfg, path, B=2, S=19, seed=3, label=preset,
                                        attention_key_block=8)
    assert "keys in blocks of 8" in prefill.tiled


def test_x_slices_match_numpy(tmp_path):
    cfg, path = tiny_config(tmp_path, "llama")
    arch = tessera.Arch.load("h100-sxm", ["chip.tile.sram.capacity=24KiB"])
    B, S = 2, 8
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 256, size=(B, S))
    prefill = tessera.compile_model(arch, path, phase="prefill", batch=B, seq=S, token_ids=ids.ravel().tolist(),
                                    all_logits=True)
    assert "x in slices" in prefill.tiled
    weights = random_weights(prefill, seed=13)
    sim = tessera.Simulation(arch, functional=True)
    load(sim, prefill, weights)
    sim.run(prefill)
    got = logits_of(sim, prefill, B * S, 256)
    want = reference_logits(cfg, weights, ids).reshape(B * S, 256)
    assert rel_l2(got, want) < 2e-2, f"relative L2 error {rel_l2(got, want):.4f}"
