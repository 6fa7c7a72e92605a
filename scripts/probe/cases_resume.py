"""`--resume` and plain reruns of existing folders: missing, other config, live or stale owners, other uid, damaged
stored config and results log, crafted point ids, symlinks out of the folder, temp leftovers."""
from __future__ import annotations

import json
import os
import shutil

from cases_common import sets
from fixtures import POINTS, remove_last_point
from harness import Case, Ctx

CASES = []
RESUME = ["run", "c.yaml", "--set", "run_name=ref", "--resume"]
RERUN = ["run", "c.yaml", "--set", "run_name=ref"]


def case(id: str, what: str, slow: bool = False):
    def deco(fn):
        CASES.append(Case(id, "resume", what, fn, slow=slow))
        return fn
    return deco


@case("resume-missing", "--resume of a run folder that does not exist")
def _missing(ctx: Ctx) -> None:
    ctx.config()
    ctx.cli("run", "c.yaml", "--resume", expect=2, names=["--resume", "run_name"])


@case("resume-other-config", "--resume with another train.epochs than the folder was started with")
def _other(ctx: Ctx) -> None:
    ctx.copy_ref()
    ctx.cli(*RESUME, *sets("train.epochs=2"), expect=2, names=["train.epochs"], leftovers=False)


@case("resume-complete", "--resume of a finished run repeats no point", slow=True)
def _complete(ctx: Ctx) -> None:
    run = ctx.copy_ref()
    ctx.cli(*RESUME, expect=0)
    ctx.run_folder_ok(run, POINTS["ref"])


@case("resume-in-use", "--resume while another live process owns the folder")
def _in_use(ctx: Ctx) -> None:
    run = ctx.copy_ref()
    remove_last_point(run)
    with ctx.hold_lock(run):
        ctx.cli(*RESUME, expect=2, names=["in use", str(os.getpid())], leftovers=False)


@case("rerun-in-use", "plain rerun of a folder another live process owns")
def _rerun_in_use(ctx: Ctx) -> None:
    run = ctx.copy_ref()
    with ctx.hold_lock(run):
        ctx.cli(*RERUN, expect=2, names=["already exists", "in use"], leftovers=False)


@case("resume-stale-lock", "--resume of a killed run whose lock file names a dead pid on another host", slow=True)
def _stale(ctx: Ctx) -> None:
    run = ctx.copy_ref()
    remove_last_point(run)
    (run / ".codesign.lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere", "started_utc": "x"}))
    ctx.cli(*RESUME, expect=0)
    ctx.run_folder_ok(run, POINTS["ref"])


def _stored_config(id: str, what: str, content: str | None, expect=2):
    def body(ctx: Ctx) -> None:
        run = ctx.copy_ref()
        remove_last_point(run)
        path = run / "config.resolved.yaml"
        if content is None:
            path.unlink()
        else:
            path.write_text(content.replace("CMD", ctx.payload_cmd()))
        cmd = ctx.cli(*RESUME, expect=expect, names=["config.resolved.yaml", "--resume"], leftovers=False)
        if cmd.rc == 0:
            ctx.run_folder_ok(run, POINTS["ref"])
    CASES.append(Case(id, "resume", what, body, slow=expect != 2))


_stored_config("resume-config-garbage", "--resume when config.resolved.yaml is not YAML", "{{{ not yaml\n")
_stored_config("resume-config-list", "--resume when config.resolved.yaml holds a list", "- 1\n- 2\n")
_stored_config("resume-config-payload", "--resume when config.resolved.yaml holds a !!python tag",
               "!!python/object/apply:os.system ['CMD']\n")
_stored_config("resume-config-missing", "--resume when config.resolved.yaml was deleted", None, expect=(0, 2))


def _log(id: str, what: str, edit, expect=(0, 2)):
    def body(ctx: Ctx) -> None:
        run = ctx.copy_ref()
        log = run / "results.jsonl"
        lines = log.read_text().splitlines(keepends=True)
        remove_last_point(run)
        edit(ctx, log, lines)
        cmd = ctx.cli(*RESUME, expect=expect, names=["results.jsonl"], leftovers=False)
        if cmd.rc == 0:
            ctx.run_folder_ok(run, None)
    CASES.append(Case(id, "resume", what, body, slow=True))


