"""Simulate time of two checkouts side by side on the DES speed benchmark's workloads (benchmarks/workloads_bench.py):
how much a change made hwmodels.simulate slower or faster, measured so that machine drift cancels.

Each checkout runs in its own worker process that builds the workload once (with its own code) and then times
`simulate(model='des')` on request; the two workers are asked in turn, so every pair of timings sees the same
machine state, and the result is the median of the pairs' ratios. Usage (from the repository root):

    git worktree add /tmp/before <commit>
    .venv/bin/python benchmarks/ab_simulate.py /tmp/before . [--pairs 21] [--out reports/benchmarks]

Writes <out>/simulate_growth.{md,csv}. Used for issue 10 (target: simulate time grows by at most 20 %).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd

WORKER = r'''
import sys, time
root = sys.argv[1]
sys.path[:0] = [root, root + "/benchmarks", root + "/tests/crosscheck"]
import workloads_bench as wb
from hwmodels import map_network, simulate
import hwmodels
assert hwmodels.__file__.startswith(root), hwmodels.__file__
w = {"mnist_conv": wb.mnist_default, "vgg11": wb.vgg11_32}[sys.argv[2]]()
m = map_network(w.graph, w.chip)
simulate(w.graph, w.trace, w.chip, m, model="des")
print("ready", m.cores_used, flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    simulate(w.graph, w.trace, w.chip, m, model="des")
    print(time.perf_counter() - t0, flush=True)
'''


def _worker(root: Path, workload: str) -> tuple[subprocess.Popen, int]:
    """A worker process for checkout `root`, ready to time; and the cores its mapping uses."""
    env = dict(os.environ, PYTHONPATH=str(root))
    p = subprocess.Popen([sys.executable, "-c", WORKER, str(root), workload], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    while True:
        line = p.stdout.readline()
        if not line:
            raise SystemExit(f"error: the worker of {root} ended before it was ready")
        if line.startswith("ready"):
            return p, int(line.split()[1])


def pair_times(before: Path, after: Path, workload: str, pairs: int) -> dict:
    """Median simulate walls of both checkouts and the median of the pairs' ratios (after / before)."""
    workers = {k: _worker(root, workload) for k, root in (("before", before), ("after", after))}
    times = {k: [] for k in workers}
    for _ in range(pairs):
        for k, (p, _) in workers.items():
            p.stdin.write("go\n")
            p.stdin.flush()
            times[k].append(float(p.stdout.readline()))
    for p, _ in workers.values():
        p.stdin.close()
        p.wait()
    ratios = [a / b for a, b in zip(times["after"], times["before"])]
    return {"workload": workload, "pairs": pairs, "cores_before": workers["before"][1],
            "cores_after": workers["after"][1], "simulate_before_s": statistics.median(times["before"]),
            "simulate_after_s": statistics.median(times["after"]), "after_over_before": statistics.median(ratios),
            "met (<= 1.2)": "yes" if statistics.median(ratios) <= 1.2 else "NO"}


def main() -> None:
    """Command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--pairs", type=int, default=21)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = ap.parse_args()
    rows = [pair_times(args.before.resolve(), args.after.resolve(), w, args.pairs if w == "mnist_conv"
                       else max(5, args.pairs // 2)) for w in ("mnist_conv", "vgg11")]
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "simulate_growth.csv", index=False)
    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    body = "".join("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in r) + " |\n"
                   for r in df.itertuples(index=False))
    (args.out / "simulate_growth.md").write_text(
        f"# Simulate time: {args.after} against {args.before}\n\n{__doc__.split(chr(10) + chr(10))[1]}\n\n"
        f"{head}{body}")
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
