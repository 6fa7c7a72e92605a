"""A damaged or planted run folder given to `codesign report` / `validate`: refused in one line (exit 2) before
anything is written, never read or written through a symbolic link, never outside the folder."""
import os
import subprocess
import sys

import pandas as pd
import pytest

from codesign.reporting.report import rebuild_report, write_report
from codesign.store.results import read_results
from tests.codesign.test_report import _table

CLAIM = ("claims:\n  - id: e\n    text: pruning saves energy\n    source: a test\n    metric: energy_j\n"
         "    relation: '<'\n    factor: 1.0\n    a: {ratio: 0.5}\n    b: {ratio: 0.0}\n    match: none\n")


def _run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    write_report(run, _table().assign(point_id=["p0", "p1"]), "seed: 0\n", ["two points"], title="t")
    return run


def _edit(run, **columns):
    df = pd.read_csv(run / "results.csv", dtype=str)
    for col, values in columns.items():
        df[col] = values
    df.to_csv(run / "results.csv", index=False)


def _cli(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "codesign", *args], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("column, values, needle", [
    ("params", ["many", "12000"], "column 'params' holds text ('many'); it must hold numbers"),
    ("energy_j_ci_low", ["lo", "1e-6"], "column 'energy_j_ci_low' holds text ('lo')"),
    ("point_id", ["x/../../outside/pt", "p1"], "point_id 'x/../../outside/pt' is not a plain name"),
    ("point_id", ["p0", "p0"], "point_id 'p0' is listed twice"),
    ("method", ["sca", ""], "column 'method' is empty in row 3 (line of the file)"),  # was an IndexError traceback
])
def test_bad_columns_are_refused_in_one_line_and_nothing_is_rewritten(tmp_path, column, values, needle):
    run = _run(tmp_path)
    before = {p: (run / p).read_bytes() for p in ("report.md", "report.html")}
    _edit(run, **{column: values})
    with pytest.raises(ValueError, match="'.*results.csv': " + needle.replace("(", r"\(").replace(")", r"\)")
                       .replace(".", r"\.")):
        rebuild_report(run)
    assert {p: (run / p).read_bytes() for p in before} == before
    (tmp_path / "c.yaml").write_text(CLAIM)
    proc = _cli(tmp_path, "validate", "c.yaml", "run")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr, proc.stderr
    assert not (run / "claims.json").exists() and not (tmp_path / "outside").exists()


@pytest.mark.parametrize("planted", ["claims.json", "figures", "config.resolved.yaml"])
def test_a_symbolic_link_in_the_run_folder_is_refused_and_its_target_untouched(tmp_path, planted):
    run = _run(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious")
    target = outside if planted == "figures" else outside / "victim.txt"
    if (run / planted).is_dir():
        for f in (run / planted).iterdir():
            f.unlink()
        (run / planted).rmdir()
    elif (run / planted).exists():
        (run / planted).unlink()
    os.symlink(target, run / planted)
    with pytest.raises(ValueError, match=f"run folder: .*{planted[:8]}.* is a symbolic link"):
        rebuild_report(run)
    (tmp_path / "c.yaml").write_text(CLAIM)
    proc = _cli(tmp_path, "validate", "c.yaml", "run")
    assert proc.returncode == 2 and "is a symbolic link" in proc.stderr, proc.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"]
    assert (outside / "victim.txt").read_text() == "precious"


def test_a_claim_matching_on_a_missing_column_is_one_line(tmp_path):
    run = _run(tmp_path)
    pd.read_csv(run / "results.csv").drop(columns=["ratio"]).to_csv(run / "results.csv", index=False)
    (tmp_path / "c.yaml").write_text(CLAIM.replace("match: none", "match: ratio").replace(
        "{ratio: 0.5}", "{method: sca}").replace("{ratio: 0.0}", "{method: sca}"))
    proc = _cli(tmp_path, "validate", "c.yaml", "run")
    assert proc.returncode == 2 and "match 'ratio' needs the numeric column 'ratio'" in proc.stderr, proc.stderr


def test_deeply_nested_json_is_not_json(tmp_path):
    run = _run(tmp_path)
    (run / "provenance.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match="provenance.json' is not JSON \\(maximum recursion depth"):
        rebuild_report(run)


def test_an_intact_folder_still_reads_and_reports(tmp_path):
    run = _run(tmp_path)
    assert read_results(run)["point_id"].tolist() == ["p0", "p1"]
    assert rebuild_report(run) == run / "report.html"


def test_control_characters_of_user_values_are_printed_as_escapes(tmp_path):
    run = _run(tmp_path)
    (tmp_path / "c.yaml").write_text(CLAIM.replace("id: e", 'id: "\\e[2J\\e]0;PWNED\\e[31mX"'))
    proc = _cli(tmp_path, "validate", "c.yaml", "run")
    assert "\x1b" not in proc.stdout and "\\x1b[2J\\x1b]0;PWNED" in proc.stdout.replace("\n", ""), proc.stdout
    (tmp_path / "c.yaml").write_text(CLAIM.replace("id: e", 'id: "\\e[2Jx"').replace("metric: energy_j",
                                                                                   "metric: nope"))
    proc = _cli(tmp_path, "validate", "c.yaml", "run")
    assert proc.returncode == 2 and "\x1b" not in proc.stderr and "\\x1b[2Jx" in proc.stderr, proc.stderr


def test_a_dollar_in_a_method_name_is_text_in_figures(tmp_path):
    run = _run(tmp_path)
    _edit(run, method=["$\\frac{a$", "$x"])
    assert rebuild_report(run) == run / "report.html"
    assert "$\\frac{a$" in (run / "report.md").read_text()


@pytest.mark.parametrize("value, shown", [("inf", "inf"), ("-1e-6", "-1e-06"), ("abc", "abc")])
def test_sample_energies_must_be_finite_numbers_at_least_zero(tmp_path, value, shown):
    from codesign.reporting.hwfigures import load_samples
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "samples.csv").write_text(f"sample,energy_j,latency_s\n0,1e-6,2e-6\n1,{value},2e-6\n")
    with pytest.raises(ValueError, match=f"samples.csv': column 'energy_j' holds '{shown}'; energies and times"):
        load_samples(folder)
    (folder / "samples.csv").write_text("sample,energy_j,latency_s\n0,1e-6,2e-6\n1,0.0,2e-6\n")
    assert load_samples(folder)["energy_j"].tolist() == [1e-6, 0.0]


@pytest.mark.parametrize("column", ["correct", "synops"])
def test_text_in_a_count_column_of_samples_csv_is_named_with_its_file(tmp_path, column):
    # validate said only "could not convert string to float: 'yes'"
    from codesign.reporting.hwfigures import load_samples
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "samples.csv").write_text(f"sample,energy_j,{column},prediction\n0,1e-6,1,3\n1,2e-6,yes,\n")
    with pytest.raises(ValueError, match=f"samples.csv': column '{column}' holds 'yes'; its values are finite"):
        load_samples(folder)
    (folder / "samples.csv").write_text(f"sample,energy_j,{column},prediction\n0,1e-6,1,3\n1,2e-6,0,\n")
    assert load_samples(folder)[column].tolist() == [1, 0]  # an empty prediction is allowed