def _torn(ctx, log, lines):
    log.write_text(lines[0] + lines[1][: len(lines[1]) // 2])


def _crafted_id(ctx, log, lines):
    row = json.loads(lines[1])
    row["point_id"] = "../../../../outside/pwn"
    log.write_text(lines[0] + json.dumps(row) + "\n")


def _abs_id(ctx, log, lines):
    row = json.loads(lines[1])
    row["point_id"] = str(ctx.outside / "abs")
    log.write_text(lines[0] + json.dumps(row) + "\n")


_log("resume-jsonl-torn", "--resume after a torn last results.jsonl line", _torn, expect=0)
_log("resume-jsonl-binary", "--resume when results.jsonl is random bytes",
     lambda ctx, log, lines: log.write_bytes(os.urandom(3000)))
_log("resume-jsonl-duplicate", "--resume when results.jsonl repeats a point",
     lambda ctx, log, lines: log.write_text(lines[0] + lines[0]))
_log("resume-jsonl-list-line", "--resume when a results.jsonl line is a JSON list",
     lambda ctx, log, lines: log.write_text(lines[0] + "[1, 2]\n"))
_log("resume-jsonl-no-point-id", "--resume when a results.jsonl line has no point_id",
     lambda ctx, log, lines: log.write_text(lines[0] + '{"a": 1}\n'))
_log("resume-jsonl-crafted-id", "--resume with a results.jsonl point_id ../../../../outside/pwn", _crafted_id)
_log("resume-jsonl-absolute-id", "--resume with an absolute point_id (into the sentinel)", _abs_id)


@case("resume-folder-is-file", "--resume when reports/ref is a regular file")
def _is_file(ctx: Ctx) -> None:
    ctx.config()
    ctx.write("reports/ref", "file\n")
    ctx.cli(*RESUME, expect=2, names=["ref"], leftovers=False)


@case("resume-other-uid", "--resume of a folder another user owns (no root file powers)")
def _other_uid(ctx: Ctx) -> None:
    run = ctx.copy_ref()
    remove_last_point(run)
    ctx.restrict()
    ctx.give_away(run)
    ctx.cli(*RESUME, expect=2, names=["ref"], leftovers=False)


@case("rerun-incomplete", "plain rerun of a killed (.incomplete) run says to pass --resume")
def _rerun_incomplete(ctx: Ctx) -> None:
    remove_last_point(ctx.copy_ref())
    ctx.cli(*RERUN, expect=2, names=["--resume"], leftovers=False)


@case("rerun-complete", "plain rerun of a finished run")
def _rerun_complete(ctx: Ctx) -> None:
    ctx.copy_ref()
    ctx.cli(*RERUN, expect=2, names=["already exists", "ref"], leftovers=False)


@case("resume-temp-leftovers", "--resume cleans temp files a killed writer left", slow=True)
def _leftovers(ctx: Ctx) -> None:
    run = ctx.copy_ref()
    remove_last_point(run)
    for rel in (".results.csv.abc123.tmp", "figures/energy.png.tmp", ".report.html.x.tmp"):
        (run / rel).write_text("half")
    ctx.cli(*RESUME, expect=0)
    ctx.run_folder_ok(run, POINTS["ref"])


@case("resume-lock-is-directory", "--resume when .codesign.lock is a directory")
def _lock_dir(ctx: Ctx) -> None:
    run = ctx.copy_ref()
    remove_last_point(run)
    (run / ".codesign.lock").unlink()
    (run / ".codesign.lock").mkdir()
    ctx.cli(*RESUME, expect=2, names=[".codesign.lock", "ref"], leftovers=False)


def _symlink(id: str, what: str, rel: str, target_is_dir: bool):
    def body(ctx: Ctx) -> None:
        run = ctx.copy_ref()
        remove_last_point(run)
        target = ctx.outside / "target"
        if target_is_dir:
            target.mkdir()
        path = run / rel
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        os.symlink(os.path.relpath(target, path.parent), path)
        cmd = ctx.cli(*RESUME, expect=(0, 2), names=[rel, "ref"], leftovers=False)
        if cmd.rc == 0:
            ctx.run_folder_ok(run, POINTS["ref"])
    CASES.append(Case(id, "resume", what, body, slow=True))


_symlink("resume-lock-symlink-outside", "--resume when .codesign.lock is a symlink out of the folder",
         ".codesign.lock", False)
_symlink("resume-points-symlink-outside", "--resume when points/ is a symlink out of the folder", "points", True)
_symlink("resume-jsonl-symlink-outside", "--resume when results.jsonl is a symlink out of the folder",
         "results.jsonl", False)


# --- sweeps ----------------------------------------------------------------------------------------------------------
@case("sweep-resume-changed-axes", "sweep --resume with other axes")
def _sweep_axes(ctx: Ctx) -> None:
    ctx.copy_ref("refsweep")
    ctx.cli("sweep", "sweep.yaml", "--resume", *sets("axes={hardware.overrides.core.neurons_per_core: [256]}"),
            expect=2, names=["axes"], leftovers=False)


@case("sweep-resume-new-workers", "sweep --resume may change execution.* (workers, torch_threads)", slow=True)
def _sweep_workers(ctx: Ctx) -> None:
    run = ctx.copy_ref("refsweep")
    remove_last_point(run)
    ctx.cli("sweep", "sweep.yaml", "--resume", "--workers", "0", *sets("execution.torch_threads=1"), expect=0)
    ctx.run_folder_ok(run, POINTS["refsweep"])


@case("sweep-resume-missing", "sweep --resume of a folder that does not exist")
def _sweep_missing(ctx: Ctx) -> None:
    ctx.copy_cache()
    for f in ("c.yaml", "sweep.yaml"):
        shutil.copyfile(ctx.shared.dir / f, ctx.path(f))
    ctx.cli("sweep", "sweep.yaml", "--resume", expect=2, names=["--resume", "refsweep"])

