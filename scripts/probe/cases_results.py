"""`validate` and `report`: missing/empty/column-less/binary results.csv, crafted point ids, bad claims files,
damaged report_meta.json, read-only folders, Rich markup in claim ids."""
from __future__ import annotations

import csv
import io
import os

from harness import Case, Ctx, dump

CASES = []
CLAIM = {"id": "half-energy", "text": "ratio 0.5 needs at most FACTOR x the energy of ratio 0", "metric": "energy_j",
         "relation": "<=", "factor": 2.0, "a": {"method": "sca", "ratio": 0.5}, "b": {"method": "sca", "ratio": 0.0},
         "match": "none"}
SHIPPED = "codesign/claims/hardware_friendliness.yaml"


def claims(**over) -> dict:
    return {"claims": [{**CLAIM, **over}]}


def rewrite_results(run, edit) -> None:
    """Apply edit(rows as dicts) to run/results.csv."""
    path = run / "results.csv"
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    edit(rows)
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    path.write_text(out.getvalue())


def case(id: str, category: str, what: str, slow: bool = False):
    def deco(fn):
        CASES.append(Case(id, category, what, fn, slow=slow))
        return fn
    return deco


# --- validate on the reference run --------------------------------------------------------------------------------------
def _validate(id: str, what: str, claims_content, expect, names=("claims.yaml",), show=(), edit_run=None,
              category="validate"):
    def body(ctx: Ctx) -> None:
        run = ctx.copy_ref()
        if claims_content is not None:
            ctx.write("claims.yaml", claims_content(ctx) if callable(claims_content) else claims_content)
        if edit_run is not None:
            edit_run(ctx, run)
        cmd = ctx.cli("validate", "claims.yaml", "reports/ref", expect=expect, names=names, show=show, leftovers=False)
        if cmd.rc in (0, 1):
            ctx.report_whole(run, "reports/ref", required=True)
    CASES.append(Case(id, category, what, body, slow=expect != 2))


_validate("validate-pass", "a claim the run satisfies (exit 0)", claims(), 0)
_validate("validate-fail", "a claim the run violates (exit 1)", claims(factor=0.5), 1)
_validate("validate-markup-claim", "claim id and text with Rich markup print as typed",
          claims(id="[red]x[/red]", text="[/x] closing tag"), 0, show=["[red]x[/red]"])


def _shipped(ctx: Ctx) -> None:
    import shutil
    from harness import REPO
    ctx.copy_ref()
    shutil.copyfile(REPO / SHIPPED, ctx.path("shipped.yaml"))
    ctx.cli("validate", "shipped.yaml", "reports/ref", expect=(0, 1))


CASES.append(Case("validate-shipped-claims", "validate", "the shipped claims file on a run with only SCA", _shipped,
                  slow=True))

BAD_CLAIMS = {"bad-yaml": ("claims: [\n", ["claims.yaml"]), "nonmapping": ("- 1\n", ["claims.yaml"]),
              "not-a-list": (dump({"claims": 5}), ["claims"]), "empty-list": (dump({"claims": []}), ["claims"]),
              "empty-file": ("", ["claims"]),
              "missing-metric": (dump({"claims": [{k: v for k, v in CLAIM.items() if k != "metric"}]}), ["metric"]),
              "relation": (dump(claims(relation="=~")), ["relation"]),
              "unknown-metric": (dump(claims(metric="foo")), ["metric", "foo"]),
              "factor-nan": (dump(claims(factor=float("nan"))), ["factor"]),
              "factor-text": (dump(claims(factor="big")), ["factor"]),
              "factor-negative": (dump(claims(factor=-1)), ["factor"]),
              "unknown-key": (dump(claims(bogus=1)), ["bogus"]),
              "duplicate-ids": (dump({"claims": [CLAIM, CLAIM]}), ["id", "half-energy"]),
              "level-1.5": (dump(claims(level=1.5)), ["level"]),
              "a-not-mapping": (dump(claims(a=5)), ["a"]),
              "match-unknown": (dump(claims(match="closest")), ["match"]),
              "5mb": (dump(claims()) + ("#" * 99 + "\n") * 50_000, ["claims.yaml"]),
              "alias-bomb": ("a: &a [1,1,1,1,1,1,1,1,1,1]\n" + "".join(
                  f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
                  for p, c in zip("abcdef", "bcdefg")), ["claims.yaml"]),
              "binary": (bytes(range(256)) * 10, ["claims.yaml"])}
