"""Hostile-input and fault probe of the `codesign` CLI (issue 12): 250+ cases tried as a new user and as an attacker.

Run from the repository root:

    .venv/bin/python scripts/probe/probe.py [--only PATTERN] [--jobs 2] [--out reports/probe] [--keep]

It writes `<out>/probe.md` (one row per case: id, category, what, command, exit code, verdict, evidence) and
`<out>/probe.json`, and exits 1 when a case is a DEFECT or could not run (verdict `error`). `--only` takes
comma-separated fnmatch patterns (or substrings) matched against case ids and categories, e.g.
`--only 'kill-*,simulate'`. `--list` prints the cases without running them.

Every case runs in its own folder `<work>/<id>/case` (the working directory) with its own copy of a warm stage
cache, a sentinel sibling `outside/` and its own HOME and TMPDIR; commands run with umask 022, one torch thread
and a new process group. Shared fixtures (a cheap reference run, sweep and search on `digits`, their cache and
lowered artifacts) are built on first use. Case modules: `cases_*.py` in this folder, each with `CASES`.

A case is a DEFECT when:
- a Python traceback appears on stdout/stderr (commands run without --debug);
- an exit code differs from the expected one (bad input 2, validate with a FAIL 1, success 0);
- an error message (`error: ...`, or click's usage box) is more than one line or does not name the field/file;
- a file or folder appears outside the case folder's allowed output dirs (`reports/`, `cache/`, or what the case
  allows), or anything changes in the sentinel `outside/` (absolute and `../` paths in hostile inputs aim there);
- a bad-input run (exit 2) leaves a run folder behind (it blocks a plain retry of that run_name);
- a user value holding Rich markup (`[red]`, `[/x]`) is not printed as typed, or crashes the output;
- code from a file is executed: planted payloads (pickles with os.system, torch.save of such an object as a
  cached model.pt, .npy/.npz object arrays, YAML `!!python/...` tags) would create `outside/PWNED`;
- a command hangs beyond its timeout (120 s for bad input) or its process tree uses more than 2 GB;
- two concurrent runs/sweeps/searches into one run_name both exit 0, or a point is stored twice;
- after a SIGKILL during run/sweep/search/report writing, results.csv or the report is half-written, a plain rerun
  does not say `--resume`, or `--resume` cannot finish the folder;
- files written by a command (results, reports, figures, --out) have a mode other than 0644 under umask 022.
"""
from __future__ import annotations

import argparse
import fnmatch
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures import Shared  # noqa: E402
from harness import REPO, Case, Outcome, run_case  # noqa: E402

MODULES = ("cases_config", "cases_sets", "cases_specs", "cases_resume", "cases_simulate", "cases_results",
           "cases_cache", "cases_faults", "cases_misc")


def all_cases() -> list[Case]:
    cases: list[Case] = []
    for name in MODULES:
        cases += importlib.import_module(name).CASES
    ids = [c.id for c in cases]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise SystemExit(f"duplicate case ids: {sorted(dup)}")
    return cases


def select(cases: list[Case], only: str | None) -> list[Case]:
    if not only:
        return cases
    pats = [p.strip() for p in only.split(",") if p.strip()]

    def hit(c: Case, p: str) -> bool:
        if any(ch in p for ch in "*?["):
            return fnmatch.fnmatch(c.id, p) or fnmatch.fnmatch(c.category, p)
        return p in c.id or p == c.category
    return [c for c in cases if any(hit(c, p) for p in pats)]


