"""Sweep and search specs: invalid bases, axes, execution, objectives, storage, spaces; corrupted study DBs."""
from __future__ import annotations

import os
import sqlite3

from cases_common import one, sets, unique
from fixtures import SEARCH
from harness import CHEAP, Case, Ctx, deep_merge, dump

CASES = []
SPEC = {"base": "c.yaml", "run_name": "s", "cache_dir": "cache", "execution": {"workers": 0},
        "axes": {"hardware.overrides.core.neurons_per_core": [512, 1024]}}
QSPEC = deep_merge(SEARCH, {"run_name": "q"})


def sweep_case(id: str, what: str, spec, names=("s.yaml",), expect=2, extra=(), files=None, **kw):
    files = {"c.yaml": CHEAP, "s.yaml": spec, **(files or {})}
    CASES.append(one(unique(id), "sweep", what, ["sweep", "s.yaml", *extra], expect=expect, names=names,
                     files=files, cache=expect != 2, **kw))


def search_case(id: str, what: str, spec, names, expect=2, extra=(), **kw):
    CASES.append(one(unique(id), "search", what, ["search", "q.yaml", *extra], expect=expect, names=names,
                     files={"c.yaml": CHEAP, "q.yaml": spec}, cache=expect != 2, **kw))


# --- sweep: base ---------------------------------------------------------------------------------------------------
for key, base, names in (("int", 5, ["base"]), ("list", [1], ["base"]), ("missing", "missing.yaml", ["missing.yaml"]),
                         ("directory", "basedir", ["basedir"]), ("etc-passwd", "../../../../../../etc/passwd",
                                                                 ["passwd", "base"]),
                         ("empty-string", "", ["base"]),
                         ("unknown-key", {**CHEAP, "bogus": 1}, ["bogus"]),
                         ("ratio-out-of-range", deep_merge(CHEAP, {"compression": {"ratios": [1.5]}}), ["ratio"]),
                         ("overrides-list", deep_merge(CHEAP, {"hardware": {"overrides": [1, 2]}}),
                          ["overrides"]),
                         ("preset-unknown", deep_merge(CHEAP, {"hardware": {"preset": "nope"}}), ["preset"])):
    sweep_case(f"sweep-base-{key}", f"sweep base: {key}", {**SPEC, "base": base}, names=names,
               setup=(lambda ctx: ctx.path("basedir").mkdir()) if key == "directory" else None)
sweep_case("sweep-base-file-is-list", "sweep base file holds a list", {**SPEC, "base": "b.yaml"},
           names=["b.yaml"], files={"b.yaml": "- 1\n"})

# --- sweep: axes ---------------------------------------------------------------------------------------------------
for key, axes, names in (("empty-values", {"hardware.weight_bits": []}, ["hardware.weight_bits"]),
                         ("no-grids", [], ["axes"]), ("list-of-ints", [1, 2], ["axes"]), ("string", "x", ["axes"]),
                         ("scalar-value", {"hardware.weight_bits": 8}, ["hardware.weight_bits"]),
                         ("unknown-axis", {"foo.bar": [1]}, ["foo.bar", "foo"]),
                         ("unknown-param", {"compression.params.bogus": [1]}, ["bogus"]),
                         ("unknown-override", {"hardware.overrides.bogus.key": [1]}, ["bogus"]),
                         ("ratio-out-of-range", {"compression.ratio": [0.5, 1.5]}, ["ratio"]),
                         ("preset-unknown", {"hardware.preset": ["loihi", "nope"]}, ["preset", "nope"]),
                         ("method-unknown", {"compression.method": ["nope"]}, ["method", "nope"]),
                         ("nan-value", {"train.lr": [float("nan")]}, ["train.lr"]),
                         ("section-axis", {"hardware": [1]}, ["hardware"]),
                         ("markup-preset", {"hardware.preset": ["[red]x[/red]"]}, ["preset"])):
    sweep_case(f"sweep-axes-{key}", f"sweep axes: {key}", {**SPEC, "axes": axes}, names=names,
               show=["[red]x[/red]"] if "markup" in key else ())

# --- sweep: execution and the spec file ---------------------------------------------------------------------------
sweep_case("sweep-workers-negative", "execution.workers -1", {**SPEC, "execution": {"workers": -1}},
           names=["execution.workers"])
