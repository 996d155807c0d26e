#!/usr/bin/python3
"""Coverage of the compiler and simulator: every shipped model on every preset at the shapes
serving runs, each step's simulated time against its roofline (tools/bench/roofline.py, from
the model's shapes alone).

    tools/bench/coverage.py [--tessera build/release/tools/tessera] [--jobs 2] [--models a,b]
                            [--presets x,y] [--csv out.csv]

Cases: decode at batch 1, 8, 32, 128, 256 and context 128, 2k, 8k, 32k; prefill at batch 1 and
8 of 128, 2k, 8k, 32k tokens (where the model's positions allow), in bf16 and, where the
preset's arrays take fp8, fp8e4m3 weights. Each case runs `tessera run --json` in its own
process (so its host time and peak memory are its own). A case passes when it runs, or is
refused because it does not fit HBM; a run must reach 50% of its roofline when that is 1 ms or
more, 20% when shorter; and within each model x preset x dtype the step-to-roofline ratios may
spread by at most 2x (no cliffs). Prints a table (progress on a terminal) and a summary; exits 1
if any check fails.
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import roofline  # noqa: E402

ROOT = roofline.ROOT
DECODE_BATCHES = [1, 8, 32, 128, 256]
PREFILL_BATCHES = [1, 8]
LENGTHS = [128, 2048, 8192, 32768]
SPREAD = 2.0  # most / least fraction of roofline within a model x preset x dtype


def presets(tessera):
    """The one-chip presets (the rooflines are a chip's; systems of several split the model)."""
    out = subprocess.run([tessera, "arch", "list", "--json"], check=True, capture_output=True, text=True).stdout
    return {p["name"]: p["derived"] for p in json.loads(out) if p["chips"] == 1}


def models():
    return sorted(f[:-5] for f in os.listdir(os.path.join(ROOT, "workloads", "models")) if f.endswith(".json"))


def cases(model_names, preset_figures, phases, lengths):
    for preset, d in preset_figures.items():
        dtypes = ["bf16"] + (["fp8e4m3"] if "fp8" in d["peak_flops"] else [])
        for model in model_names:
            shapes = roofline.Shapes(model)
            for dtype in dtypes:
                for phase, batches in (("decode", DECODE_BATCHES), ("prefill", PREFILL_BATCHES)):
                    if phase not in phases:
                        continue
                    for batch in batches:
                        for length in lengths:
                            if roofline.fits_positions(shapes, phase, length):
                                yield (model, preset, dtype, phase, batch, length)


def run_case(tessera, case, timeout):
    """Runs one case in its own process; its host time and peak memory (from wait4)."""
    model, preset, dtype, phase, batch, length = case
    cmd = [tessera, "run", "--json", "-q", "--arch", preset, "--model", model, "--phase", phase,
           "--batch", str(batch), "--dtype", dtype, "--seq" if phase == "prefill" else "--context", str(length)]
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    host, rss = time.monotonic() - start, usage.ru_maxrss / 1024
    if proc.returncode != 0:
        msg = stderr.strip().splitlines()[-1] if stderr.strip() else f"killed after {timeout} s"
        capacity = " of HBM " in msg or "HBM exhausted" in msg
        return {"status": "capacity" if capacity else "error", "error": msg, "host_s": host, "rss_mb": rss}
    r = json.loads(stdout)
    return {"status": "ok", "seconds": r["seconds"], "bound": r["bound"], "host_s": host, "rss_mb": rss}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tessera", default=os.path.join(ROOT, "build", "release", "tools", "tessera"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--models", help="comma-separated (default: every shipped model)")
    ap.add_argument("--presets", help="comma-separated (default: every preset)")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--phases", default="decode,prefill", help="a part of the matrix: decode, prefill")
    ap.add_argument("--lengths", help="a part of the matrix: comma-separated lengths (default 128,2048,8192,32768)")
    ap.add_argument("--csv", help="write every case to this file")
    args = ap.parse_args()
    figures = presets(args.tessera)
    if args.presets:
        figures = {p: figures[p] for p in args.presets.split(",")}
    names = args.models.split(",") if args.models else models()
    lengths = [int(x) for x in args.lengths.split(",")] if args.lengths else LENGTHS
    todo = list(cases(names, figures, args.phases.split(","), lengths))
    tty = sys.stderr.isatty()
    rows = []

    def one(case):
        model, preset, dtype, phase, batch, length = case
        d = figures[preset]
        result = run_case(args.tessera, case, args.timeout)
        roof = roofline.roofline_seconds(model, phase, batch, length, d["peak_flops"],
                                         d["hbm_bandwidth"], dtype)
        result.update(dict(zip(("model", "preset", "dtype", "phase", "batch", "length"), case)), roofline_s=roof)
        if result["status"] == "ok":
            result["fraction"] = roof / result["seconds"]
        return result

    def show(r):
        sim = f"{r['seconds'] * 1e3:9.3f}" if r["status"] == "ok" else f"{'-':>9}"
        frac = f"{r['fraction']:5.2f}" if r["status"] == "ok" else f"{'-':>5}"
        print(f"{r['model']:<15} {r['preset']:<14} {r['dtype']:<8} {r['phase']:<7} {r['batch']:>5} {r['length']:>6}  "
              f"{r['status']:<8} {sim} {r['roofline_s'] * 1e3:9.3f} {frac} {r.get('bound', '-'):<14} {r['host_s']:7.2f} "
              f"{r['rss_mb']:6.0f}", flush=True)

    print(f"{'model':<15} {'preset':<14} {'dtype':<8} {'phase':<7} {'batch':>5} {'length':>6}  "
          f"{'status':<8} {'sim ms':>9} {'roof ms':>9} {'frac':>5} {'bound':<14} {'host s':>7} {'MB':>6}", flush=True)
    start = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        for i, result in enumerate(pool.map(one, todo)):
            rows.append(result)
            show(result)
            if tty:
                sys.stderr.write(f"\r{i + 1}/{len(todo)} cases, {time.monotonic() - start:.0f} s")
    if tty:
        sys.stderr.write("\n")

    failures = []
    for r in rows:
        where = f"{r['model']} {r['preset']} {r['dtype']} {r['phase']} b{r['batch']} {r['length']}"
        if r["status"] == "error":
            failures.append(f"{where}: {r['error']}")
        elif r["status"] == "ok":
            need = 0.5 if r["roofline_s"] >= 1e-3 else 0.2
            if r["fraction"] < need:
                failures.append(f"{where}: {r['fraction']:.2f} of its roofline (needs {need})")
    groups = {}
    for r in rows:
        if r["status"] == "ok":
            groups.setdefault((r["model"], r["preset"], r["dtype"]), []).append(r)
    for (model, preset, dtype), rs in sorted(groups.items()):
        lo, hi = min(r["fraction"] for r in rs), max(r["fraction"] for r in rs)
        if hi / lo > SPREAD:
            worst = min(rs, key=lambda r: r["fraction"])
            failures.append(f"{model} {preset} {dtype}: fractions of roofline from {lo:.2f} to {hi:.2f} "
                            f"({hi / lo:.1f}x; lowest at {worst['phase']} b{worst['batch']} {worst['length']})")

    ran = [r for r in rows if r["status"] == "ok"]
    print(f"\n{len(rows)} cases: {len(ran)} ran, {sum(r['status'] == 'capacity' for r in rows)} refused for HBM "
          f"capacity, {sum(r['status'] == 'error' for r in rows)} failed; host {time.monotonic() - start:.0f} s")
    if ran:
        low = sorted(ran, key=lambda r: r["fraction"])[:5]
        print("lowest fractions of roofline: " + "; ".join(
            f"{r['model']} {r['preset']} {r['dtype']} {r['phase']} b{r['batch']} {r['length']}: {r['fraction']:.2f}"
            for r in low))
        slow = max(ran, key=lambda r: r["host_s"])
        big = max(ran, key=lambda r: r["rss_mb"])
        print(f"slowest case: {slow['model']} {slow['preset']} {slow['phase']} b{slow['batch']} {slow['length']}: "
              f"{slow['host_s']:.1f} s; largest: {big['model']} {big['preset']} {big['phase']} b{big['batch']} "
              f"{big['length']}: {big['rss_mb']:.0f} MB")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader()
            w.writerows(rows)
    for f in failures:
        print("FAIL " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