def _cell(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return text.replace("|", "\\|").replace("<", "&lt;")


def write_reports(out_dir: Path, outcomes: list[Outcome], seconds: float, jobs: int, fixture_log: list[str]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    n_def = sum(o.verdict == "DEFECT" for o in outcomes)
    n_err = sum(o.verdict == "error" for o in outcomes)
    cats: dict[str, list[int]] = {}
    for o in outcomes:
        c = cats.setdefault(o.category, [0, 0])
        c[0] += 1
        c[1] += o.verdict == "DEFECT"
    lines = ["# codesign hostile-input and fault probe", "",
             f"- {len(outcomes)} cases, {n_def} defects, {n_err} errors (harness could not run the case); "
             f"{seconds / 60:.1f} min with --jobs {jobs} ({sum(o.cpu for o in outcomes) / 60:.1f} CPU-min in the "
             f"commands); {time.strftime('%Y-%m-%d %H:%M:%S')}",
             f"- tree: {REPO}", f"- by category (cases / defects): " +
             ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(cats.items())),
             "- what counts as a defect: see the docstring of scripts/probe/probe.py", ""]
    if n_def:
        lines += ["## Defects", ""]
        for o in outcomes:
            if o.verdict == "DEFECT":
                lines += [f"- **{o.id}** (`{_cell(' ; '.join(c['command'] for c in o.commands), 200)}`): "
                          f"{_cell('; '.join(o.defects), 600)}"]
        lines.append("")
    lines += ["## Cases", "", "| id | category | what | command | exit | verdict | evidence |", "|---|---|---|---|---|---|---|"]
    for o in outcomes:
        cmds = " ; ".join(c["command"] for c in o.commands)
        codes = ",".join("kill" if c["killed"] else "hang" if c["timed_out"] else
                         "mem" if c["peak_mb"] > 2048 else str(c["exit"]) for c in o.commands)
        if o.defects:
            ev = "; ".join(o.defects)
        else:
            last = o.commands[-1] if o.commands else None
            err = [ln for ln in (last["stderr_tail"] if last else "").splitlines() if ln.startswith("error:")]
            ev = (err[-1] if err else "") + ("; " if err and o.notes else "") + "; ".join(o.notes)
        lines.append(f"| {o.id} | {o.category} | {_cell(o.what, 160)} | `{_cell(cmds, 220)}` | {codes} | "
                     f"{o.verdict} | {_cell(ev)} |")
    lines += ["", "## Fixtures", "", *[f"- {x}" for x in fixture_log], ""]
    (out_dir / "probe.md").write_text("\n".join(lines))
    doc = {"cases": len(outcomes), "defects": n_def, "errors": n_err, "seconds": round(seconds, 1), "jobs": jobs,
           "cpu_seconds": round(sum(o.cpu for o in outcomes), 1),
           "results": [o.__dict__ for o in outcomes]}
    (out_dir / "probe.json").write_text(json.dumps(doc, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated fnmatch patterns or substrings of case ids / categories")
    ap.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    ap.add_argument("--out", default="reports/probe", help="folder of probe.md and probe.json")
    ap.add_argument("--work", help="folder for the case trees (default: a new temp folder)")
    ap.add_argument("--keep", action="store_true", help="keep the case trees (default: removed when done)")
    ap.add_argument("--list", action="store_true", help="list the selected cases and exit")
    args = ap.parse_args(argv)
    os.umask(0o022)
    cases = select(all_cases(), args.only)
    if args.list:
        for c in cases:
            print(f"{c.id:40} {c.category:10} {c.what}")
        print(f"{len(cases)} cases")
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="codesign-probe-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    shared = Shared(work)
    order = sorted(range(len(cases)), key=lambda i: not cases[i].slow)  # slow cases first: shorter makespan
    outcomes: dict[int, Outcome] = {}
    t0 = time.monotonic()
    print(f"{len(cases)} cases, --jobs {args.jobs}, work folder {work}", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_case, cases[i], work, shared): i for i in order}
        for n, fut in enumerate(as_completed(futures), 1):
            o = outcomes[futures[fut]] = fut.result()
            mark = {"ok": "ok", "DEFECT": "DEFECT", "error": "ERROR"}[o.verdict]
            detail = (o.defects or o.notes or [""])[0][:150]
            print(f"[{n}/{len(cases)} {time.monotonic() - t0:6.0f}s] {mark:6} {o.id} ({o.seconds:.0f}s, cpu "
                  f"{o.cpu:.0f}s) {detail}",
                  flush=True)
    seconds = time.monotonic() - t0
    ordered = [outcomes[i] for i in range(len(cases))]
    out_dir = Path(args.out)
    write_reports(out_dir, ordered, seconds, args.jobs, shared.log)
    n_def = sum(o.verdict == "DEFECT" for o in ordered)
    n_err = sum(o.verdict == "error" for o in ordered)
    print(f"{len(ordered)} cases in {seconds / 60:.1f} min: {n_def} defects, {n_err} errors -> {out_dir / 'probe.md'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if (n_def or n_err) else 0


if __name__ == "__main__":
    sys.exit(main())