sweep_case("sweep-torch-threads-0", "execution.torch_threads 0", {**SPEC, "execution": {"torch_threads": 0}},
           names=["execution.torch_threads"])
sweep_case("sweep-scheduler-bogus", "execution.scheduler is not an address",
           {**SPEC, "execution": {"scheduler": "bogus"}}, names=["scheduler"])
sweep_case("sweep-scheduler-unreachable", "--scheduler to a port nobody listens on (must not hang)", SPEC,
           names=["scheduler", "127.0.0.1"], extra=["--scheduler", "tcp://127.0.0.1:9"])
sweep_case("sweep-workers-text", "--workers abc (click usage error)", SPEC, names=["--workers", "abc"],
           extra=["--workers", "abc"])
sweep_case("sweep-workers-cli-negative", "--workers -3", SPEC, names=["workers"], extra=["--workers", "-3"])
for key, text, names in (("nonmapping", "- 1\n", ["s.yaml"]), ("bad-yaml", "axes: {a: [1\n", ["s.yaml"]),
                         ("unknown-key", dump({**SPEC, "axis": {}}), ["axis"]),
                         ("run-name-dotdot", dump({**SPEC, "run_name": "../x"}), ["run_name"]),
                         ("5mb", dump(SPEC) + ("#" * 99 + "\n") * 50_000, ["s.yaml"])):
    sweep_case(f"sweep-spec-{key}", f"sweep spec: {key}", text, names=names)
CASES += [one("sweep-spec-missing", "sweep", "sweep spec that does not exist", ["sweep", "nope.yaml"],
              names=["nope.yaml"]),
          one("sweep-spec-directory", "sweep", "a directory as the sweep spec", ["sweep", "sdir"], names=["sdir"],
              setup=lambda ctx: ctx.path("sdir").mkdir()),
          one("sweep-output-dir-file", "sweep", "sweep output_dir is a file", ["sweep", "s.yaml"],
              names=["output_dir", "out"], files={"c.yaml": CHEAP, "s.yaml": {**SPEC, "output_dir": "out"},
                                                  "out": "file\n"})]


def _sweep_payload(ctx: Ctx) -> None:
    ctx.write("c.yaml", CHEAP)
    ctx.write("s.yaml", dump(SPEC) + f"output_dir: !!python/object/apply:os.system [{ctx.payload_cmd()!r}]\n")


CASES.append(one("payload-sweep-spec", "payload", "sweep spec with a !!python/object/apply tag", ["sweep", "s.yaml"],
                 names=["s.yaml"], setup=_sweep_payload))

# --- sweep: successful odd shapes ----------------------------------------------------------------------------------


def _points(n: int):
    def check(ctx: Ctx, cmd) -> None:
        if cmd.rc == 0:
            ctx.run_folder_ok(ctx.path("reports/s"), n)
    return check


sweep_case("sweep-ok-empty-axes", "axes {} sweeps the base ratios only", {**SPEC, "axes": {}}, expect=0,
           check=_points(2))
sweep_case("sweep-ok-duplicate-values", "repeated axis values are one point each",
           {**SPEC, "axes": {"compression.ratio": [0.5, 0.5, 0.0, 0.5]}}, expect=0, check=_points(2))
sweep_case("sweep-ok-grid-list", "axes as a list of grids (union)",
           {**SPEC, "axes": [{"hardware.overrides.core.neurons_per_core": [512]},
                             {"hardware.overrides.core.neurons_per_core": [512, 1024]}]}, expect=0, check=_points(4))
sweep_case("sweep-ok-dask-2-workers", "sweep on a local dask cluster of 2 workers", SPEC, expect=0,
           extra=["--workers", "2"], check=_points(4))

