"""Tessera: simulate LLM inference on in-house AI accelerators and compare with GPUs.

    import tessera
    arch = tessera.Arch.load("maia100-class").with_(**{"hbm.stacks": 6})
    report = tessera.run(arch, model="llama-3-8b", phase="decode", batch=32, context=1024)
    print(report["tokens_per_s"], report["joules_per_token"], report["usd_per_million_tokens"])

    systems = [tessera.Arch.load(n) for n in ("maia100-class", "h100-sxm")]
    table = tessera.to_dataframe(tessera.compare(systems))  # the built-in Llama-3-8B comparison

    served = tessera.serve(tessera.Arch.load("h100-sxm"), "llama-3-8b", requests="conv.csv", duration=300,
                           slo="ttft=500ms,tpot=50ms")
    print(served["ttft"]["p99"], served["slo_attainment"], served["usd_per_million_output_tokens"])
    per_request = tessera.to_dataframe(served)  # one row per request

    plan = tessera.plan([tessera.Arch.load(n) for n in ("hgx-h100x8", "maia100-x8")], "llama-3-8b",
                        requests="code.csv", duration=600, slo="ttft=500ms,tpot=50ms", loads=[1, 4])
    rows = tessera.to_dataframe(plan)  # replicas, $/hour, $/M tokens, $ per user-month per system

Lower level: compile_model / compile_onnx give a Program; Simulation runs it (functional=True
moves real numbers: write inputs, run, read results).
"""
from ._tessera import (  # noqa: F401
    Arch,
    ArchError,
    CompileError,
    Program,
    SimError,
    Simulation,
    TesseraError,
    compare,
    compile_model,
    compile_onnx,
    plan,
    run,
    serve,
)


def _flatten(report, prefix=""):
    row = {}
    for key, value in report.items():
        if key == "stats":
            continue
        if isinstance(value, dict):
            row.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            row[prefix + key] = "; ".join(str(v) for v in value)
        else:
            row[prefix + key] = value
    return row


def to_dataframe(reports):
    """A pandas DataFrame with one row per report (nested figures become dotted columns).

    Takes a report from run(), a list of them, or what compare() returns (one row per workload
    and system, with the vs_first ratios, and an "error" column: None, or why that run failed,
    its figures then NaN); or what serve() returns: one row per request (arrival, TTFT, TPOT,
    latency, queueing, preemptions, replica, ...); or what plan() returns: one row per system,
    mapping, mode and load."""
    try:
        import pandas as pd
    except ImportError as e:  # pandas is optional: everything else works without it
        raise ImportError("tessera.to_dataframe needs pandas (Debian: python3-pandas)") from e
    if isinstance(reports, dict) and "request_results" in reports:
        return pd.DataFrame(reports["request_results"])
    if isinstance(reports, dict) and "rows" in reports and "cheapest" in reports:
        return pd.DataFrame(reports["rows"])
    if isinstance(reports, dict):
        reports = [reports]
    rows = []
    for r in reports:
        if "systems" in r:  # a workload of compare()
            for s in r["systems"]:
                row = _flatten(s)
                row.setdefault("error", None)
                rows.append(row)
        else:
            rows.append(_flatten(r))
    return pd.DataFrame(rows)
