#!/usr/bin/python3
"""Scaling of a model step over the chips of a system: for each chip count, the mapping (tensor
parallelism x pipeline stages, searched unless --tp or --pp fixes it), the simulated step time,
the speed-up over the fewest chips that ran and the efficiency (speed-up / chip ratio), the share
of the step spent in the all-reduces and waiting in the pipeline, and the host time.

    tools/bench/scaling.py --system maia100-x8 --model llama-3-8b [--chips 1,2,4,8]
                           [--phase decode --batch 32 --context 2048 | --phase prefill --seq 2048]
                           [--tessera build/release/tools/tessera] [--dtype bf16] [--tp N | --pp N] [--ep N]

Each count runs `tessera run --json --chips N` on the system (its topology, links and scale-out
as described; counts the model does not fit or split evenly over are listed with the reason).
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def run(args, chips):
    cmd = [args.tessera, "run", "--arch", args.system, "--model", args.model, "--phase", args.phase,
           "--batch", str(args.batch), "--dtype", args.dtype, "--chips", str(chips), "--json"]
    cmd += ["--context", str(args.context)] if args.phase == "decode" else ["--seq", str(args.seq)]
    if args.tp:
        cmd += ["--tp", str(args.tp)]
    if args.pp:
        cmd += ["--pp", str(args.pp)]
    if args.ep:
        cmd += ["--ep", str(args.ep)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        lines = (p.stderr.strip() or p.stdout.strip()).splitlines()
        return None, lines[-1] if lines else f"exit {p.returncode}"
    return json.loads(p.stdout), None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", default="maia100-x8")
    ap.add_argument("--model", default="llama-3-8b")
    ap.add_argument("--chips", default="1,2,4,8")
    ap.add_argument("--phase", default="decode", choices=["decode", "prefill"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--context", type=int, default=2048)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--tp", type=int, default=0, help="fix tensor parallelism (pp = chips / tp)")
    ap.add_argument("--pp", type=int, default=0, help="fix the pipeline stages (tp = chips / pp)")
    ap.add_argument("--ep", type=int, default=0, help="MoE: fix the expert-parallel groups (dividing tp)")
    ap.add_argument("--tessera", default=os.path.join(ROOT, "build", "release", "tools", "tessera"))
    args = ap.parse_args()

    rows, base = [], None
    for chips in [int(c) for c in args.chips.split(",")]:
        if sys.stderr.isatty():
            print(f"  running {chips} chip(s)...", file=sys.stderr, end="\r", flush=True)
        report, error = run(args, chips)
        if report is None:
            rows.append((chips, error))
            continue
        ops = report["breakdown"]["ops"]
        comm = sum(op["seconds"] for op in ops if "all_reduce" in op["name"])
        wait = sum(op["seconds"] for op in ops if op["kind"] == "pipeline")
        par = report["parallelism"]
        mapping = f"{par['tp']}x{par['pp']}" + (f" ep{par['ep']}" if par.get("ep", 1) > 1 else "")
        if base is None:
            base = (chips, report["seconds"])
        speedup = base[1] / report["seconds"]
        rows.append((chips, mapping, report["seconds"], speedup, speedup / (chips / base[0]),
                     comm / report["seconds"], wait / report["seconds"], report["tokens_per_s"],
                     report["host_seconds"]))
    print(f"{args.model} {args.phase} b{args.batch} "
          f"{'ctx' + str(args.context) if args.phase == 'decode' else 'seq' + str(args.seq)} {args.dtype} "
          f"on {args.system}")
    print(f"{'chips':>5}  {'tp x pp':>10}  {'step':>10}  {'speed-up':>8}  {'efficiency':>10}  {'comm':>6}  "
          f"{'wait':>6}  {'tokens/s':>10}  {'host':>7}")
    for r in rows:
        if len(r) == 2:
            print(f"{r[0]:>5}  {r[1]}")
        else:
            print(f"{r[0]:>5}  {r[1]:>10}  {r[2] * 1e3:>7.3f} ms  {r[3]:>7.2f}x  {r[4] * 100:>9.0f}%  "
                  f"{r[5] * 100:>5.1f}%  {r[6] * 100:>5.1f}%  {r[7]:>10.0f}  {r[8]:>6.1f}s")


if __name__ == "__main__":
    main()