def test_validate_keeps_the_old_verdicts_when_the_report_cannot_be_rebuilt(tmp_path):
    run = _run(tmp_path)
    (tmp_path / "c.yaml").write_text(CLAIM)
    assert _cli(tmp_path, "validate", "c.yaml", "run").returncode in (0, 1)
    old = (run / "claims.json").read_text()
    assert '"id": "e"' in old
    (tmp_path / "c2.yaml").write_text(CLAIM.replace("id: e", "id: f"))
    (run / "provenance.json").write_text("{damaged")
    proc = _cli(tmp_path, "validate", "c2.yaml", "run")
    assert proc.returncode == 2 and "provenance.json' is not JSON" in proc.stderr, proc.stderr
    assert (run / "claims.json").read_text() == old  # not the verdicts of a report that was never rebuilt
    (run / "provenance.json").write_text("{}")
    assert _cli(tmp_path, "validate", "c2.yaml", "run").returncode in (0, 1)
    assert '"id": "f"' in (run / "claims.json").read_text() and "| f | PASS |" in (run / "report.md").read_text()


@pytest.mark.parametrize("planted", ["report_meta.json", "points/p0/samples.csv"])
def test_a_fifo_in_the_run_folder_is_refused_instead_of_blocking_report_and_validate(tmp_path, planted):
    run = _run(tmp_path)
    (run / planted).parent.mkdir(parents=True, exist_ok=True)
    (run / planted).unlink(missing_ok=True)
    os.mkfifo(run / planted)  # reading it would wait for a writer forever
    with pytest.raises(ValueError, match=f"run folder: .*{planted[:8]}.* is not a regular file or folder"):
        rebuild_report(run)
    from typer.testing import CliRunner
    from codesign.cli.main import app
    (tmp_path / "c.yaml").write_text(CLAIM)
    result = CliRunner().invoke(app, ["validate", str(tmp_path / "c.yaml"), str(run)])
    assert result.exit_code == 2 and "is not a regular file or folder (a FIFO" in result.output, result.output


def test_a_report_rebuilt_after_more_points_landed_marks_the_old_verdicts_stale(tmp_path):
    # a sweep resumed after codesign validate rebuilt its report with the verdicts of the earlier points, unmarked
    run = _run(tmp_path)
    (tmp_path / "c.yaml").write_text(CLAIM)
    assert _cli(tmp_path, "validate", "c.yaml", "run").returncode in (0, 1)
    assert "## Claims\n" in (run / "report.md").read_text()
    three = pd.concat([read_results(run), read_results(run).iloc[:1].assign(point_id="p2")], ignore_index=True)
    write_report(run, three, "seed: 0\n", ["three points"], title="t")  # what a resumed sweep does
    page = (run / "report.md").read_text()
    assert "Claims (STALE: judged on 2 design points, the results now hold 3; run codesign validate again)" in page
    assert pd.read_parquet(run / "results.parquet")["point_id"].tolist() == ["p0", "p1", "p2"]
    assert _cli(tmp_path, "validate", "c.yaml", "run").returncode in (0, 1)
    assert "## Claims\n" in (run / "report.md").read_text() and "STALE" not in (run / "report.md").read_text()


def test_report_on_a_run_that_has_not_finished_says_so(tmp_path):
    # it asked "is '<folder>' a run folder?" of a folder a run was still writing
    run = tmp_path / "r1"
    run.mkdir()
    (run / ".incomplete").touch()
    with pytest.raises(FileNotFoundError, match=r"report: the run in '.*r1' has not finished \(results.csv is not "
                                                r"written yet\): wait for it, or resume a stopped one with "
                                                r"--set run_name=r1 --resume"):
        rebuild_report(run)
    (run / ".incomplete").unlink()
    with pytest.raises(FileNotFoundError, match=r"is '.*r1' a run folder\?"):
        rebuild_report(run)
