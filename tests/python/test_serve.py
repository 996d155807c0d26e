"""tessera.serve from Python: the report's latency figures against numpy over its own per-request
results (tessera.to_dataframe), throughput and SLO attainment recomputed from them, and errors."""
import json
import os

import numpy as np
import pytest

import tessera


def small_llama(tmp_path):
    path = os.path.join(tmp_path, "small-llama.json")
    with open(path, "w") as f:
        json.dump({"model_type": "llama", "hidden_size": 256, "intermediate_size": 704, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 8192, "rms_norm_eps": 1e-5,
                   "rope_theta": 500000.0, "max_position_embeddings": 2048}, f)
    return path


def test_serve_report_matches_its_requests(tmp_path):
    arch = tessera.Arch.load("tpu-v4-class")
    r = tessera.serve(arch, small_llama(tmp_path), synthetic="rate=400,prompt=uniform:16:900,output=uniform:1:60,"
                      "arrivals=gamma,cv=2,count=60,seed=5", slo="ttft=150us,tpot=30us", max_running=16,
                      trace=os.path.join(tmp_path, "serve.json"))
    df = tessera.to_dataframe(r)
    assert len(df) == r["requests"] == 60
    assert (df.ttft > 0).all() and (df.first_token >= df.scheduled).all() and (df.finished >= df.first_token).all()
    for key in ("p50", "p90", "p99"):
        q = float(key[1:])
        assert r["ttft"][key] == pytest.approx(np.percentile(df.ttft, q), rel=1e-12)
        assert r["latency"][key] == pytest.approx(np.percentile(df.latency, q), rel=1e-12)
        assert r["tpot"][key] == pytest.approx(np.percentile(df.tpot[df.output_tokens > 1], q), rel=1e-12)
    span = df.finished.max() - df.arrival.min()
    assert r["requests_per_s"] == pytest.approx(60 / span)
    assert r["output_tokens_per_s"] == pytest.approx(df.output_tokens.sum() / span)
    met = ((df.ttft <= 150e-6) & (df.tpot <= 30e-6)).mean()
    assert r["slo_attainment"] == pytest.approx(met)
    assert 0 < met < 1, "the targets should split the requests"
    with open(os.path.join(tmp_path, "serve.json")) as f:
        events = json.load(f)["traceEvents"]
    assert sum(e["ph"] == "X" for e in events) == r["iterations"]


def test_serve_errors(tmp_path):
    arch = tessera.Arch.load("tpu-v4-class")
    with pytest.raises(tessera.TesseraError, match="give a trace or synthetic traffic"):
        tessera.serve(arch, small_llama(tmp_path))
    with pytest.raises(tessera.TesseraError, match="a window from 0 s for -5 s"):
        tessera.serve(arch, small_llama(tmp_path), synthetic="rate=1,prompt=8,output=8,count=2", duration=-5)
    with pytest.raises(tessera.TesseraError, match="--slo ttft"):
        tessera.serve(arch, small_llama(tmp_path), synthetic="rate=1,prompt=8,output=8,count=2", slo="ttft=fast")


def test_plan_rows_and_the_cheapest(tmp_path):
    systems = [tessera.Arch.load(n) for n in ("maia100-class", "h100-sxm")]
    p = tessera.plan(systems, small_llama(tmp_path), synthetic="rate=20,prompt=uniform:16:400,output=uniform:2:20,"
                     "count=40,seed=3", slo="ttft=1s,tpot=100ms", loads=[1, 8], requests_per_user_month=200,
                     disaggregation=False, max_running=16, max_batched_tokens=512)
    df = tessera.to_dataframe(p)
    assert len(df) == 4 and set(df.system) == {"maia100-class", "h100-sxm"} and list(df.load) == [1, 1, 8, 8]
    assert df.feasible.all() and (df.slo_attainment >= 0.9).all()
    # $ per user-month: the fleet's $/hour over the requests it serves an hour, times a user's.
    np.testing.assert_allclose(df.usd_per_user_month_owned,
                               df.usd_per_hour_owned / (df.requests_per_s * 3600) * 200, rtol=1e-12)
    for c in p["cheapest"]:
        rows = df[df.load == c["load"]]
        assert df.usd_per_hour_owned[c["row"]] == rows.usd_per_hour_owned.min()
    with pytest.raises(tessera.TesseraError, match="give an SLO to plan for"):
        tessera.plan(systems, small_llama(tmp_path), synthetic="rate=1,prompt=8,output=2,count=2")
