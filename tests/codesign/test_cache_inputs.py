"""Hostile cache folders and cache entries: a cache_dir that cannot be used is one line naming `cache_dir` (exit 2)
before the run folder exists (codesign.store.cache.check_cache_dir); a cached entry whose hashes match but whose content
does not load (object arrays, a truncated trace, a result.json of the wrong shape) is discarded with a warning and
made again, like one that fails verification."""
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from codesign.store.cache import STAGE_NAMES, StageCache, check_cache_dir, file_sha256, force_rmtree
from codesign.config.run import ConfigError, load_config
from codesign.execute.evaluate import evaluate_point, load_lowered, stage_keys
from hwmodels import SimCache, npzfile

#: user "nobody": the owner of "another user's" folders
NOBODY = 65534
#: run without root's powers over file permissions (as scripts/probe does), so modes and owners are enforced
DROP = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--"]
needs_unprivileged = pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None,
                                        reason="root without setpriv: permissions are not enforced")
needs_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                                reason="giving a folder to another user needs root (and setpriv to drop its powers)")


def _unprivileged(args, cwd, timeout=300) -> subprocess.CompletedProcess:
    """Run `args` (a python command line) with file permissions enforced even for root."""
    prefix = DROP if os.geteuid() == 0 else []
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(prefix + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _check_as_user(path, cwd) -> str:
    """check_cache_dir(path) in an unprivileged process: '' when it passes, else the error message."""
    code = ("import sys\nfrom codesign.store.cache import check_cache_dir\ntry:\n    check_cache_dir(sys.argv[1])\n"
            "except ValueError as exc:\n    print(exc)\n")
    proc = _unprivileged([sys.executable, "-c", code, str(path)], cwd, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _give_away(path) -> None:
    for top, dirs, files in os.walk(path):
        for name in [top] + [os.path.join(top, n) for n in dirs + files]:
            os.lchown(name, NOBODY, NOBODY)


def _refused(path, *needles) -> str:
    with pytest.raises(ConfigError) as err:
        check_cache_dir(path)
    text = str(err.value)
    assert text.startswith(f"cache_dir: '{path}'") and "\n" not in text, text
    assert all(n in text for n in needles), text
    return text


# --- check_cache_dir --------------------------------------------------------------------------------------------------
def test_a_usable_or_creatable_cache_folder_passes_and_nothing_is_created(tmp_path):
    check_cache_dir(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()
    for stage in STAGE_NAMES:
        (tmp_path / "c" / stage).mkdir(parents=True)
    (tmp_path / "c" / "notes.txt").write_text("not a stage")  # anything else in the folder is not the cache's
    check_cache_dir(tmp_path / "c")
    os.symlink(tmp_path / "c", tmp_path / "link")  # a symlink to a usable folder is that folder
    check_cache_dir(str(tmp_path / "link"))


def test_a_file_a_symlink_loop_or_a_broken_symlink_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    _refused(tmp_path / "file", "is a regular file", "folder")
    _refused(tmp_path / "file" / "sub", "a part of the path is a file")
    os.symlink("loop", tmp_path / "loop")
    _refused(tmp_path / "loop", "is a symlink loop")
    _refused(tmp_path / "loop" / "sub", "has a part that is a symlink loop")
    os.symlink("nowhere", tmp_path / "dangling")
    _refused(tmp_path / "dangling", "is a broken symlink (to 'nowhere')")


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_a_stage_folder_that_is_a_file_or_a_symlink_loop_is_refused(tmp_path, stage):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / stage).write_text("x")
    _refused(tmp_path / "c", f"stage folder '{tmp_path / 'c' / stage}' is a regular file")
    (tmp_path / "c" / stage).unlink()
    os.symlink(stage, tmp_path / "c" / stage)  # `ln -s compressed compressed` inside the cache
    _refused(tmp_path / "c", f"stage folder '{tmp_path / 'c' / stage}' is a symlink loop")


def test_the_probe_leaves_nothing_behind(tmp_path):
    (tmp_path / "c").mkdir()
    check_cache_dir(tmp_path / "c")
    check_cache_dir(tmp_path / "c" / "missing")
    assert list(tmp_path.iterdir()) == [tmp_path / "c"] and not any((tmp_path / "c").iterdir())


procfs = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")


@procfs
def test_a_folder_whose_file_system_refuses_new_folders_is_refused():
    # /proc says it is writable to root (and os.access agrees) yet makes no folders: only the probe tells
    _refused(Path("/proc"), "refuses new folders (")
    _refused(Path("/proc/codesign-cache/deeper"), "does not exist and cannot be created: '/proc' refuses new folders")


@procfs
def test_run_refuses_a_cache_dir_under_proc_before_the_run_folder(tmp_path):
    proc = _codesign(tmp_path, "run", "--set", "data.dataset=digits", "--set", "cache_dir=/proc/codesign-cache",
                     "--set", "run_name=r")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("error: cache_dir: '/proc/codesign-cache' does not exist and cannot be created")
    _no_run_folder(tmp_path)


@needs_unprivileged
def test_a_read_only_folder_is_refused(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o555)
    assert _check_as_user(tmp_path / "ro", tmp_path) == (
        f"cache_dir: '{tmp_path / 'ro'}' is not writable by this user (mode 555); choose a cache_dir this user can "
        "write")
    assert "does not exist and cannot be created" in _check_as_user(tmp_path / "ro" / "cache", tmp_path)
    (tmp_path / "ok" / "lowered").mkdir(parents=True)
    (tmp_path / "ok" / "lowered").chmod(0o500)
    assert f"stage folder '{tmp_path / 'ok' / 'lowered'}' is not writable" in _check_as_user(tmp_path / "ok",
                                                                                            tmp_path)


@needs_root
def test_a_folder_of_another_user_is_refused(tmp_path):
    (tmp_path / "theirs").mkdir()
    _give_away(tmp_path / "theirs")
    assert "owner uid 65534: another user" in _check_as_user(tmp_path / "theirs", tmp_path)
    (tmp_path / "mine" / "compressed").mkdir(parents=True)
    _give_away(tmp_path / "mine" / "compressed")
    assert "stage folder" in _check_as_user(tmp_path / "mine", tmp_path)
    assert _check_as_user(tmp_path / "fresh", tmp_path) == ""


# --- entries of another user in a writable stage folder stay usable ---------------------------------------------------
_ENTRY_SCRIPT = """
import json, logging, sys
from pathlib import Path
from codesign.store.cache import StageCache, check_cache_dir
logging.basicConfig(level=logging.WARNING)
root = Path(sys.argv[1])
check_cache_dir(root)
made = []
def make(folder):
    made.append(1)
    (folder / "x.txt").write_text("hi")
_, value = StageCache(root).load_or_make("s", "k", make, lambda f: (f / "x.txt").read_text())
print(json.dumps({"value": value, "made": len(made)}))
"""


@needs_root
def test_a_read_only_entry_of_another_user_is_read_or_moved_aside_and_made_again(tmp_path):
    cache = StageCache(tmp_path / "c")
    folder = cache.get_or_make("s", "k", lambda f: (f / "x.txt").write_text("hi"))
    (folder / "x.txt").chmod(0o444)
    (folder / "meta.json").chmod(0o444)
    folder.chmod(0o555)
    _give_away(folder)
    used = _unprivileged([sys.executable, "-c", _ENTRY_SCRIPT, str(tmp_path / "c")], tmp_path, timeout=60)
    assert used.returncode == 0 and json.loads(used.stdout) == {"value": "hi", "made": 0}, used.stderr
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["x.txt"] = "0" * 64  # now it fails to verify: moved aside (its folder stays another user's)
    os.chmod(folder / "meta.json", 0o644), os.chmod(folder, 0o755)
    (folder / "meta.json").write_text(json.dumps(meta))
    os.chmod(folder / "meta.json", 0o444), os.chmod(folder, 0o555)
    _give_away(folder)
    remade = _unprivileged([sys.executable, "-c", _ENTRY_SCRIPT, str(tmp_path / "c")], tmp_path, timeout=60)
    assert remade.returncode == 0 and json.loads(remade.stdout) == {"value": "hi", "made": 1}, remade.stderr
    assert "discarding and recomputing" in remade.stderr
    cache.verify("s", "k")


# --- the commands refuse an unusable cache before creating the run folder --------------------------------------------
def _codesign(tmp_path, *args, unprivileged=False):
    cmd = [sys.executable, "-m", "codesign", *args]
    if unprivileged:
        return _unprivileged(cmd, tmp_path)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def _one_error(proc, *needles) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cache_dir: 'cache"), proc.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


def _no_run_folder(tmp_path) -> None:
    reports = tmp_path / "reports"
    assert not reports.exists() or not any(reports.iterdir()), list(reports.iterdir())


def _file_cache(tmp_path) -> None:
    (tmp_path / "cache").write_text("x")


def _loop_stage(tmp_path) -> None:
    (tmp_path / "cache").mkdir()
    os.symlink("compressed", tmp_path / "cache" / "compressed")


def _read_only(tmp_path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache").chmod(0o555)


@pytest.mark.parametrize("setup, needle, unprivileged", [
    (_file_cache, "is a regular file", False),
    (_loop_stage, "stage folder 'cache/compressed' is a symlink loop", False),
    pytest.param(_read_only, "is not writable by this user", True, marks=needs_unprivileged),
])
def test_run_refuses_an_unusable_cache_dir_in_one_line_before_the_run_folder(tmp_path, setup, needle, unprivileged):
    setup(tmp_path)
    proc = _codesign(tmp_path, "run", "--set", "data.dataset=digits", "--set", "cache_dir=cache", "--set",
                     "run_name=r", unprivileged=unprivileged)
    _one_error(proc, needle)
    _no_run_folder(tmp_path)
    assert "Traceback" not in proc.stderr


def test_sweep_search_and_allocate_refuse_a_cache_dir_that_is_a_file(tmp_path):
    _file_cache(tmp_path)
    (tmp_path / "s.yaml").write_text("base: {data: {dataset: digits}}\ncache_dir: cache\nrun_name: s\n"
                                     "axes: {compression.ratio: [0.0]}\n")
    _one_error(_codesign(tmp_path, "sweep", "s.yaml"), "is a regular file")
    (tmp_path / "q.yaml").write_text("base: {data: {dataset: digits}}\ncache_dir: cache\nrun_name: q\n"
                                     "search: {n_trials: 1, objectives: {accuracy: max},\n"
                                     "         space: {compression.ratio: [0.0, 0.5]}}\n")
    _one_error(_codesign(tmp_path, "search", "q.yaml"), "is a regular file")
    _one_error(_codesign(tmp_path, "allocate", "--set", "data.dataset=digits", "--set", "cache_dir=cache", "--set",
                         "compression.method=magnitude_channel", "--set", "compression.params={}"),
               "is a regular file")
    _no_run_folder(tmp_path)


# --- entries whose hashes match but whose content does not load ---------------------------------------------------
class _Payload:
    def __reduce__(self):
        return os.system, ("true",)


def _object_array() -> np.ndarray:
    a = np.empty(2, dtype=object)
    a[0], a[1] = _Payload(), "x"
    return a


def _fix_hashes(entry) -> None:
    """Rewrite meta.json's hashes to match the files, as an attacker (or a bug) would."""
    meta = json.loads((entry / "meta.json").read_text())
    meta["files"] = {name: file_sha256(entry / name) for name in meta["files"]}
    (entry / "meta.json").write_text(json.dumps(meta))


def _replace_member(path, key, value) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[key] = value
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # allow_pickle is on by default: the object array is pickled into the member
    path.write_bytes(buf.getvalue())


def _graph_object(entry):
    _replace_member(entry / "graph.npz", "w0", _object_array())


def _trace_object(entry):
    _replace_member(entry / "trace.npz", "offsets", _object_array())


def _trace_truncated(entry):
    data = (entry / "trace.npz").read_bytes()
    (entry / "trace.npz").write_bytes(data[:len(data) // 2])


def _graph_bomb(entry):
    """w0 replaced by 80 MiB of zeros, deflated (1027x: refused as a zip bomb before it is inflated, the free
    allowance being lowered to 16 MiB by the test)."""
    with np.load(entry / "graph.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["w0"] = np.zeros(80 << 20, np.uint8)
    np.savez_compressed(entry / "graph.npz", **arrays)


def _trace_of_another_graph(entry):
    _replace_member(entry / "trace.npz", "meta", np.frombuffer(json.dumps(
        {**json.loads(np.load(entry / "trace.npz")["meta"].tobytes()), "graph_fingerprint": "f" * 16}).encode(),
        np.uint8))


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A cache with every stage of one small digits point made, its result row, and the point's config."""
    root = tmp_path_factory.mktemp("warm")
    cfg = load_config(sets=["data.dataset=digits", "train.epochs=1", "compression.method=random",
                            "compression.ratios=[0.5]", "compression.params={finetune_epochs: 0}",
                            "hardware.n_samples=3", "hardware.model=analytic", f"cache_dir={root / 'cache'}"])
    row = evaluate_point(cfg, root / "cache")
    return root / "cache", cfg, row


@pytest.fixture
def cache_copy(warm, tmp_path):
    cache, cfg, row = warm
    shutil.copytree(cache, tmp_path / "cache", symlinks=True)
    return tmp_path / "cache", cfg.model_copy(update={"cache_dir": str(tmp_path / "cache")}), row


@pytest.mark.slow
@pytest.mark.parametrize("damage", [_graph_object, _trace_object, _trace_truncated, _graph_bomb,
                                    _trace_of_another_graph])
@pytest.mark.parametrize("shared", [False, True], ids=["alone", "sim_cache"])
def test_a_lowered_entry_whose_content_does_not_load_is_made_again(cache_copy, damage, shared, caplog, monkeypatch):
    monkeypatch.setattr(npzfile, "FREE_INFLATE_BYTES", 16 << 20)
    cache, cfg, row = cache_copy
    entry = cache / "lowered" / stage_keys(cfg).lowered
    damage(entry)
    _fix_hashes(entry)
    StageCache(cache).verify("lowered", entry.name)  # the hashes match: only loading finds it
    with caplog.at_level(logging.WARNING, logger="codesign.store.cache"):
        again = evaluate_point(cfg, cache, sim_cache=SimCache() if shared else None)
    assert again == row
    assert "is unusable" in caplog.text and "discarding and recomputing" in caplog.text, caplog.text
    assert damage is not _graph_bomb or "graph.npz: member 'w0.npy' inflates to 80 MiB" in caplog.text
    StageCache(cache).verify("lowered", entry.name)
    load_lowered(entry)
    assert sorted(p.name for p in entry.parent.iterdir()) == [entry.name]  # nothing moved aside is left


@pytest.mark.slow
@pytest.mark.parametrize("content", ["[1]", "{}", '{"params_after": "many"}'])
def test_a_compressed_entry_whose_result_json_is_of_the_wrong_shape_is_made_again(cache_copy, content, caplog):
    cache, cfg, row = cache_copy
    entry = cache / "compressed" / stage_keys(cfg).compressed
    (entry / "result.json").write_text(content)
    _fix_hashes(entry)
    force_rmtree(cache / "lowered")  # made again from the compressed model, as it would be after an upgrade
    with caplog.at_level(logging.WARNING, logger="codesign.store.cache"):
        again = evaluate_point(cfg, cache)
    assert again == row and "result.json: not an object with an integer 'params_after'" in caplog.text


def test_the_members_of_a_lowered_entry_are_read_without_pickles(tmp_path):
    # the object arrays above are pickles: loading them would run code; numpy refuses them (allow_pickle=False)
    path = tmp_path / "x.npz"
    np.savez(path, w0=_object_array())
    with zipfile.ZipFile(path) as zf:
        assert b"system" in zf.read("w0.npy")
    with pytest.raises(ValueError, match="x.npz: .*Object arrays cannot be loaded"):
        with npzfile.open_npz(path, "network graph") as z:
            z["w0"]
