#!/usr/bin/python3
"""A GPU preset's predictions against real measurements: every GPU-bound case of a measurement
file (../shared/calibration/h100-measured.json by default; its `method` block says how each kind
was timed), predicted by `tessera run`, with the error per case and the mean absolute percentage
error (MAPE) per kind next to issue 12's aims.

    tools/bench/gpu_fidelity.py [--arch h100-sxm] [--measured FILE] [--tessera build/release/tools/tessera]
                                [--all] [--json]

GPU-bound cases: GEMMs and attention calls measured at 110 us or more (a single eager call of a
few tens of microseconds sits on a launch floor, not GPU work), every decode step (a CUDA graph)
and the prefills of 2,048 tokens or more (shorter ones are host-bound); --all lists the others
too, outside the MAPE. Steps compare time and joules per token (board energy). Decode steps and
prefills run the shipped llama-3-8b, the shape the file's model has (checked).
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GPU_BOUND_SECONDS = 110e-6
AIMS = {"gemm": 8.0, "attention": 8.0, "decode step": 6.0, "prefill": 6.0, "J/token": 10.0}
LLAMA_3_8B = {"H": 4096, "nh": 32, "nkv": 8, "hd": 128, "I": 14336, "layers": 32, "vocab": 128256}


def cases(measured, include_all):
    """(kind, label, tessera arguments, measured seconds, measured J/token or None, GPU-bound)."""
    out = []
    for g in measured["gemm"]:
        out.append(("gemm", f"{g['name']} {g['M']}x{g['K']}x{g['N']}",
                    ["--op", "gemm", "--shape", f"{g['M']},{g['K']},{g['N']}"], g["seconds"], None,
                    g["seconds"] >= GPU_BOUND_SECONDS))
    for a in measured["attention"]:
        shape = ["--op", "attention", "--shape", "32,8,128", "--phase", a["phase"], "--batch", str(a["B"])]
        if a["phase"] == "decode":
            label, shape = f"decode B{a['B']} L{a['L']}", shape + ["--context", str(a["L"])]
        else:
            label, shape = f"prefill B{a['B']} S{a['S']}", shape + ["--seq", str(a["S"])]
        out.append(("attention", label, shape, a["seconds"], None, a["seconds"] >= GPU_BOUND_SECONDS))
    for d in measured["decode_step"]:
        out.append(("decode step", f"B{d['B']} ctx{d['context']}",
                    ["--model", "llama-3-8b", "--phase", "decode", "--batch", str(d["B"]), "--context", str(d["context"])],
                    d["step_seconds"], d["joules_per_token"], True))
    for p in measured["prefill"]:
        out.append(("prefill", f"B{p['B']} S{p['S']}",
                    ["--model", "llama-3-8b", "--phase", "prefill", "--batch", str(p["B"]), "--seq", str(p["S"])],
                    p["seconds"], p["joules_per_token"], p["S"] >= 2048))
    return [c for c in out if include_all or c[5]]


def predict(tessera, arch, args):
    p = subprocess.run([tessera, "run", "--arch", arch, "--json"] + args, capture_output=True, text=True)
    if p.returncode != 0:
        lines = (p.stderr.strip() or p.stdout.strip()).splitlines()
        return None, lines[-1] if lines else f"exit {p.returncode}"
    return json.loads(p.stdout), None


def error(pred, meas):
    return 100.0 * (pred - meas) / meas


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="h100-sxm")
    ap.add_argument("--measured", default=os.path.join(ROOT, "..", "shared", "calibration", "h100-measured.json"))
    ap.add_argument("--tessera", default=os.path.join(ROOT, "build", "release", "tools", "tessera"))
    ap.add_argument("--all", action="store_true", help="also the launch- and host-bound cases (not in the MAPE)")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()
    try:
        with open(args.measured) as f:
            measured = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"{args.measured}: {e}")
    model = measured.get("model", {})
    if any(model.get(k) != v for k, v in LLAMA_3_8B.items()):
        sys.exit(f"{args.measured}: model {model} is not llama-3-8b's shape")

    rows = []
    todo = cases(measured, args.all)
    for n, (kind, label, targs, seconds, jpt, bound) in enumerate(todo, 1):
        if sys.stderr.isatty():
            print(f"\r{n}/{len(todo)} {kind} {label}".ljust(60), end="", file=sys.stderr, flush=True)
        r, why = predict(args.tessera, args.arch, targs)
        row = {"kind": kind, "case": label, "gpu_bound": bound, "measured_s": seconds, "measured_j_per_token": jpt}
        if r is None:
            row["error"] = why
        else:
            row["predicted_s"] = r["seconds"]
            row["time_error_pct"] = error(r["seconds"], seconds)
            if jpt is not None:
                row["predicted_j_per_token"] = r["joules_per_token"]
                row["energy_error_pct"] = error(r["joules_per_token"], jpt)
                row["predicted_avg_power_w"] = r["avg_power_w"]
        rows.append(row)
    if sys.stderr.isatty():
        print("\r".ljust(62) + "\r", end="", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1))
        return

    print(f"{args.arch} against {os.path.basename(args.measured)} ({measured.get('device', '?')})")
    print(f"{'kind':12} {'case':28} {'measured':>11} {'predicted':>11} {'error':>8} {'J/tok meas':>11} "
          f"{'J/tok pred':>11} {'error':>8}")
    for r in rows:
        flag = "" if r["gpu_bound"] else "  (not GPU-bound)"
        if "error" in r:
            print(f"{r['kind']:12} {r['case']:28} {r['measured_s'] * 1e3:9.3f}ms  failed: {r['error']}{flag}")
            continue
        energy = (f"{r['measured_j_per_token']:11.4f} {r['predicted_j_per_token']:11.4f} {r['energy_error_pct']:+7.1f}%"
                  if "energy_error_pct" in r else "")
        print(f"{r['kind']:12} {r['case']:28} {r['measured_s'] * 1e3:9.3f}ms {r['predicted_s'] * 1e3:9.3f}ms "
              f"{r['time_error_pct']:+7.1f}% {energy}{flag}")
    print()
    print(f"{'MAPE over the GPU-bound cases':32} {'cases':>5} {'MAPE':>7} {'aim':>6}")
    for kind in ("gemm", "attention", "decode step", "prefill"):
        errs = [abs(r["time_error_pct"]) for r in rows if r["kind"] == kind and r["gpu_bound"] and "time_error_pct" in r]
        if errs:
            print(f"{kind + ' time':32} {len(errs):5d} {sum(errs) / len(errs):6.1f}% {AIMS[kind]:5.0f}%")
    errs = [abs(r["energy_error_pct"]) for r in rows if r["gpu_bound"] and "energy_error_pct" in r]
    if errs:
        print(f"{'steps J/token':32} {len(errs):5d} {sum(errs) / len(errs):6.1f}% {AIMS['J/token']:5.0f}%")
    failed = [r for r in rows if "error" in r]
    if failed:
        print(f"{len(failed)} case(s) failed to run")


if __name__ == "__main__":
    main()
