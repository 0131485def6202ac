"""Hostile peers against a running `streamlsm serve` (issue 11): how the daemon fares.

One daemon process on 127.0.0.1 (small real reservoir, signed bundle, state budget 64 MiB). First
the well-behaved stream alone (its label latency: the baseline), then every regression case of the
issue and a seeded generator of hostile sequences, with one sample of the good stream after each.
Usage: python bench/hostile.py [--quick] [--random N] [--seed S]. Last line: one JSON object with
cases, rejected, crashes, hangs, good_stream_labels_lost, max_rss_mb, good_stream_p99_ms (under
attack) and good_stream_p99_ms_baseline (the same stream, same daemon, no attack).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer random sequences (< 60 s)")
    ap.add_argument("--random", type=int, default=None, help="seeded hostile sequences (default 200, quick 40)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n_random = args.random if args.random is not None else (40 if args.quick else 200)
    from streamlsm.testing.hostile import HostileDaemon, random_case, regression_cases, summary

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="streamlsm-hostile-") as work:
        d = HostileDaemon(work).start()
        try:
            cases = regression_cases() + [random_case(args.seed + i) for i in range(n_random)]
            for _ in range(len(cases)):  # the baseline: as many single samples, no attack
                d.good_round(1)
            baseline = float(np.percentile(d.latencies_ms, 99))
            base_lost, d.lost = d.lost, 0
            d.latencies_ms.clear()
            outcomes = []
            for name, attack in cases:
                out = d.run_case(name, attack)
                outcomes.append(out)
                flag = "" if out.rejected and not (out.crashed or out.hung or out.lost) else "  <--"
                print(f"{name:32s} rejected={out.rejected!s:5s} crashed={out.crashed!s:5s} "
                      f"hung={out.hung!s:5s} lost={out.lost} rss={out.rss_mb:.0f} MB{flag}", flush=True)
                if out.crashed:
                    break
            d.good_round(5)
            result = summary(outcomes, d, round(baseline, 2))
            result["baseline_labels_lost"] = base_lost
        finally:
            d.stop()
    result["wall_s"] = round(time.monotonic() - t0, 1)
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))
    return 0 if (result["crashes"] == 0 and result["hangs"] == 0 and result["good_stream_labels_lost"] == 0) else 1


if __name__ == "__main__":
    sys.exit(main())
