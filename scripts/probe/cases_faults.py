"""Faults: SIGKILL of run/sweep/search/report/validate at chosen moments (then a plain rerun and --resume),
concurrent commands on one run_name, read-only output folders."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cases_common import sets
from fixtures import POINTS, SEARCH, SWEEP, remove_last_point
from harness import RUN_TIMEOUT, Case, Ctx

CASES = []


# --- kill moments: f(run folder, seconds since start) -> bool -----------------------------------------------------------
def after(seconds: float):
    return lambda run, t: t > seconds


def exists(rel: str):
    return lambda run, t: (run / rel).exists()


def non_empty(rel: str):
    return lambda run, t: (run / rel).exists() and (run / rel).stat().st_size > 0


def figures_written(run: Path, t: float) -> bool:
    return (run / "figures").is_dir() and any((run / "figures").glob("*.png"))


MOMENTS = {"t3s": after(3), "t8s": after(8), "folder": exists(""), "first-point": non_empty("results.jsonl"),
           "report-start": exists("report_meta.json"), "figures": figures_written, "report-md": exists("report.md")}
JOBS = {"run": (["run", "c.yaml"], "reports/p", POINTS["ref"], ["t3s", "t8s", "folder", "first-point",
                                                                  "report-start", "figures", "report-md"]),
        "sweep": (["sweep", "sweep.yaml", "--set", "run_name=s"], "reports/s", POINTS["refsweep"],
                  ["first-point", "report-start"]),
        "sweep-dask": (["sweep", "sweep.yaml", "--set", "run_name=s", "--workers", "2"], "reports/s",
                       POINTS["refsweep"], ["first-point"]),
        "search": (["search", "search.yaml", "--set", "run_name=q"], "reports/q", None,
                   ["first-point", "report-start"])}


def _files(ctx: Ctx) -> None:
    ctx.copy_cache()
    ctx.config()
    ctx.write("sweep.yaml", SWEEP)
    ctx.write("search.yaml", SEARCH)


def _kill_case(job: str, moment: str):
    args, rel, n_points, _ = JOBS[job]

    def body(ctx: Ctx) -> None:
        _files(ctx)
        run, t0, cond = ctx.path(rel), time.monotonic(), MOMENTS[moment]
        ctx.cli(*args, kill_when=lambda: cond(run, time.monotonic() - t0), expect=0)
        if run.exists():
            ctx.results_ids(run, f"{rel} after SIGKILL", required=False)
            ctx.report_whole(run, f"{rel} after SIGKILL")
            ctx.cli(*args, expect=2, names=["--resume"], leftovers=False)
            ctx.cli(*args, "--resume", expect=0)
        else:
            ctx.cli(*args, expect=0)
        ctx.run_folder_ok(run, n_points)
        if job == "search":
            ctx.study_trials(run, SEARCH["search"]["n_trials"])
    CASES.append(Case(f"kill-{job}-{moment}", "kill", f"SIGKILL {job} at {moment}, then plain rerun and --resume",
                      body, slow=True))


for job, (_, _, _, moments) in JOBS.items():
    for moment in moments:
        _kill_case(job, moment)


def _mtime_changed(path: Path):
    first = path.stat().st_mtime_ns if path.exists() else None
    return lambda: path.exists() and path.stat().st_mtime_ns != first


def _kill_report(moment: str):
    def body(ctx: Ctx) -> None:
        run = ctx.copy_ref()
        watch = sorted((run / "figures").glob("*.png"))[-1] if moment == "figures" else run / "report.md"
        ctx.cli("report", "reports/ref", kill_when=_mtime_changed(watch), expect=0)
        ctx.report_whole(run, "reports/ref after SIGKILL")
        ctx.cli("report", "reports/ref", expect=0)
        ctx.report_whole(run, "reports/ref", required=True)
    CASES.append(Case(f"kill-report-{moment}", "kill", f"SIGKILL `codesign report` when it rewrites {moment}", body,
                      slow=True))


_kill_report("figures")
_kill_report("report-md")


def _kill_validate(ctx: Ctx) -> None:
    from cases_results import claims
    run = ctx.copy_ref()
    ctx.write("claims.yaml", claims())
    ctx.cli("validate", "claims.yaml", "reports/ref", kill_when=lambda: (run / "claims.json").exists(), expect=0)
    if (run / "claims.json").exists():
        try:
            json.loads((run / "claims.json").read_text())
        except ValueError:
            ctx.defect("claims.json is half-written after SIGKILL")
    ctx.report_whole(run, "reports/ref after SIGKILL")


CASES.append(Case("kill-validate-claims-json", "kill", "SIGKILL validate when claims.json appears", _kill_validate,
                  slow=True))


# --- concurrency -----------------------------------------------------------------------------------------------------------
def _concurrent(id: str, what: str, commands: list[list[str]], rel: str, n_points: int | None, setup=None,
                winners: int | None = 1, trials: int | None = None):
    def body(ctx: Ctx) -> None:
        _files(ctx)
        if setup is not None:
            setup(ctx)
        ctx.start()
        running = [ctx.spawn(c) for c in commands]
        cmds = [r.wait(timeout=RUN_TIMEOUT) for r in running]
        for c in cmds:
            ctx.check_cmd(c, (0, 2), names=["run_name", "in use", "already exists", rel.split("/")[-1]])
        ok = sum(c.rc == 0 for c in cmds)
        if winners is not None and ok != winners:
            ctx.defect(f"{ok} of {len(cmds)} concurrent commands on one run folder exited 0 (expected {winners})")
        run = ctx.path(rel)
        if ok:
            ctx.run_folder_ok(run, n_points)
        if trials is not None and (run / "study.db").exists():
            ctx.study_trials(run, trials)
    CASES.append(Case(id, "concurrent", what, body, slow=True))


RUN = ["run", "c.yaml"]
_concurrent("conc-run-2", "two runs into one run_name at once", [RUN, RUN], "reports/p", 2)
_concurrent("conc-run-3", "three runs into one run_name at once", [RUN, RUN, RUN], "reports/p", 2)
_concurrent("conc-sweep-2", "two sweeps into one run_name at once", [["sweep", "sweep.yaml"]] * 2,
            "reports/refsweep", 4)
_concurrent("conc-search-2", "two searches into one run_name at once", [["search", "search.yaml"]] * 2,
            "reports/refsearch", None, trials=2)
_concurrent("conc-run-and-sweep", "a run and a sweep into one run_name at once",
            [RUN, ["sweep", "sweep.yaml", "--set", "run_name=p"]], "reports/p", None)
_concurrent("conc-resume-2", "two --resume of one killed run at once",
            [[*RUN, "--set", "run_name=ref", "--resume"]] * 2, "reports/ref", 2,
            setup=lambda ctx: remove_last_point(ctx.copy_ref()))
_concurrent("conc-search-resume-2", "two search --resume (n_trials 3) of one study at once",
            [["search", "search.yaml", "--resume", *sets("search.n_trials=3")]] * 2, "reports/refsearch", None,
            setup=lambda ctx: ctx.copy_ref("refsearch"), trials=3)
_concurrent("conc-report-2", "two report rebuilds of one folder at once", [["report", "reports/ref"]] * 2,
            "reports/ref", 2, setup=lambda ctx: ctx.copy_ref(), winners=None)


def _cold_two_names(ctx: Ctx) -> None:
    ctx.config()
    ctx.start()
    running = [ctx.spawn([*RUN, "--set", f"run_name={n}"]) for n in ("a", "b")]
    for r in running:
        ctx.check_cmd(r.wait(timeout=RUN_TIMEOUT), 0)
    for n in ("a", "b"):
        ctx.run_folder_ok(ctx.path(f"reports/{n}"), 2)


CASES.append(Case("conc-cold-cache-two-runs", "concurrent", "two runs (other names) filling one empty cache at once",
                  _cold_two_names, slow=True))


# --- read-only outputs (commands without root's file powers, so permissions apply) ------------------------------------------------------------------
def _read_only(id: str, what: str, args: list[str], make_reports: bool, names):
    def body(ctx: Ctx) -> None:
        _files(ctx)
        if make_reports:
            ctx.path("reports").mkdir()
        ctx.restrict()
        os.chmod(ctx.path("reports") if make_reports else ctx.dir, 0o555)
        ctx.cli(*args, expect=2, names=names)
    CASES.append(Case(id, "readonly", what, body))


_read_only("ro-run-reports", "run into a read-only reports/ folder", RUN, True, ["reports"])
_read_only("ro-run-cwd", "run in a read-only working folder (reports/ must be created)", RUN, False,
           ["reports", "output_dir"])
_read_only("ro-sweep-reports", "sweep into a read-only reports/", ["sweep", "sweep.yaml"], True, ["reports"])
_read_only("ro-search-reports", "search into a read-only reports/", ["search", "search.yaml"], True, ["reports"])
