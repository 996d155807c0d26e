"""The kernels' paths for tile SRAM too small to hold whole operands, against numpy.

- Attention walking the keys in blocks (online softmax): the tiny models' heads fit any tile
  SRAM whole, so the compiler is asked for key blocks of 8; the prefill's causal blocks then
  cross the diagonal, and the decode step's blocks come partly from the KV cache the prefill
  wrote and partly from the step's own keys.
- Weight streaming with x in slices: with 24 KiB of SRAM per SM, x no longer fits next to the
  weight chunks, so each chunk comes with its columns of x.
- A wider model on 48 KiB tiles: weight streams take x in slices, tokens in groups and K split
  over tiles (fp32 partials reduced after a barrier); SwiGLU rows spread over several tiles.
- Decode attention with few long units (keys split in ranges, combined after a barrier) and with
  more short units than tiles (96 on 64: taken in groups).
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
    # Without a launch gap the chip is not one that runs kernels one after another: a weight stream
    # prefetches during the op before it, in half the SRAM, where x no longer fits whole.
    arch = tessera.Arch.load("h100-sxm", ["chip.tile.sram.capacity=24KiB", "chip.launch.gap=0us"])
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


def test_narrow_tiles_match_numpy(tmp_path):
    cfg, path = tiny_config(tmp_path, "llama", hidden_size=256, intermediate_size=1024)
    arch = tessera.Arch.load("maia100-class", ["chip.tile.sram.capacity=48KiB"])
    prefill = check_prefill_then_decode(arch, cfg, path, B=2, S=16, seed=7, label="maia100-class, 48 KiB tiles")
    for path_taken in ("x in slices", "tokens in groups of", "K split over 2 tiles", "columns over 2 tiles"):
        assert path_taken in prefill.tiled, path_taken


@pytest.mark.parametrize("B,S,expect", [(1, 1200, "keys split in 2 ranges"), (48, 24, "96 units")])
def test_decode_attention_paths_match_numpy(tmp_path, B, S, expect):
    cfg, path = tiny_config(tmp_path, "llama", max_position_embeddings=2048)
    arch = tessera.Arch.load("maia100-class")
    check_prefill_then_decode(arch, cfg, path, B=B, S=S, seed=11, label=f"maia100-class B={B} S={S}")
    decode = tessera.compile_model(arch, path, phase="decode", batch=B, context=S, cache_capacity=S + 1)
    assert expect in decode.tiled
