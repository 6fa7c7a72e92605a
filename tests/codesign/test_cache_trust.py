"""The stage cache trusts nothing it did not verify: planted, truncated, old-format or unreadable entries are
discarded with a warning and made again (never run); keys hold the code version; temporary folders of dead
processes are removed; `codesign cache list/clear` show and remove entries."""
import json
import logging
import os
import pickle
import shlex
import socket
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from codesign.store import cache as cache_mod
from codesign.store.cache import StageCache, code_version, config_key, source_digest, source_files
from codesign.cli.cache import cache_app
from codesign.config.run import load_config
from codesign.execute.evaluate import model_row, stage_keys
from workloads import checkpoint

HOST = cache_mod.re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())


class _RunsCode:
    """Unpickling this calls os.system (touching `marker`)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _maker(calls, text="hi"):
    def make(folder):
        calls.append(folder.name)
        (folder / "sub").mkdir()
        (folder / "x.txt").write_text(text)
        (folder / "sub" / "y.bin").write_bytes(b"\0\1")
    return make


def _read(folder):
    return (folder / "x.txt").read_text()


def _damage_cases(marker):
    """(name, how to damage an entry folder): each must make the entry fail verification."""
    return [
        ("planted", lambda f: (f / "x.txt").write_bytes(pickle.dumps(_RunsCode(marker)))),
        ("truncated", lambda f: (f / "x.txt").write_text("h")),
        ("extra file", lambda f: (f / "model.pt").write_bytes(pickle.dumps(_RunsCode(marker)))),
        ("missing file", lambda f: (f / "sub" / "y.bin").unlink()),
        ("symlink", lambda f: ((f / "sub" / "y.bin").unlink(), (f / "sub" / "y.bin").symlink_to("/etc/hostname"))),
        ("old meta", lambda f: (f / "meta.json").write_text(json.dumps({"stage": "s"}))),
        ("bad meta", lambda f: (f / "meta.json").write_text("{not json")),
        ("a file", lambda f: (cache_mod.force_rmtree(f), f.write_bytes(pickle.dumps(_RunsCode(marker))))),
        ("a symlink", lambda f: (f.rename(f.parent.parent / "elsewhere"), f.symlink_to(f.parent.parent / "elsewhere"))),
    ]


def test_a_damaged_entry_is_discarded_with_a_warning_and_made_again(tmp_path, caplog):
    marker = tmp_path / "ran"
    cache = StageCache(tmp_path / "c")
    calls = []
    folder, value = cache.load_or_make("s", "k", _maker(calls), _read, meta={"seed": 1})
    assert value == "hi" and len(calls) == 1
    for name, damage in _damage_cases(marker):
        damage(folder)
        with caplog.at_level(logging.WARNING, logger="codesign.store.cache"):
            caplog.clear()
            again, value = cache.load_or_make("s", "k", _maker(calls), _read, meta={"seed": 1})
        assert (again, value) == (folder, "hi"), name
        assert [r.levelname for r in caplog.records] == ["WARNING"], name
        assert "is unusable" in caplog.text and "discarding and recomputing" in caplog.text, name
        cache.verify("s", "k")
    assert len(calls) == 1 + len(_damage_cases(marker)) and not marker.exists()
    assert sorted(p.name for p in (tmp_path / "c" / "s").iterdir()) == ["k"]  # nothing moved aside is left


def test_an_entry_copied_under_another_key_is_not_used(tmp_path, caplog):
    # its files matched its own hashes, so ratio 0's compressed model was used for ratio 0.75: wrong results
    import shutil
    cache = StageCache(tmp_path / "c")
    calls = []
    a, _ = cache.load_or_make("s", "a", _maker(calls, "model of a"), _read)
    shutil.copytree(a, cache.path("s", "b"))
    with pytest.raises(ValueError, match="meta.json names the entry 's'/'a', not 's'/'b'"):
        cache.verify("s", "b")
    with caplog.at_level(logging.WARNING, logger="codesign.store.cache"):
        _, value = cache.load_or_make("s", "b", _maker(calls, "model of b"), _read)
    assert value == "model of b" and len(calls) == 2 and "is unusable" in caplog.text


def test_a_fresh_entry_removed_before_it_is_read_is_made_once_more(tmp_path):
    # a `cache clear` between the entry's rename into place and its load failed the run (exit 2)
    import shutil
    cache = StageCache(tmp_path / "c")
    calls, reads = [], []

    def read_once_removed(folder):
        reads.append(1)
        if len(reads) == 1:
            shutil.rmtree(folder)
        return _read(folder)
    _, value = cache.load_or_make("s", "k", _maker(calls), read_once_removed)
    assert value == "hi" and len(calls) == 2


def test_an_entry_that_fails_to_load_is_made_again(tmp_path, caplog):
    cache = StageCache(tmp_path)
    model = torch.nn.Linear(2, 2)
    versions = iter([1, 2])

    def make(folder):  # first an old-version checkpoint (valid hashes, but refused by checkpoint.load)
        if next(versions) == 1:
            torch.save({"version": 1, "model": model}, folder / "model.pt")
        else:
            checkpoint.save(model, folder / "model.pt")

    cache.get_or_make("dense", "k", make)
    with caplog.at_level(logging.WARNING, logger="codesign.store.cache"):
        _, payload = cache.load_or_make("dense", "k", make, lambda f: checkpoint.load(f / "model.pt"))
    assert torch.equal(payload["model"].weight, model.weight)
    assert "refused pickle global torch.nn.modules.linear.Linear" in caplog.text


def test_a_read_only_unreadable_entry_is_moved_aside_and_made_again(tmp_path, caplog):
    cache = StageCache(tmp_path)
    calls = []
    folder = cache.get_or_make("s", "k", _maker(calls))
    for path in (folder / "sub" / "y.bin", folder / "x.txt", folder / "meta.json"):
        path.chmod(0o000)
    (folder / "sub").chmod(0o500)
    folder.chmod(0o500)
    reads = iter([PermissionError(13, "Permission denied")])

    def load(f):  # unreadable for this process (root reads anything, so the first read fails by hand)
        exc = next(reads, None)
        if exc is not None:
            raise exc
        return _read(f)
    with caplog.at_level(logging.WARNING, logger="codesign.store.cache"):
        _, value = cache.load_or_make("s", "k", _maker(calls), load)
    assert value == "hi" and len(calls) == 2 and "PermissionError" in caplog.text
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["k"]


def test_entry_meta_records_what_made_it_and_the_hash_of_every_file(tmp_path):
    folder = StageCache(tmp_path).get_or_make("s", "k", _maker([]), meta={"seed": 3})
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["meta"] == {"seed": 3} and (meta["stage"], meta["key"]) == ("s", "k")
    assert meta["code_version"] == code_version() and meta["pid"] == os.getpid()
    assert meta["files"] == {"sub/y.bin": cache_mod.hashlib.sha256(b"\0\1").hexdigest(),
                             "x.txt": cache_mod.hashlib.sha256(b"hi").hexdigest()}


def test_keys_hold_the_code_version(tmp_path, monkeypatch):
    assert code_version().startswith(f"{cache_mod.package_version()}+") and len(code_version().split("+")[-1]) == 12
    names = [n for n, _ in source_files()]
    assert "workloads/checkpoint.py" in names and "codesign/execute/evaluate.py" in names and "hwmodels/trace.py" in names
    (tmp_path / "a.py").write_text("x = 1\n")
    before = source_digest([("pkg/a.py", tmp_path / "a.py")])
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_digest([("pkg/a.py", tmp_path / "a.py")]) != before
    cfg = load_config(sets=["data.dataset=digits", "compression.ratios=[0.5]"])
    keys = stage_keys(cfg)
    monkeypatch.setattr("codesign.execute.evaluate.code_version", lambda: "9.9.9+000000000000")
    upgraded = stage_keys(cfg)
    assert upgraded.dense != keys.dense and upgraded.compressed != keys.compressed
    assert upgraded.lowered != keys.lowered and upgraded.point == keys.point  # point ids stay comparable


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporary_folders_of_dead_processes_are_removed_at_the_next_start(tmp_path):
    stage = tmp_path / "dense"
    stage.mkdir()
    day_ago = time.time() - 2 * cache_mod.STALE_AFTER_S
    folders = {"dead": f".k1.tmp-{HOST}-{_dead_pid()}-abcd1234", "live": f".k2.tmp-{HOST}-{os.getpid()}-abcd1234",
               "other host": ".k3.tmp-elsewhere-1-abcd1234", "other host, old": ".k4.tmp-elsewhere-1-abcd1234",
               "unowned, old": ".k5.tmp-x8f3k2", "moved aside, dead": f".k6.bad-{HOST}-{_dead_pid()}-0011aabb"}
    for name in folders.values():
        (stage / name / "sub").mkdir(parents=True)
        (stage / name / "sub" / "f").write_text("x")
    for label in ("other host, old", "unowned, old"):
        os.utime(stage / folders[label], (day_ago, day_ago))
    StageCache(tmp_path)
    assert sorted(p.name for p in stage.iterdir()) == sorted([folders["live"], folders["other host"]])


def test_a_make_works_in_a_folder_named_by_host_and_pid(tmp_path):
    seen = []
    StageCache(tmp_path).get_or_make("s", "k", lambda folder: seen.append(folder.name))
    assert seen[0].startswith(f".k.tmp-{HOST}-{os.getpid()}-")
    assert cache_mod.is_stale(tmp_path / "s" / "k") is False  # a complete, fresh entry is never stale


@pytest.mark.slow
def test_a_planted_model_in_the_cache_is_never_run_and_is_remade(tmp_path, caplog):
    cfg = load_config(sets=["data.dataset=digits", "train.epochs=1", "compression.method=random",
                            "compression.ratios=[0.5]", "compression.params={finetune_epochs: 0}",
                            "hardware.n_samples=3", f"cache_dir={tmp_path}"])
    keys = stage_keys(cfg)
    row, low = model_row(cfg, StageCache(tmp_path))
    marker = tmp_path / "ran"
    model_pt = tmp_path / "compressed" / keys.compressed / "model.pt"
    torch.save({"version": 1, "model": _RunsCode(marker)}, model_pt)  # a planted checkpoint in a cached entry
    with caplog.at_level(logging.WARNING, logger="codesign.store.cache"):
        again, low_again = model_row(cfg, StageCache(tmp_path))
    assert not marker.exists() and "model.pt: content differs" in caplog.text
    assert again == row and low_again == low
    StageCache(tmp_path).verify("compressed", keys.compressed)
    # an old-version dense checkpoint whose hash was updated too: it fails to load, so it is trained again
    dense = tmp_path / "dense" / keys.dense
    meta = json.loads((dense / "meta.json").read_text())
    torch.save({"version": 1, "model": _RunsCode(marker)}, dense / "model.pt")
    meta["files"]["model.pt"] = cache_mod.file_sha256(dense / "model.pt")
    (dense / "meta.json").write_text(json.dumps(meta))
    for stage, key in (("compressed", keys.compressed), ("lowered", keys.lowered)):
        cache_mod.force_rmtree(tmp_path / stage / key)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="codesign.store.cache"):
        third, _ = model_row(cfg, StageCache(tmp_path))
    assert not marker.exists() and "refused pickle global" in caplog.text and third == row


def _filled(tmp_path):
    cache = StageCache(tmp_path)
    cache.get_or_make("dense", "aaaa", _maker([]), meta={"seed": 0, "stage": "dense"})
    cache.get_or_make("lowered", "bbbb", _maker([], "x" * 3000), meta={"note": "[bold red]x[/] [link=file:///]"})
    (tmp_path / "lowered" / "[red]cccc").mkdir()  # an old-format entry with a markup-like name
    (tmp_path / "lowered" / "[red]cccc" / "meta.json").write_text(json.dumps({"stage": "lowered"}))
    return cache


def test_cache_list_shows_entries_with_every_value_escaped(tmp_path):
    _filled(tmp_path)
    result = CliRunner().invoke(cache_app, ["list", "--cache-dir", str(tmp_path)], terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    dense = next(ln for ln in lines if "aaaa" in ln)
    assert "dense" in dense and "seed=0" in dense and f"code {code_version()}" in dense and " s " in dense
    assert "[bold red]x[/] [link=file:///]" in result.output and "[red]cccc" in result.output
    assert "older cache format" in result.output and "3 entries" in result.output and "KiB" in result.output
    stage_only = CliRunner().invoke(cache_app, ["list", "--cache-dir", str(tmp_path), "--stage", "dense"])
    assert "aaaa" in stage_only.output and "bbbb" not in stage_only.output


def test_cache_clear_removes_a_stage_or_everything_and_errors_exit_2(tmp_path):
    _filled(tmp_path)
    bad = CliRunner().invoke(cache_app, ["clear", "--cache-dir", str(tmp_path), "--stage", "../x", "--yes"])
    assert bad.exit_code == 2 and "error: --stage: '../x' is not a stage of" in bad.output
    assert "stages: dense, lowered" in bad.output and len(bad.output.strip().splitlines()) == 1
    declined = CliRunner().invoke(cache_app, ["clear", "--cache-dir", str(tmp_path)], input="n\n")
    assert declined.exit_code == 1 and "nothing removed" in declined.output
    closed = CliRunner().invoke(cache_app, ["clear", "--cache-dir", str(tmp_path)])  # no answer: stdin at its end
    assert closed.exit_code == 1 and "nothing removed (pass --yes" in closed.output  # (typer's Abort printed "aborted")
    live = tmp_path / "lowered" / f".bbbb.tmp-{HOST}-{os.getpid()}-abcd1234"
    live.mkdir()
    done = CliRunner().invoke(cache_app, ["clear", "--cache-dir", str(tmp_path), "--stage", "lowered", "--yes"])
    assert done.exit_code == 0 and "removed 2 entries" in done.output
    assert sorted(p.name for p in (tmp_path / "lowered").iterdir()) == [live.name]  # a live process's folder stays
    assert (tmp_path / "dense" / "aaaa").is_dir()
    asked = CliRunner().invoke(cache_app, ["clear", "--cache-dir", str(tmp_path)], input="y\n")
    assert asked.exit_code == 0 and "removed 1 entries" in asked.output and not (tmp_path / "dense" / "aaaa").exists()
    (tmp_path / "file").write_text("x")
    not_dir = CliRunner().invoke(cache_app, ["list", "--cache-dir", str(tmp_path / "file")])
    assert not_dir.exit_code == 2 and "is not a folder" in not_dir.output


def test_cache_clear_also_removes_an_entry_that_lost_its_meta(tmp_path):
    # was left behind ("removed 4 entries" and the folder still there): clear skipped folders without meta.json
    _filled(tmp_path)
    damaged = tmp_path / "dense" / "dddd"
    damaged.mkdir()
    (damaged / "model.pt").write_bytes(b"half")
    assert StageCache(tmp_path).damaged() == [damaged]
    done = CliRunner().invoke(cache_app, ["clear", "--cache-dir", str(tmp_path), "--stage", "dense", "--yes"])
    assert done.exit_code == 0 and "removed 2 entries" in done.output and not damaged.exists()
    assert not (tmp_path / "dense" / "aaaa").exists() and StageCache(tmp_path).damaged() == []


def test_a_missing_cache_folder_is_an_error_unless_it_is_the_default(tmp_path, monkeypatch):
    for command in (["list"], ["clear", "--yes"]):
        missing = CliRunner().invoke(cache_app, [*command, "--cache-dir", str(tmp_path / "typo")])
        assert missing.exit_code == 2 and len(missing.output.strip().splitlines()) == 1, missing.output
        assert f"error: --cache-dir: '{tmp_path / 'typo'}': no such folder" in missing.output
    monkeypatch.chdir(tmp_path)  # nothing was run here: the default cache folder is missing, an empty cache
    empty = CliRunner().invoke(cache_app, ["list"])
    assert empty.exit_code == 0 and "no entries in .cache/codesign" in empty.output
    assert not (tmp_path / ".cache").exists() and not (tmp_path / "typo").exists()


def test_cache_list_and_clear_never_remove_through_a_stage_folder_that_is_a_symlink(tmp_path):
    outside = tmp_path / "outside"
    (outside / "precious").mkdir(parents=True)
    (outside / "precious" / "meta.json").write_text("{}")  # looks like an entry
    old = outside / ".notes.tmp-elsewhere-1-abcd1234"  # looks like a stale temporary folder
    old.mkdir()
    day_ago = time.time() - 2 * cache_mod.STALE_AFTER_S
    os.utime(old, (day_ago, day_ago))
    cache = tmp_path / "cache"
    _filled(cache)
    (cache / "linked").symlink_to(outside)
    listed = CliRunner().invoke(cache_app, ["list", "--cache-dir", str(cache)], terminal_width=200)
    assert listed.exit_code == 0 and "precious" not in listed.output and old.is_dir()
    cleared = CliRunner().invoke(cache_app, ["clear", "--cache-dir", str(cache), "--yes"])
    assert cleared.exit_code == 0 and "removed 3 entries" in cleared.output
    assert (outside / "precious" / "meta.json").is_file() and old.is_dir()
    named = CliRunner().invoke(cache_app, ["clear", "--cache-dir", str(cache), "--stage", "linked", "--yes"])
    assert named.exit_code == 2 and "is not a stage of" in named.output
    assert (outside / "precious" / "meta.json").is_file()
