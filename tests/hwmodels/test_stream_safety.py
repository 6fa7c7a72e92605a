"""Writing a trace folder safely (hwmodels.stream.TraceWriter / write_trace): never through a symbolic link, and
atomically, so a failed or interrupted write leaves neither a half-written folder nor its temporary one."""
import os

import numpy as np
import pytest

from hwmodels.atomic import umask
import hwmodels.stream as stream
from hwmodels.stream import TraceWriter, write_trace
from hwmodels.trace import EventTrace


def _trace(rng, n=5):
    spikes = {"in": rng.random((n, 3, 12)) < 0.4, "out": rng.random((n, 3, 4)) < 0.4}
    spikes["in"] = spikes["in"] * rng.normal(size=(n, 3, 12))
    return EventTrace.from_dense(spikes, labels=rng.integers(0, 4, n), graded=("in",),
                                 activity={"out": rng.random((n, 4, 4)) < 0.5})


def _listing(folder):
    return sorted(p.name for p in folder.iterdir())


def test_a_link_planted_in_an_existing_folder_is_never_written_through(tmp_path, rng):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data")
    out = tmp_path / "wl"
    out.mkdir()
    (out / "indices.npy").symlink_to(victim)
    with pytest.raises(FileExistsError, match="wl: exists already and is not empty"):
        write_trace(out, _trace(rng))
    with pytest.raises(FileExistsError, match="wl: exists already and is not empty"):
        TraceWriter(out, ["in", "out"], 3)
    assert victim.read_text() == "precious data"
    assert _listing(tmp_path) == ["victim.txt", "wl"] and _listing(out) == ["indices.npy"]


@pytest.mark.parametrize("target", ["empty folder", "file", "dangling"])
def test_a_symlinked_destination_is_refused_and_not_followed(tmp_path, rng, target):
    outside = tmp_path / "outside"
    if target == "empty folder":
        outside.mkdir()
    elif target == "file":
        outside.write_text("precious data")
    (tmp_path / "t").symlink_to(outside)
    with pytest.raises(FileExistsError, match="t: is a symbolic link"):
        write_trace(tmp_path / "t", _trace(rng))
    assert (tmp_path / "t").is_symlink() and _listing(tmp_path) == (["outside", "t"] if target != "dangling" else
                                                                    ["t"])
    if target == "empty folder":
        assert _listing(outside) == []
    elif target == "file":
        assert outside.read_text() == "precious data"


def test_an_existing_file_or_trace_is_refused_before_anything_is_written(tmp_path, rng):
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileExistsError, match="f: exists already and is not a folder"):
        write_trace(tmp_path / "f", _trace(rng))
    write_trace(tmp_path / "t", _trace(rng))
    with pytest.raises(FileExistsError, match="t: exists already and is not empty"):
        write_trace(tmp_path / "t", _trace(rng))
    assert _listing(tmp_path) == ["f", "t"] and (tmp_path / "f").read_text() == "x"


def _fail_after(monkeypatch, n_calls, exc):
    """Make the column writer's append (hwmodels.stream's one file per column) raise `exc` from its n_calls-th call
    on (after the first batch is written): a disk filling up or a Ctrl-C in the middle of a write."""
    column = getattr(stream, "_Column")  # the writer's internals: where a real failure would strike
    real, calls = column.append, []

    def append(self, values):
        calls.append(1)
        if len(calls) >= n_calls:
            raise exc
        real(self, values)
    monkeypatch.setattr(column, "append", append)


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_write_failing_midway_leaves_no_folder_behind(tmp_path, rng, monkeypatch, exc):
    """write_trace of 5 samples, 1 a batch: 1 offsets row at the start, then 5 columns a batch; the 9th append
    fails, in the second batch."""
    _fail_after(monkeypatch, 9, exc)
    with pytest.raises(type(exc)):
        write_trace(tmp_path / "t", _trace(rng), batch_samples=1)
    assert _listing(tmp_path) == []


def test_a_writer_failing_midway_without_a_with_block_aborts_itself(tmp_path, rng, monkeypatch):
    tr = _trace(rng)
    w = TraceWriter(tmp_path / "t", ["in", "out"], 3, graded=True, labels=True, activity={"out": 4})
    w.append(tr.select(slice(0, 2)))
    assert _listing(tmp_path)[0].startswith(".t.partial-") and not (tmp_path / "t").exists()
    _fail_after(monkeypatch, 2, OSError(5, "Input/output error"))
    with pytest.raises(OSError, match="Input/output error"):
        w.append(tr.select(slice(2, 4)))
    assert _listing(tmp_path) == []
    with pytest.raises(ValueError, match="t: the trace writer is aborted already"):
        w.close()
    assert _listing(tmp_path) == []


def test_abort_and_an_exception_in_the_with_block_remove_the_temporary_folder(tmp_path, rng):
    tr = _trace(rng)
    w = TraceWriter(tmp_path / "a", ["in", "out"], 3, graded=True, labels=True, activity={"out": 4})
    w.append(tr)
    w.abort()
    with pytest.raises(RuntimeError, match="stop"):
        with TraceWriter(tmp_path / "b", ["in", "out"], 3, graded=True, labels=True, activity={"out": 4}) as w2:
            w2.append(tr)
            raise RuntimeError("stop")
    assert _listing(tmp_path) == []


def test_something_appearing_at_the_destination_while_writing_is_not_overwritten(tmp_path, rng):
    w = TraceWriter(tmp_path / "t", ["in", "out"], 3, graded=True, labels=True, activity={"out": 4})
    w.append(_trace(rng))
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "mine.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="t: exists already and is not empty"):
        w.close()
    assert _listing(tmp_path) == ["t"] and _listing(tmp_path / "t") == ["mine.txt"]


def test_an_unknown_activity_population_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="activity: 'h' is not one of the populations"):
        TraceWriter(tmp_path / "t", ["in", "out"], 3, activity={"h": 4})
    assert _listing(tmp_path) == []


@pytest.mark.parametrize("existing", [False, True])
def test_a_written_trace_opens_as_the_same_trace(tmp_path, rng, existing):
    """A new folder, or an existing empty one (replaced by the rename), holds exactly the trace, with the
    permissions of a plain mkdir and nothing else left beside it."""
    tr = _trace(rng, 7)
    if existing:
        (tmp_path / "t").mkdir()
    write_trace(tmp_path / "t", tr, batch_samples=3)
    back = EventTrace.open(tmp_path / "t")
    assert back.populations == tr.populations and (back.n_samples, back.n_timesteps) == (7, 3)
    for name in ("offsets", "indices", "values", "labels"):
        got, want = getattr(back, name), getattr(tr, name)
        assert got.dtype == want.dtype and np.array_equal(got, want), name
    assert np.array_equal(back.activity["out"], tr.activity["out"])
    assert _listing(tmp_path) == ["t"] and "meta.json" in _listing(tmp_path / "t")
    assert os.stat(tmp_path / "t").st_mode & 0o777 == 0o777 & ~umask()
