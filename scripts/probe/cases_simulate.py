"""`codesign simulate`: damaged, crafted, swapped and mismatched graph/trace files, trace folders, payloads, a zip
bomb, bad chip options, --json/--out."""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from cases_common import one, sets
from fixtures import edit_npz, object_array, read_npz, write_npz, zip_bomb_npz
from harness import Case, Ctx

CASES = []
ANALYTIC = ["--model", "analytic"]


# --- damaged or foreign files, given as the graph and as the trace ---------------------------------------------------
def _damage(kind: str, src: str, rel: str):
    """setup(ctx) -> rel: a damaged copy of artifact `src` at `rel`."""
    def make(ctx: Ctx) -> str:
        p = ctx.path(rel)
        orig = ctx.artifact(src, "orig-" + src + ".npz")
        data = orig.read_bytes()
        if kind == "directory":
            p.mkdir()
        elif kind == "empty":
            p.write_bytes(b"")
        elif kind == "truncated":
            p.write_bytes(data[: len(data) // 2])
        elif kind == "text":
            p.write_text("graph: not really\n")
        elif kind == "png":
            p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
        elif kind == "zip-not-npz":
            with zipfile.ZipFile(p, "w") as zf:
                zf.writestr("readme.txt", "hello")
        elif kind == "meta-list":
            edit_npz(orig, p, lambda a, m: [1, 2])
        elif kind == "meta-not-json":
            arrays, _ = read_npz(orig)
            write_npz(p, arrays, b"\xff{not json")
        elif kind == "meta-missing":
            arrays, _ = read_npz(orig)
            np.savez(p, **arrays)
        elif kind == "object-member":
            edit_npz(orig, p, lambda a, m: a.__setitem__("extra", object_array(ctx.payload_cmd())))
        elif kind == "object-required":
            key = "w0" if src.startswith("g") else "offsets"
            edit_npz(orig, p, lambda a, m: a.__setitem__(key, object_array(ctx.payload_cmd())))
        elif kind == "npy-object":
            with open(p, "wb") as fh:
                np.save(fh, object_array(ctx.payload_cmd()), allow_pickle=True)
        elif kind == "missing":
            pass
        else:
            raise ValueError(kind)
        orig.unlink()
        return rel
    return make


KINDS = ("directory", "empty", "truncated", "text", "png", "zip-not-npz", "meta-list", "meta-not-json",
         "meta-missing", "object-member", "object-required", "npy-object", "missing")
for kind in KINDS:
    for role in ("graph", "trace"):
        rel = f"bad-{role}.npz"
        src = "g0" if role == "graph" else "t0"
        make = _damage(kind, src, rel)

        def body(ctx: Ctx, make=make, role=role, rel=rel, kind=kind) -> None:
            bad = make(ctx)
            other = str(ctx.artifact("t0" if role == "graph" else "g0").name)
            args = [bad, other] if role == "graph" else [other, bad]
            # an extra member holding a pickle may be ignored (exit 0) but must never be unpickled
            ctx.cli("simulate", *args, *ANALYTIC, expect=(0, 2) if kind == "object-member" else 2, names=[rel])
        cat = "payload" if "object" in kind else "simulate"
        CASES.append(Case(f"sim-{role}-{kind}", cat, f"simulate with a {kind} file as the {role}", body))


# --- crafted content -------------------------------------------------------------------------------------------------
def _crafted(id: str, what: str, src: str, change, names=(), expect=2, show=()):
    rel = f"{id}.npz"

    def body(ctx: Ctx) -> None:
        orig = ctx.artifact(src, "orig.npz")
        edit_npz(orig, ctx.path(rel), change)
        orig.unlink()
        other = ctx.artifact("t0" if src == "g0" else "g0").name
        args = [rel, other] if src == "g0" else [other, rel]
        ctx.cli("simulate", *args, *ANALYTIC, expect=expect, names=[rel, *names], show=show)
    CASES.append(Case(id, "simulate", what, body, slow=expect != 2))


def _set(key, fn):
    return lambda a, m: a.__setitem__(key, fn(a[key]))


def _meta(key, value):
    return lambda a, m: m.__setitem__(key, value)


def _zero_samples(a, m):
    a["offsets"] = a["offsets"][:1] * 0
    a["indices"] = a["indices"][:0]
    for k in ("values", "labels", "predictions"):
        if k in a:
            a[k] = a[k][:0]
    for k in [k for k in a if k.startswith("activity")]:
        a[k] = a[k][:0]
    m["n_samples"] = 0


def _swap_offsets(x):
    y = x.copy()
    y[3], y[7] = x[7], x[3]
    return y


_crafted("sim-graph-nan-weights", "graph whose w0 weights are all NaN", "g0",
         _set("w0", lambda w: np.full_like(w, np.nan)), names=["w0", "weight", "nan"])
_crafted("sim-graph-inf-weights", "graph whose w2 weights are +inf", "g0",
         _set("w2", lambda w: np.full_like(w, np.inf)), names=["w2", "weight", "inf"])
_crafted("sim-graph-string-weights", "graph whose w0 is an array of strings", "g0",
         _set("w0", lambda w: np.array(["a"] * w.size)), names=["w0"])
_crafted("sim-graph-flat-weights", "graph whose w0 has the wrong shape", "g0",
         _set("w0", lambda w: w.reshape(-1)), names=["w0", "shape"])
_crafted("sim-graph-format-99", "graph of an unknown format version", "g0", _meta("format_version", 99),
         names=["format"])
_crafted("sim-graph-markup-name", "graph whose name holds Rich markup (printed as typed)", "g0",
         _meta("name", "[red]g[/red] [/x]"), names=["fingerprint"], expect=(0, 2), show=["[red]g[/red] [/x]"])
_crafted("sim-trace-zero-samples", "trace of 0 samples", "t0", _zero_samples, names=["sample"])
_crafted("sim-trace-negative-index", "trace with a negative neuron index", "t0",
         _set("indices", lambda x: np.where(np.arange(x.size) == 0, -1, x).astype(x.dtype)), names=["indices"])
_crafted("sim-trace-huge-index", "trace with neuron index 2**30", "t0",
         _set("indices", lambda x: np.where(np.arange(x.size) == 0, 2 ** 30, x).astype(x.dtype)), names=["indices"])
_crafted("sim-trace-offsets-decreasing", "trace whose CSR offsets decrease", "t0", _set("offsets", _swap_offsets),
         names=["offsets"])
_crafted("sim-trace-timesteps-0", "trace meta n_timesteps 0", "t0", _meta("n_timesteps", 0), names=["n_timesteps"])
_crafted("sim-trace-nsamples-mismatch", "trace meta n_samples 1000 for 10 samples", "t0", _meta("n_samples", 1000),
         names=["n_samples"])
_crafted("sim-trace-labels-short", "trace with 3 labels for 10 samples", "t0", _set("labels", lambda x: x[:3]),
         names=["labels"])
_crafted("sim-trace-nan-values", "graded trace whose values are NaN (event counts do not use them)", "t0",
         _set("values", lambda x: np.full_like(x, np.nan)), names=["values", "nan"], expect=(0, 2))
_crafted("sim-trace-meta-nan", "trace meta n_timesteps NaN", "t0", _meta("n_timesteps", float("nan")),
         names=["n_timesteps"])


# --- pairs --------------------------------------------------------------------------------------------------------------
def _pair(id: str, what: str, a: str, b: str, names):
    def body(ctx: Ctx) -> None:
        pa, pb = ctx.artifact(a).name, ctx.artifact(b, f"{b}-copy.npz").name
        ctx.cli("simulate", pa, pb, *ANALYTIC, expect=2, names=names)
    CASES.append(Case(id, "simulate", what, body))


_pair("sim-swapped", "graph and trace swapped", "t0", "g0", ["t0.npz", "g0-copy.npz", "graph", "trace"])
_pair("sim-graph-twice", "the graph given as the trace too", "g0", "g0", ["g0-copy.npz", "trace"])
_pair("sim-trace-twice", "the trace given as the graph too", "t0", "t0", ["t0.npz", "graph"])
_pair("sim-other-model", "a trace recorded on another model (ratio 0.5)", "g0", "t5", ["fingerprint", "t5"])


# --- streamed trace folders ---------------------------------------------------------------------------------------------
def _folder(id: str, what: str, edit, expect=2, names=("tracedir",)):
    def body(ctx: Ctx) -> None:
        g = ctx.artifact("g0").name
        d = ctx.artifact("tracedir")
        edit(ctx, d)
        ctx.cli("simulate", g, "tracedir", *ANALYTIC, expect=expect, names=names)
    CASES.append(Case(id, "payload" if "object" in id else "simulate", what, body, slow=expect == 0))


def _obj_column(ctx, d):
    np.save(d / "offsets.npy", object_array(ctx.payload_cmd()), allow_pickle=True)


def _trunc_column(ctx, d):
    data = (d / "indices.npy").read_bytes()
    (d / "indices.npy").write_bytes(data[: len(data) // 2])


def _empty_folder(ctx, d):
    for p in d.iterdir():
        p.unlink()


_folder("sim-tracedir-ok", "a streamed trace folder", lambda ctx, d: None, expect=0)
_folder("sim-tracedir-no-meta", "trace folder without meta.json (incomplete)", lambda c, d: (d / "meta.json").unlink(),
        names=["meta.json", "tracedir"])
_folder("sim-tracedir-meta-list", "trace folder whose meta.json is a list",
        lambda c, d: (d / "meta.json").write_text("[1, 2]"), names=["meta.json", "tracedir"])
_folder("sim-tracedir-object-column", "trace folder whose offsets.npy is a pickled object array", _obj_column,
        names=["offsets", "tracedir"])
_folder("sim-tracedir-truncated-column", "trace folder with a truncated indices.npy", _trunc_column,
        names=["indices", "tracedir"])
_folder("sim-tracedir-empty", "an empty trace folder", _empty_folder, names=["meta.json", "tracedir"])


def _bomb(ctx: Ctx) -> None:
    src = ctx.artifact("g0", "orig.npz")
    zip_bomb_npz(src, ctx.path("bomb.npz"), "w0")
    src.unlink()
    ctx.cli("simulate", "bomb.npz", ctx.artifact("t0").name, *ANALYTIC, expect=2, names=["bomb.npz", "w0"])


CASES.append(Case("sim-graph-zip-bomb", "simulate", "graph .npz whose w0 inflates to 2.5 GiB (memory)", _bomb,
                  slow=True))


# --- options -----------------------------------------------------------------------------------------------------------
def _opt(id: str, what: str, extra: list, names, show=(), expect=2, check=None, allowed=(), restricted=False,
         setup=None):
    def args(ctx: Ctx) -> list[str]:
        g, t = ctx.artifact("g0").name, ctx.artifact("t0").name
        if setup is not None:
            setup(ctx)
        return ["simulate", g, t, *(extra(ctx) if callable(extra) else extra)]
    CASES.append(one(id, "payload" if "payload" in id else "simulate", what, args, expect=expect, names=names,
                     show=show, check=check, allowed=allowed, restricted=restricted, slow=False))


_opt("sim-preset-unknown", "unknown chip preset", ["--preset", "nope"], ["preset", "nope"])
_opt("sim-preset-markup", "preset name with Rich markup", ["--preset", "[red]x[/red]"], ["preset"],
     show=["[red]x[/red]"])
_opt("sim-preset-path", "preset given as a path", ["--preset", "../../../etc/passwd"], ["preset"])
_opt("sim-set-no-equals", "--set without '='", sets("core.neurons_per_core"), ["--set"])
_opt("sim-set-nan", "--set core.neurons_per_core=.nan", sets("core.neurons_per_core=.nan"),
     ["core.neurons_per_core"])
_opt("sim-set-nan-energy", "--set core.static_power_w=nan", sets("core.static_power_w=nan"),
     ["core.static_power_w"])
_opt("sim-set-zero", "--set core.neurons_per_core=0", sets("core.neurons_per_core=0"), ["core.neurons_per_core"])
_opt("sim-set-negative", "--set core.neurons_per_core=-1", sets("core.neurons_per_core=-1"),
     ["core.neurons_per_core"])
_opt("sim-set-text", "--set core.neurons_per_core=abc", sets("core.neurons_per_core=abc"), ["core.neurons_per_core"])
_opt("sim-set-unknown", "--set of an unknown chip key", sets("bogus.key=1"), ["bogus"])
_opt("sim-set-section-list", "--set core=[1]", sets("core=[1]"), ["core"])
_opt("sim-set-bad-yaml", "--set value that is bad YAML", sets("core.neurons_per_core=[1,"),
     ["--set", "core.neurons_per_core"])
_opt("sim-set-payload", "--set value with a !!python/object/apply tag",
     lambda ctx: sets(f"core.neurons_per_core=!!python/object/apply:os.system [{ctx.payload_cmd()!r}]"),
     ["--set", "core.neurons_per_core"])
_opt("sim-model-unknown", "--model bogus", ["--model", "bogus"], ["model", "bogus"])
_opt("sim-placement-unknown", "--placement bogus", ["--placement", "bogus"], ["placement", "bogus"])
_opt("sim-semantics-unknown", "--semantics bogus", ["--semantics", "bogus"], ["semantics", "bogus"])
_opt("sim-too-small-chip", "chip too small for the network", sets("mesh_width=1", "mesh_height=1",
                                                                 "cores_per_tile=1"), ["fit", "core", "neurons"])


def _json_ok(ctx: Ctx, cmd) -> None:
    if cmd.rc != 0:
        return
    for name, text in (("stdout", cmd.out), ("out.json", ctx.path("out.json").read_text()
                                            if ctx.path("out.json").exists() else None)):
        if text is None:
            continue
        try:
            json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as exc:
            ctx.defect(f"--json {name} is not strict JSON: {str(exc)[:120]}")


_opt("sim-ok-tables", "simulate a valid graph + trace (tables)", ANALYTIC, [], expect=0)
_opt("sim-ok-json", "--json prints one strict JSON object", [*ANALYTIC, "--json"], [], expect=0, check=_json_ok)
_opt("sim-ok-json-out", "--json --out out.json (mode 0644)", [*ANALYTIC, "--json", "--out", "out.json"], [],
     expect=0, check=_json_ok, allowed=["out.json"])
_opt("sim-out-missing-folder", "--out into a folder that does not exist", ["--json", "--out", "missing/x.json"],
     ["--out", "missing"])
_opt("sim-out-is-folder", "--out names an existing folder", ["--out", "outdir"], ["--out", "outdir"],
     setup=lambda ctx: ctx.path("outdir").mkdir())
_opt("sim-out-read-only", "--out into a read-only folder", ["--out", "ro/x.json", *ANALYTIC],
     ["--out", "ro", "x.json"], restricted=True, setup=lambda ctx: (ctx.path("ro").mkdir(), os.chmod(ctx.path("ro"),
                                                                                                  0o555)))