for key, (content, names) in BAD_CLAIMS.items():
    _validate(f"claims-{key}", f"claims file: {key}", content, 2, names=names, category="claims")
_validate("claims-a-unknown-column", "claim selecting a column no result has", dump(claims(a={"nosuch": 1})), (0, 2),
          names=["nosuch"], category="claims")
_validate("claims-payload", "claims file with a !!python/object/apply tag",
          lambda ctx: f"claims: !!python/object/apply:os.system [{ctx.payload_cmd()!r}]\n", 2, category="payload")


@case("claims-missing", "claims", "claims file that does not exist")
def _claims_missing(ctx: Ctx) -> None:
    ctx.copy_ref()
    ctx.cli("validate", "nope.yaml", "reports/ref", expect=2, names=["nope.yaml"])


@case("claims-directory", "claims", "a directory as the claims file")
def _claims_dir(ctx: Ctx) -> None:
    ctx.copy_ref()
    ctx.path("cdir").mkdir()
    ctx.cli("validate", "cdir", "reports/ref", expect=2, names=["cdir"])


# --- damaged run folders (validate and report) ------------------------------------------------------------------------
def _folder(key: str, what: str, edit, names, expect=2):
    for command in ("validate", "report"):
        def body(ctx: Ctx, command=command) -> None:
            run = ctx.copy_ref()
            ctx.write("claims.yaml", claims())
            target = edit(ctx, run)
            args = ["validate", "claims.yaml", target] if command == "validate" else ["report", target]
            exp = expect if command == "report" or expect != 0 else (0, 1)
            cmd = ctx.cli(*args, expect=exp, names=names, leftovers=False)
            if cmd.rc in (0, 1):
                ctx.report_whole(run, "reports/ref", required=True)
        CASES.append(Case(f"{command}-{key}", command, f"{command}: {what}", body,
                          slow=expect != 2))


def _rm_results(ctx, run):
    (run / "results.csv").unlink()
    return "reports/ref"


def _results(content):
    def edit(ctx, run):
        (run / "results.csv").write_bytes(content if isinstance(content, bytes) else content.encode())
        return "reports/ref"
    return edit


def _results_dir(ctx, run):
    (run / "results.csv").unlink()
    (run / "results.csv").mkdir()
    return "reports/ref"


def _point_id(value):
    def edit(ctx, run):
        rewrite_results(run, lambda rows: rows[0].__setitem__("point_id", value.replace("OUT", str(ctx.outside))))
        return "reports/ref"
    return edit


def _nan_energy(ctx, run):
    rewrite_results(run, lambda rows: [r.__setitem__("energy_j", "nan") for r in rows])
    return "reports/ref"


def _markup_method(ctx, run):
    rewrite_results(run, lambda rows: rows[0].__setitem__("method", "[red]x[/red] [/y]"))
    return "reports/ref"


def _samples_garbage(ctx, run):
    for p in (run / "points").glob("*/samples.csv"):
        p.write_bytes(os.urandom(500))
    return "reports/ref"


def _missing_dir(ctx, run):
    return "reports/nope"


def _is_file(ctx, run):
    ctx.write("reports/afile", "x\n")
    return "reports/afile"


_folder("results-missing", "run folder without results.csv", _rm_results, ["results.csv"])
_folder("results-empty", "empty results.csv", _results(""), ["results.csv"])
_folder("results-no-columns", "results.csv without the expected columns", _results("a,b\n1,2\n"), ["results.csv"])
_folder("results-header-only", "results.csv with a header and no rows",
        _results("point_id,method,ratio,accuracy,energy_j,latency_s\n"), ["results.csv"])
