"""The Python module's run/compare API: reports as dicts and DataFrames, derived designs, many
runs in one process, errors as Python exceptions with the CLI's messages."""
import json
import os

import pytest

import tessera

SMALL_LLAMA = {"model_type": "llama", "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 4,
               "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 4096, "rms_norm_eps": 1e-5,
               "rope_theta": 10000.0, "max_position_embeddings": 2048}


@pytest.fixture
def model(tmp_path):
    path = os.path.join(tmp_path, "small-llama.json")
    with open(path, "w") as f:
        json.dump(SMALL_LLAMA, f)
    return path


def test_run_reports_the_figures_users_compare(model):
    arch = tessera.Arch.load("maia100-class")
    r = tessera.run(arch, model=model, phase="decode", batch=8, context=256)
    for key in ("seconds", "tokens_per_s", "flops", "hbm_bytes", "energy_j", "avg_power_w", "peak_power_w",
                "joules_per_token", "usd_per_hour", "usd_per_million_tokens", "bound", "utilization"):
        assert key in r, key
    assert r["tokens"] == 8
    assert r["tokens_per_s"] == pytest.approx(8 / r["seconds"])
    assert r["usd_per_million_tokens"] == pytest.approx(r["usd_per_hour"] / (r["tokens_per_s"] * 3600) * 1e6)
    assert "stats" not in r
    assert "system.chip0.hbm.read_bytes" in tessera.run(arch, model=model, phase="decode", batch=8, context=256, stats=True)["stats"]


def test_moe_options_reach_the_run(tmp_path):
    """Expert parallelism, the mapping search over it, a routing skew and a capacity factor from
    Python: ep 2 on 2 chips is reported; a skewed routing leaves experts unread at batch 8."""
    path = os.path.join(tmp_path, "small-mixtral.json")
    with open(path, "w") as f:
        json.dump(dict(SMALL_LLAMA, model_type="mixtral", num_local_experts=8, num_experts_per_tok=2), f)
    two = tessera.Arch.load("maia100-class", ["system.chips=2", "system.topology=fully_connected", "system.link.count=1"])
    r = tessera.run(two, model=path, phase="decode", batch=8, context=256, tp=2, ep=2)
    assert r["parallelism"] == {"tp": 2, "pp": 1, "ep": 2}
    searched = tessera.run(two, model=path, phase="decode", batch=8, context=256)
    assert {t["ep"] for t in searched["mapping_search"]} <= {1, 2} and searched["parallelism"]["ep"] in (1, 2)
    one = tessera.Arch.load("maia100-class")
    uniform = tessera.run(one, model=path, phase="decode", batch=8, context=256)
    skewed = tessera.run(one, model=path, phase="decode", batch=8, context=256, routing_skew=3.0, routing_seed=2)
    assert skewed["hbm_bytes"] < uniform["hbm_bytes"]
    dropping = tessera.run(one, model=path, phase="prefill", batch=1, seq=256, capacity_factor=0.5)
    assert dropping["flops"] < tessera.run(one, model=path, phase="prefill", batch=1, seq=256)["flops"]


def test_a_derived_design_changes_the_result(model):
    base = tessera.Arch.load("maia100-class")
    faster = base.with_(**{"hbm.data_rate": "7Gbps"})
    slow = tessera.run(base, model=model, phase="decode", batch=8, context=256)
    fast = tessera.run(faster, model=model, phase="decode", batch=8, context=256)
    assert fast["seconds"] < slow["seconds"]  # decode is memory-bound: twice the pin rate helps


def test_operators_and_many_runs_in_one_process():
    arch = tessera.Arch.load("h100-sxm")
    runs = [tessera.run(arch, op="gemm", shape=[n, n, n]) for n in (256, 512, 1024)]
    assert [r["flops"] for r in runs] == [2.0 * n ** 3 for n in (256, 512, 1024)]
    copy = tessera.run(arch, op="copy", shape=[1 << 24])
    assert copy["hbm_bytes"] == 2 * (1 << 24)


def test_compare_gives_ratios_and_a_dataframe(model):
    pd = pytest.importorskip("pandas")
    systems = [tessera.Arch.load("maia100-class"), tessera.Arch.load("h100-sxm")]
    result = tessera.compare(systems, model=model, phase="decode", batch=8, context=256)
    assert len(result) == 1 and [s["system"] for s in result[0]["systems"]] == ["maia100-class", "h100-sxm"]
    first, second = result[0]["systems"]
    assert first["vs_first"]["tokens_per_s"] == 1.0
    assert second["vs_first"]["tokens_per_s"] == pytest.approx(second["tokens_per_s"] / first["tokens_per_s"])
    df = tessera.to_dataframe(result)
    assert isinstance(df, pd.DataFrame)
    assert list(df["system"]) == ["maia100-class", "h100-sxm"]
    assert "utilization.hbm_bandwidth" in df.columns and "vs_first.tokens_per_joule" in df.columns


def test_compare_of_no_systems_is_an_error():
    with pytest.raises(tessera.TesseraError, match="compare: no systems given"):
        tessera.compare([])


def test_compare_gives_a_failed_run_as_a_row_with_its_error(model):
    pd = pytest.importorskip("pandas")
    base = tessera.Arch.load("maia100-class")
    tiny = base.with_(**{"name": "maia-16mib", "hbm.capacity": "16MiB"})  # the model's 32 MB do not fit
    result = tessera.compare([base, tiny], model=model, phase="decode", batch=8, context=256)
    ok, failed = result[0]["systems"]
    assert ok["vs_first"]["tokens_per_s"] == 1.0
    assert set(failed) == {"system", "workload", "error"}
    assert failed["system"] == "maia-16mib" and "needs 0.04 GB of HBM" in failed["error"]
    df = tessera.to_dataframe(result)
    assert list(df["system"]) == ["maia100-class", "maia-16mib"]
    assert df["error"].isna().tolist() == [True, False] and df["tokens_per_s"].isna().tolist() == [False, True]
    # The first system failing leaves the others without ratios.
    ok = tessera.compare([tiny, base], model=model, phase="decode", batch=8, context=256)[0]["systems"][1]
    assert "tokens_per_s" in ok and "vs_first" not in ok
    # Mistakes in the request still raise.
    with pytest.raises(tessera.TesseraError, match="pricing must be owned or cloud"):
        tessera.compare([base, tiny], model=model, phase="decode", batch=8, context=256, pricing="rented")


def test_errors_are_python_exceptions_with_the_cli_messages(model):
    arch = tessera.Arch.load("maia100-class")
    with pytest.raises(tessera.ArchError, match="hbm.stacks"):
        arch.with_(**{"hbm.stacks": 0})
    with pytest.raises(tessera.TesseraError, match="--shape M,K,N"):
        tessera.run(arch, op="gemm", shape=[1, 2])
    with pytest.raises(tessera.CompileError, match="needs 137.96 GB of HBM"):
        tessera.run(arch, model="llama-2-70b", phase="decode", batch=1, context=16)


def test_the_sweep_example_plots_tokens_per_joule(model, tmp_path):
    # The example script as a user runs it, on the small model and two rates to stay quick.
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "tools", "python", "examples", "sweep_hbm_data_rate.py")
    spec = importlib.util.spec_from_file_location("sweep_hbm_data_rate", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = os.path.join(tmp_path, "plot.png")
    reports = example.main(out, rates=[2.4, 6.4], model=model, reference="maia100-class")
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert [r["hbm_data_rate_gbps"] for r in reports] == [2.4, 6.4]
    # A decode step that reads every weight gets faster with faster HBM.
    assert reports[1]["seconds"] < reports[0]["seconds"]
