"""Hostile `codesign search` input: every bad objectives / storage / space value and every unusable study database
is one ConfigError line naming the field, found before the run folder is created (or, on resume, touched)."""
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

import codesign
from codesign.config.run import ConfigError
from codesign.store.runfolder import INCOMPLETE_NAME, LOCK_NAME
from codesign.execute.search import (STUDY_NAME, check_choices, check_objectives, check_range, check_space, check_storage,
                             check_study_db, search)
from codesign.config.sweep import Range, load_spec
from codesign.execute.sweep import resolved_spec_yaml

BASE = "base={data: {dataset: digits}, train: {epochs: 1}, hardware: {n_samples: 10}}"


def _spec(tmp_path, *sets):
    """A tiny digits search spec writing to tmp_path/out/s, serial."""
    return load_spec(None, [BASE, f"output_dir={tmp_path / 'out'}", "run_name=s", "execution.workers=0",
                            "search.n_trials=1", "search.space={compression.ratio: [0.0, 0.5]}", *sets])


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


# --- objectives ------------------------------------------------------------------------------------------------


def test_empty_objectives_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"search\.objectives: empty; .*accepted columns: .*energy_j") as err:
        check_objectives(_spec(tmp_path, "search.objectives={}"))
    _one_line(err)


def test_the_chip_s_accuracy_is_an_objective_and_the_shipped_search_uses_it(tmp_path):
    """accuracy is the float model's: a search over hardware.weight_bits saw 4 bits as free (0.78 at 2, 4 and 8
    bits while the chip ran 0.37 / 0.79 / 0.74); accuracy_hw is what the b-bit model gets on the chip."""
    check_objectives(_spec(tmp_path, "search.objectives={accuracy_hw: max, energy_j: min}"))
    shipped = load_spec(Path(codesign.__file__).parent / "configs" / "search.yaml")
    assert "hardware.weight_bits" in shipped.search.space and shipped.search.objectives["accuracy_hw"] == "max"


# --- space -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("choices, match", [
    ([], r"search\.space\.compression\.ratio: no choices; give a non-empty list"),
    ([{"a": 1}], r"search\.space\.compression\.ratio: choice \{'a': 1\} is a dict; choices must be numbers"),
    ([[0.1]], r"choice \[0\.1\] is a list"),
    ([float("nan")], r"choice nan is not a finite number"),
])
def test_bad_choices_are_refused_naming_the_axis(choices, match):
    with pytest.raises(ConfigError, match=match) as err:
        check_choices("search.space.compression.ratio", choices)
    _one_line(err)


@pytest.mark.parametrize("rng, match", [
    (dict(low=0, high=0.5, log=True), r"search\.space\.compression\.ratio: log: true needs low > 0, got low 0"),
    (dict(low=-1, high=0.5, log=True), r"log: true needs low > 0, got low -1"),
    (dict(low=0, high=8, log=True, integer=True), r"log: true needs low >= 1 \(integer: true\)"),
    (dict(low=0.1, high=0.5, step=0.1, log=True), r"step and log: true cannot be combined"),
    (dict(low=0, high=0.5, step=0), r"search\.space\.compression\.ratio\.step: 0 must be > 0"),
    (dict(low=0, high=0.5, step=-0.1), r"\.step: -0\.1 must be > 0"),
    (dict(low=0, high=0.5, step=0.3), r"\.step: 0\.3 does not divide high - low = 0\.5"),
    (dict(low=float("nan"), high=0.5), r"search\.space\.compression\.ratio\.low: nan is not a finite number"),
    (dict(low=0, high=float("inf")), r"\.high: inf is not a finite number"),
    (dict(low=0.5, high=0.5), r"low 0\.5 must be < high 0\.5"),
    (dict(low=2.5, high=8, integer=True), r"\.low: 2\.5 is not a whole number"),
])
def test_bad_ranges_are_refused_naming_the_axis(rng, match):
    with pytest.raises(ConfigError, match=match) as err:
        check_range("search.space.compression.ratio", Range(**rng))
    _one_line(err)


@pytest.mark.parametrize("rng", [dict(low=0, high=0.9), dict(low=0.1, high=0.9, log=True),
                                 dict(low=0, high=0.9, step=0.1), dict(low=1, high=16, log=True, integer=True),
                                 dict(low=1, high=16, log=True, integer=True, step=1)])
