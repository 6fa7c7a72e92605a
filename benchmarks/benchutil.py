"""Shared helpers of the benchmarks: the machine and its load, timing medians, untrained-but-spiking models and the
report writer (reports/benchmarks/<name>.md, .csv and .json)."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from spikingjelly.activation_based import functional
from torch import nn

from hwmodels.kernels import threads

ROOT = Path(__file__).resolve().parents[1]
REPORT_DIR = ROOT / "reports" / "benchmarks"
REPEATS = 3


def machine_info() -> dict:
    """Where and when a benchmark ran: CPU, cores, 1-minute load average (other jobs share the machine), versions,
    the threads of torch and of hwmodels' compiled kernels (hwmodels.kernels.threads), UTC date and the
    checked-out commit (uncommitted changes are not reflected in it)."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
    except OSError:
        commit = ""
    return {"date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu,
            "cores": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "numpy": np.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "hwmodels_threads": threads.count(), "commit": commit}


def time_median(fn: Callable[[], object], repeats: int = REPEATS) -> tuple[float, list[float], object]:
    """Run `fn` `repeats` times; returns (median wall s, every wall s, the last result)."""
    walls, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls), walls, out


def calibrate_bn(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Untrained but spiking: set every BatchNorm's running statistics to the batch statistics of `x` (one forward
    pass in train mode with cumulative averaging, no gradient), so each conv's output is normalised before its
    neuron; returns the model in eval mode with neuron state reset."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    functional.reset_net(model)
    return model.eval()


def torch_forward_s(model: nn.Module, x: torch.Tensor, repeats: int = REPEATS) -> tuple[float, list[float]]:
    """Median wall time (s) of model(x) in eval mode, no grad, one batch, after one warm-up pass."""
    def fwd():
        with torch.no_grad():
            model(x)
        functional.reset_net(model)
    fwd()
    med, walls, _ = time_median(fwd, repeats)
    return med, walls


def markdown_table(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub markdown table of `df` (index dropped); floats formatted with `floatfmt`."""
    def cell(v):
        return format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v)
    rows = [" | ".join(str(c) for c in df.columns)] + [" | ".join("---" for _ in df.columns)]
    rows += [" | ".join(cell(v) for v in row) for row in df.itertuples(index=False)]
    return "\n".join(f"| {r} |" for r in rows)


def target_row(metric: str, measured: float, target: float, unit: str, better: str = "lower") -> dict:
    """One line of a targets table: ratio = measured / target; met when the ratio is <= 1 (better "lower") or
    >= 1 (better "higher")."""
    ratio = measured / target if target else float("nan")
    met = ratio <= 1.0 if better == "lower" else ratio >= 1.0
    return {"metric": metric, "measured": measured, "target": target, "unit": unit, "ratio": ratio,
            "met": "yes" if met else "NO"}


def write_report(name: str, title: str, intro: str, table: pd.DataFrame, targets: list[dict] | None = None,
                 notes: list[str] | None = None, machine: dict | None = None,
                 sections: dict[str, str] | None = None) -> Path:
    """Write reports/benchmarks/<name>.md (machine, intro, targets, results table, notes, then `sections`
    {heading: markdown}), <name>.csv (the results table) and <name>.json (machine, targets, rows). Returns the .md
    path."""
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    machine = machine or machine_info()
    md = [f"# {title}", "", "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), "", intro, ""]
    if targets:
        missed = [t["metric"] for t in targets if t["met"] != "yes"]
        md += ["## Targets", "", markdown_table(pd.DataFrame(targets)), "",
               ("**Not met: " + "; ".join(missed) + ".**") if missed else "All targets met.", ""]
    md += ["## Results", "", markdown_table(table), ""]
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    for heading, body in (sections or {}).items():
        md += [f"## {heading}", "", body, ""]
    path = REPORT_DIR / f"{name}.md"
    path.write_text("\n".join(md))
    table.to_csv(REPORT_DIR / f"{name}.csv", index=False)
    payload = {"machine": machine, "targets": targets or [], "rows": json.loads(table.to_json(orient="records"))}
    (REPORT_DIR / f"{name}.json").write_text(json.dumps(payload, indent=1))
    return path