# --- search: spec --------------------------------------------------------------------------------------------------
for key, over, names in (("objective-unknown", {"objectives": {"foo": "max"}}, ["objectives", "foo"]),
                         ("objective-direction", {"objectives": {"accuracy": "up"}}, ["objectives"]),
                         ("objectives-empty", {"objectives": {}}, ["objectives"]),
                         ("storage-bogus", {"storage": "bogus://x"}, ["storage"]),
                         ("storage-missing-dir", {"storage": "sqlite:////nonexistent-dir/x/study.db"},
                          ["storage", "nonexistent-dir"]),
                         ("storage-int", {"storage": 5}, ["storage"]),
                         ("n-trials-0", {"n_trials": 0}, ["n_trials"]), ("n-trials-negative", {"n_trials": -1},
                                                                         ["n_trials"]),
                         ("sampler-unknown", {"sampler": "grid"}, ["sampler"]),
                         ("population-1", {"population_size": 1}, ["population_size"]),
                         ("min-accuracy-1.5", {"min_accuracy": 1.5}, ["min_accuracy"]),
                         ("max-chips-0", {"max_chips": 0}, ["max_chips"]),
                         ("space-empty", {"space": {}}, ["space"]),
                         ("space-low-above-high", {"space": {"compression.ratio": {"low": 0.8, "high": 0.2}}},
                          ["compression.ratio", "space"]),
                         ("space-unknown-axis", {"space": {"foo.bar": [1, 2]}}, ["foo.bar", "foo"]),
                         ("space-empty-choices", {"space": {"compression.ratio": []}}, ["compression.ratio"]),
                         ("space-bad-choice", {"space": {"compression.ratio": [1.5]}}, ["ratio"]),
                         ("space-log-from-0", {"space": {"compression.ratio": {"low": 0, "high": 0.5, "log": True}}},
                          ["compression.ratio", "log"]),
                         ("space-nan-bound", {"space": {"compression.ratio": {"low": float("nan"), "high": 0.5}}},
                          ["compression.ratio", "low"]),
                         ("space-string", {"space": "ratio"}, ["space"]),
                         ("unknown-key", {"n_trails": 3}, ["n_trails"])):
    search_case(f"search-{key}", f"search: {key}", deep_merge(QSPEC, {"search": over}) if key not in
                ("objectives-empty", "space-empty") else {**QSPEC, "search": {**QSPEC["search"], **over}},
                names=names)
search_case("search-spec-nonmapping", "search spec holds a list", "- 1\n", ["q.yaml"])
def _search_ok(ctx: Ctx, cmd) -> None:
    if cmd.rc == 0:
        ctx.run_folder_ok(ctx.path("reports/q"))
        ctx.study_trials(ctx.path("reports/q"), 2)


search_case("search-ok", "a serial 2-trial TPE search", QSPEC, [], expect=0, check=_search_ok)

# --- search: --resume with a damaged study ------------------------------------------------------------------------


def _study(kind: str):
    def body(ctx: Ctx) -> None:
        run = ctx.copy_ref("refsearch")
        db = run / "study.db"
        data = db.read_bytes()
        if kind == "garbage":
            db.write_bytes(os.urandom(4096))
        elif kind == "truncated":
            db.write_bytes(data[:len(data) // 2])
        elif kind == "zero-bytes":
            db.write_bytes(b"")
        elif kind == "text":
            db.write_text("not a database\n")
        elif kind == "directory":
            db.unlink()
            db.mkdir()
        elif kind == "foreign-sqlite":
            db.unlink()
            con = sqlite3.connect(db)
            con.execute("create table trials (x int)")
            con.commit()
            con.close()
        elif kind == "deleted":
            db.unlink()
        expect = (0, 2) if kind in ("deleted", "zero-bytes") else 2  # sqlite: a 0-byte file is an empty database
        cmd = ctx.cli("search", "search.yaml", "--resume", expect=expect, names=["study.db", "search.storage"],
                      leftovers=False)
        if cmd.rc == 0:
            ctx.run_folder_ok(run)
    return body


for kind in ("garbage", "truncated", "zero-bytes", "text", "directory", "foreign-sqlite", "deleted"):
    CASES.append(Case(f"search-resume-study-{kind}", "search", f"search --resume with study.db {kind}",
                      _study(kind), slow=kind in ("deleted", "zero-bytes")))


def _more_trials(ctx: Ctx) -> None:
    run = ctx.copy_ref("refsearch")
    ctx.cli("search", "search.yaml", "--resume", *sets("search.n_trials=3"), expect=0)
    ctx.run_folder_ok(run)
    ctx.study_trials(run, 3)


def _other_objectives(ctx: Ctx) -> None:
    ctx.copy_ref("refsearch")
    ctx.cli("search", "search.yaml", "--resume", *sets("search.objectives={accuracy: max}"), expect=2,
            names=["objectives", "search"], leftovers=False)


CASES += [Case("search-resume-more-trials", "search", "search --resume with n_trials raised 2 -> 3", _more_trials,
               slow=True),
          Case("search-resume-other-objectives", "search", "search --resume with other objectives",
               _other_objectives)]