def test_good_ranges_pass(rng):
    check_range("search.space.compression.ratio", Range(**rng))


@pytest.mark.parametrize("rng, match", [
    ("{low: 0, high: 0.5, foo: 1}", r"search\.space\.compression\.ratio: unknown key 'foo' in a range; accepted keys "
                                   r"here: low, high, step, log, integer \(got"),
    ("{low: 0}", r"search\.space\.compression\.ratio: a range needs high; accepted keys here: low, high, step"),
    ("{low: a, high: 0.5}", r"search\.space\.compression\.ratio: low: Input should be a valid number"),
    ("0.5", r"search\.space\.compression\.ratio: give a list of choices or a range \{low, high"),
])
def test_bad_range_keys_are_refused_by_the_spec_naming_the_key(tmp_path, rng, match):
    """A mapping is a range, never the list branch of the union ('Input should be a valid list')."""
    with pytest.raises(ConfigError, match=r"^sweep: " + match) as err:
        _spec(tmp_path, f"search.space={{compression.ratio: {rng}}}")
    assert "valid list" not in _one_line(err)


def test_good_range_and_choices_pass_the_spec(tmp_path):
    spec = _spec(tmp_path, "search.space={compression.ratio: {low: 0, high: 0.5, step: 0.1}, train.epochs: [1, 2]}")
    assert spec.search.space == {"compression.ratio": Range(low=0, high=0.5, step=0.1), "train.epochs": [1, 2]}


def test_space_errors_name_the_axis_of_an_invalid_design_point(tmp_path):
    with pytest.raises(ConfigError, match=r"search\.space\.compression\.ratio: 1\.5 gives an invalid design point: "
                                          r"config: compression\.ratios"):
        check_space(_spec(tmp_path, "search.space={compression.ratio: [0.2, 1.5]}"))
    with pytest.raises(ConfigError, match=r"search\.space\.foo\.bar: 1 gives an invalid design point"):
        check_space(_spec(tmp_path, "search.space={foo.bar: [1]}"))


# --- storage ---------------------------------------------------------------------------------------------------


def test_sqlite_storage_in_a_missing_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "sqlite:///nonexistent-dir/x/study.db"
    with pytest.raises(ConfigError, match=r"search\.storage: the folder 'nonexistent-dir/x' of "
                                          r"'sqlite:///nonexistent-dir/x/study\.db' does not exist") as err:
        check_storage(url)
    _one_line(err)
    # the run folder itself is made before the study is opened
    assert check_storage(url, Path("nonexistent-dir/x")) == url
    assert check_storage(f"sqlite:///{tmp_path}/study.db") == f"sqlite:///{tmp_path}/study.db"
    assert check_storage("sqlite://") == "sqlite://"


def _no_driver(monkeypatch, module: str = "psycopg"):
    """Make the postgresql dialect's driver import fail as when `module` is not installed (whether it is or not)."""
    import sqlalchemy.engine

    def missing(cls):
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)
    dialect = sqlalchemy.engine.make_url("postgresql://").get_dialect()
    monkeypatch.setattr(dialect, "import_dbapi", classmethod(missing))


def test_storage_whose_driver_is_missing_is_refused_by_the_spec(tmp_path, monkeypatch):
    """Was optuna's ImportError traceback, after the run folder was made."""
    _no_driver(monkeypatch)
    with pytest.raises(ConfigError, match=r"^sweep: search\.storage: the database driver of 'postgresql' is not "
                                          r"installed \(no module 'psycopg'\); install it or use a SQLite file") as err:
        _spec(tmp_path, "search.storage=postgresql://u@127.0.0.1/x")
    _one_line(err)


def test_a_storage_url_s_password_is_not_echoed(tmp_path, monkeypatch):
    """A refused storage URL is shown with its password as *** (it may hold one: postgresql://user:pw@host/db)."""
    _no_driver(monkeypatch)
    with pytest.raises(ConfigError) as err:
        _spec(tmp_path, "search.storage=postgresql://u:s3cret@127.0.0.1/x")
    assert "s3cret" not in str(err.value) and "postgresql://u:***@127.0.0.1/x" in str(err.value)


