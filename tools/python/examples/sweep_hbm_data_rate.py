#!/usr/bin/env python3
"""Sweep one architecture parameter and plot tokens per joule.

How does the HBM pin rate of an in-house design change the energy efficiency of Llama-3-8B
decode (batch 32, context 1024)? Faster HBM shortens the memory-bound step, so the static power
is paid for less time per token, while each bit still costs the same energy.

    PYTHONPATH=build/release/python /usr/bin/python3 tools/python/examples/sweep_hbm_data_rate.py [out.png]
"""
import sys

import matplotlib

matplotlib.use("Agg")  # files, not windows
import matplotlib.pyplot as plt  # noqa: E402

import tessera  # noqa: E402

RATES_GBPS = [2.4, 3.2, 3.6, 4.8, 6.4, 8.0]
BASE = "maia100-class"


def main(out="tokens_per_joule_vs_hbm_rate.png", rates=RATES_GBPS, model="llama-3-8b", reference="h100-sxm"):
    """Runs the sweep, writes the plot to `out` and returns the reports, one per rate."""
    base = tessera.Arch.load(BASE)
    workload = dict(model=model, phase="decode", batch=32, context=1024)
    reports = []
    for rate in rates:
        arch = base.with_(**{"hbm.data_rate": f"{rate}Gbps"})
        r = tessera.run(arch, **workload)
        r["hbm_data_rate_gbps"] = rate
        reports.append(r)
        print(f"{rate:4.1f} Gbps: {r['tokens_per_s']:7.0f} tokens/s, {r['tokens_per_joule']:5.2f} tokens/J, "
              f"{r['avg_power_w']:4.0f} W, bound by {r['bound']}")
    ref = tessera.run(tessera.Arch.load(reference), **workload)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(rates, [r["tokens_per_joule"] for r in reports], marker="o", label=BASE)
    ax.axhline(ref["tokens_per_joule"], color="gray", linestyle="--", label=reference)
    ax.set_xlabel("HBM data rate per pin (Gbps)")
    ax.set_ylabel("tokens per joule")
    ax.set_title(f"{reports[0]['workload']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return reports


if __name__ == "__main__":
    main(*sys.argv[1:])