_folder("results-binary", "results.csv of random bytes", _results(bytes(range(256)) * 8), ["results.csv"])
_folder("results-is-dir", "results.csv is a directory", _results_dir, ["results.csv"])
_folder("run-dir-missing", "run folder that does not exist", _missing_dir, ["reports/nope"])
_folder("run-dir-is-file", "run folder that is a regular file", _is_file, ["reports/afile"])
_folder("point-id-dotdot", "crafted point_id ../../x in results.csv", _point_id("../../../../outside/x"),
        ["point_id"], expect=(0, 2))
_folder("point-id-absolute", "crafted absolute point_id (into the sentinel)", _point_id("OUT/abs"), ["point_id"],
        expect=(0, 2))
_folder("point-id-parent", "point_id '..'", _point_id(".."), ["point_id"], expect=(0, 2))
_folder("results-nan-energy", "energy_j NaN in every row", _nan_energy, ["energy_j"], expect=(0, 2))
_folder("results-markup-method", "method name with Rich markup", _markup_method, [], expect=0)
_folder("samples-garbage", "points/*/samples.csv of random bytes", _samples_garbage, ["samples.csv"], expect=(0, 2))


def _report_meta(key: str, what: str, content, names):
    def body(ctx: Ctx) -> None:
        run = ctx.copy_ref()
        meta = run / "report_meta.json"
        if content is None:
            meta.unlink()
        else:
            meta.write_text(content)
        ctx.cli("report", "reports/ref", expect=2, names=names, leftovers=False)
    CASES.append(Case(f"report-meta-{key}", "report", f"report: report_meta.json {what}", body))


_report_meta("missing", "deleted", None, ["report_meta.json"])
_report_meta("garbage", "not JSON", "{not json", ["report_meta.json"])
_report_meta("list", "a JSON list", "[1, 2]", ["report_meta.json"])
_report_meta("empty-object", "an empty object (no title)", "{}", ["report_meta.json", "title"])
_report_meta("tables-not-mapping", "tables: 5", '{"title": "t", "summary": [], "tables": 5, "config_file": "x"}',
             ["report_meta.json", "tables"])


def _report_ok(kind: str):
    def body(ctx: Ctx) -> None:
        run = ctx.copy_ref(kind)
        (run / "report.html").unlink()
        ctx.cli("report", f"reports/{kind}", expect=0)
        ctx.report_whole(run, kind, required=True)
    CASES.append(Case(f"report-ok-{kind}", "report", f"rebuild the report of the reference {kind} folder", body,
                      slow=True))


for kind in ("ref", "refsweep", "refsearch"):
    _report_ok(kind)


@case("report-empty-dir", "report", "report of an empty folder")
def _empty_dir(ctx: Ctx) -> None:
    ctx.path("reports/empty").mkdir(parents=True)
    ctx.cli("report", "reports/empty", expect=2, names=["results.csv", "report_meta.json", "reports/empty"])


@case("report-figures-is-file", "report", "report when figures/ is a regular file")
def _figures_file(ctx: Ctx) -> None:
    run = ctx.copy_ref()
    import shutil
    shutil.rmtree(run / "figures")
    (run / "figures").write_text("x")
    ctx.cli("report", "reports/ref", expect=2, names=["figures"], leftovers=False)


@case("report-in-use", "report", "report of a folder a live run owns", slow=True)
def _report_in_use(ctx: Ctx) -> None:
    run = ctx.copy_ref()
    with ctx.hold_lock(run):
        ctx.cli("report", "reports/ref", expect=(0, 2), names=["in use", "ref"], leftovers=False)
    ctx.report_whole(run, "reports/ref")


def _read_only(command: str):
    def body(ctx: Ctx) -> None:
        ctx.copy_ref()
        ctx.write("claims.yaml", claims())
        ctx.restrict()
        ctx.give_away(ctx.path("reports/ref"))
        args = ["validate", "claims.yaml", "reports/ref"] if command == "validate" else ["report", "reports/ref"]
        ctx.cli(*args, expect=2, names=["reports/ref", "claims.json", "report", "figures"], leftovers=False)
    CASES.append(Case(f"{command}-read-only-folder", command, f"{command} of a folder another user owns (no root file powers)",
                      body))


_read_only("validate")
_read_only("report")