@pytest.mark.parametrize("url, match", [
    ("notaurl", r"search\.storage: not a database URL; e\.g\. sqlite:////abs/path/study\.db"),
    ("foo://u@h/x", r"search\.storage: unknown database or driver 'foo' \(sqlalchemy has no such dialect\)"),
    ("postgresql+nodriver://u@h/x", r"search\.storage: unknown database or driver 'postgresql\+nodriver'"),
])
def test_storage_that_is_not_a_known_database_url_is_refused_by_the_spec(tmp_path, url, match):
    with pytest.raises(ConfigError, match=match) as err:
        _spec(tmp_path, f"search.storage={url}")
    _one_line(err)


def test_sqlite_storage_passes_the_spec(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    assert _spec(tmp_path, f"search.storage={url}").search.storage == url
    assert _spec(tmp_path).search.storage is None


#: (URL, its driver module): the CLI test takes the first whose driver is not installed
DRIVERS = [("postgresql://u@127.0.0.1/x", "psycopg"), ("postgresql+psycopg2://u@127.0.0.1/x", "psycopg2"),
           ("mysql://u@127.0.0.1/x", "MySQLdb"), ("oracle://u@127.0.0.1/x", "oracledb"),
           ("mssql://u@127.0.0.1/x", "pyodbc")]


def test_cli_storage_without_its_driver_exits_2_before_the_run_folder(tmp_path):
    """`codesign search SPEC --workers 0` with a database URL whose driver is missing: one error line, exit 2, and
    no run folder (was a 69-line traceback leaving reports/<run>/ with its lock and .incomplete)."""
    import importlib.util
    missing = [(url, module) for url, module in DRIVERS if importlib.util.find_spec(module) is None]
    if not missing:
        pytest.skip("every database driver tried is installed")
    url, module = missing[0]
    (tmp_path / "q.yaml").write_text("base: {data: {dataset: digits}}\noutput_dir: out\n"
                                     "search: {n_trials: 1, space: {compression.ratio: [0.0]}}\n")
    proc = subprocess.run([sys.executable, "-m", "codesign", "search", "q.yaml", "--workers", "0",
                           "--set", f"search.storage={url}", "--set", "run_name=pg2"], cwd=tmp_path,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: search: search.storage: the database driver of ") and \
        f"is not installed (no module {module!r})" in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


def _optuna_db(path: Path, directions=("maximize", "minimize", "minimize")) -> str:
    url = f"sqlite:///{path}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.create_study(study_name=STUDY_NAME, storage=url, directions=list(directions))
    return url


def _spoil(db: Path, kind: str) -> None:
    """Replace an optuna study database by something else."""
    if kind == "foreign":
        db.unlink()
        with sqlite3.connect(db) as con:
            con.execute("create table trials (x int)")
    elif kind == "foreign-columns":  # optuna's tables, but one lacks a column
        with sqlite3.connect(db) as con:
            con.execute("alter table trials drop column datetime_complete")
    elif kind == "garbage":
        db.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        db.write_bytes(db.read_bytes()[:len(db.read_bytes()) // 3])
    elif kind == "folder":
        db.unlink()
        db.mkdir()


@pytest.mark.parametrize("kind, match", [
    ("foreign", r"is not an optuna study database \(no table studies; its tables: trials\)"),
    ("foreign-columns", r"is not an optuna study database \(its table trials lacks the column datetime_complete\)"),
    ("garbage", r"is not an optuna study database \((file is not a database|database disk image is malformed)\)"),
    ("truncated", r"is not an optuna study database \(.*malformed.*\)"),
    ("folder", r"is a folder, not a SQLite database file"),
])
def test_unusable_study_databases_are_refused_without_changing_them(tmp_path, kind, match):
    db = tmp_path / "study.db"
    url = _optuna_db(db)
    _spoil(db, kind)
    before = db.read_bytes() if db.is_file() else None
    with pytest.raises(ConfigError, match=r"search\.storage: '.*study\.db' " + match) as err:
        check_study_db(url, _spec(tmp_path), resume=True)
    _one_line(err)
    if before is not None:
        assert db.read_bytes() == before  # optuna would have added its tables to a foreign database


def test_existing_study_needs_resume_and_the_same_directions(tmp_path):
    url = _optuna_db(tmp_path / "study.db")
    spec = _spec(tmp_path)
    check_study_db(url, spec, resume=True)
    with pytest.raises(ConfigError, match=r"search\.storage: a study named 'codesign' already exists"):
        check_study_db(url, spec, resume=False)
    with pytest.raises(ConfigError, match=r"search\.storage: .* has the objective directions maximize, minimize, "
                                          r"minimize, not minimize of search\.objectives"):
        check_study_db(url, _spec(tmp_path, "search.objectives={accuracy: min}"), resume=True)


def test_missing_or_empty_database_starts_a_new_study(tmp_path):
    spec = _spec(tmp_path)
    check_study_db(f"sqlite:///{tmp_path}/none.db", spec, resume=True)
    (tmp_path / "empty.db").touch()
    check_study_db(f"sqlite:///{tmp_path}/empty.db", spec, resume=False)
    assert not (tmp_path / "none.db").exists()


# --- search(): every check before the run folder ---------------------------------------------------------------


@pytest.mark.parametrize("bad, match", [
    ("search.objectives={}", r"search\.objectives: empty"),
    ("search.storage=sqlite:////nonexistent-dir/x/study.db", r"search\.storage: the folder '/nonexistent-dir/x'"),
    ("search.space={compression.ratio: []}", r"search\.space\.compression\.ratio: no choices"),
    ("search.space={compression.ratio: {low: 0, high: 0.5, log: true}}",
     r"search\.space\.compression\.ratio: log: true needs low > 0"),
])
def test_bad_search_input_is_refused_before_the_run_folder(tmp_path, bad, match):
    with pytest.raises(ConfigError, match=match) as err:
        search(_spec(tmp_path, bad), log=lambda *_: None)
    _one_line(err)
    assert not (tmp_path / "out" / "s").exists()


def test_resume_with_a_foreign_study_db_leaves_the_run_folder_as_it_was(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "out" / "s"
    out.mkdir(parents=True)
    (out / "search.yaml").write_text(resolved_spec_yaml(spec))
    _optuna_db(out / "study.db")
    _spoil(out / "study.db", "foreign")
    before = (out / "study.db").read_bytes()
    with pytest.raises(ConfigError, match=r"search\.storage: '.*/s/study\.db' is not an optuna study database"):
        search(spec, resume=True, log=lambda *_: None)
    # nothing written but the lock file the resume check takes (codesign.store.runfolder)
    assert sorted(p.name for p in out.iterdir()) == sorted([LOCK_NAME, "search.yaml", "study.db"])
    assert (out / "study.db").read_bytes() == before


@pytest.mark.slow
def test_cli_resume_over_a_foreign_study_db_exits_2_with_one_error_line(tmp_path):
    """The CLI as a user runs it (was an optuna StorageInternalError traceback, exit 1)."""
    (tmp_path / "q.yaml").write_text("base: {data: {dataset: digits}}\nrun_name: s\noutput_dir: out\n"
                                     "execution: {workers: 0}\n"
                                     "search: {n_trials: 1, space: {compression.ratio: [0.0]}}\n")
    out = tmp_path / "out" / "s"
    out.mkdir(parents=True)
    (out / "search.yaml").write_text(resolved_spec_yaml(load_spec(tmp_path / "q.yaml")))
    with sqlite3.connect(out / "study.db") as con:
        con.execute("create table trials (x int)")
    proc = subprocess.run([sys.executable, "-m", "codesign", "search", "q.yaml", "--resume"], cwd=tmp_path,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: search.storage: "), proc.stderr
    assert "study.db' is not an optuna study database (no table studies; its tables: trials)" in lines[0]
    assert not (out / INCOMPLETE_NAME).exists()


def test_a_resumed_search_seeds_its_sampler_past_the_trials_it_holds(tmp_path):
    """With search.seed itself a resumed study drew its first (random startup) trials again: trial 3 of a resumed
    3-trial study repeated trial 0. The sampler is seeded with seed + trials so far."""
    import optuna
    from codesign.execute.search import make_sampler
    spec = _spec(tmp_path, "search.sampler=tpe", "search.seed=7")

    def first_draws(trials_before):
        study = optuna.create_study(sampler=make_sampler(spec, trials_before))
        return [study.ask().suggest_float("x", 0.0, 1.0) for _ in range(3)]
    fresh = first_draws(0)
    assert first_draws(0) == fresh  # seeded: reproducible
    assert first_draws(3)[0] not in fresh  # a study resumed after 3 trials does not draw them again
