"""Bad files given to the hardware side: every graph, trace and mapping load refuses a file that is not what it
expects with a one-line ValueError naming the file and what was expected (FileNotFoundError when nothing is
there), never a KeyError, BadZipFile, EOFError or a traceback from inside numpy."""
import json
import os
import shutil

import numpy as np
import pytest

from hwmodels import load_preset, map_network
from hwmodels.mapping.map import Mapping
from hwmodels.stream import open_trace, write_trace
from hwmodels.trace import EventTrace, NetworkGraph

LOADERS = {"graph": NetworkGraph.load, "trace": EventTrace.load, "mapping": Mapping.load}


@pytest.fixture
def files(tmp_path, nets, rng):
    """A good graph, trace, mapping and streamed trace folder in tmp_path; returns tmp_path."""
    g = nets.mixed_graph(rng)
    g.save(tmp_path / "graph.npz")
    tr = nets.random_trace(g, rng, 2, 3, 0.3)
    tr.save(tmp_path / "trace.npz")
    write_trace(tmp_path / "folder", tr)
    map_network(g, load_preset("loihi")).save(tmp_path / "mapping.npz")
    return tmp_path


def _refused(load, path, needle: str) -> str:
    with pytest.raises(ValueError) as err:
        load(path)
    text = str(err.value)
    assert needle in text and "\n" not in text, text
    return text


def _rewrite(src, dst, **changes) -> None:
    """Copy the .npz `src` to `dst` with arrays replaced (None: removed)."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(changes)
    np.savez(dst, **{k: v for k, v in arrays.items() if v is not None})


def _meta(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), np.uint8)


def _read_meta(path) -> dict:
    with np.load(path) as z:
        return json.loads(z["meta"].tobytes())


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_missing_path_a_directory_and_files_that_are_not_npz_are_refused(files, kind):
    load = LOADERS[kind]
    with pytest.raises(FileNotFoundError, match="no such"):
        load(files / "nothing.npz")
    _refused(load, files, "is a directory; expected a")
    (files / "empty.npz").write_bytes(b"")
    _refused(load, files / "empty.npz", "empty.npz: is empty")
    good = (files / f"{kind}.npz").read_bytes()
    (files / "cut.npz").write_bytes(good[:len(good) // 2])
    _refused(load, files / "cut.npz", "cut.npz: not a")
    (files / "text.npz").write_text("graph, trace or mapping?")
    _refused(load, files / "text.npz", "neither a zip archive nor a .npy array")
    np.save(files / "one.npy", np.zeros(3))
    _refused(load, files / "one.npy", "holds a single .npy array")


@pytest.mark.parametrize("kind", list(LOADERS))
def test_a_damaged_member_is_refused_naming_the_file(files, kind):
    raw = bytearray((files / f"{kind}.npz").read_bytes())
    i = len(raw) // 3
    raw[i:i + 16] = bytes(b ^ 0xFF for b in raw[i:i + 16])
    (files / "damaged.npz").write_bytes(bytes(raw))
    _refused(LOADERS[kind], files / "damaged.npz", "damaged.npz:")


@pytest.mark.parametrize("kind", list(LOADERS))
def test_meta_that_is_not_an_object_with_the_keys_is_refused(files, kind):
    load, src = LOADERS[kind], files / f"{kind}.npz"
    _rewrite(src, files / "list.npz", meta=_meta([1, 2]))
    _refused(load, files / "list.npz", "meta is a JSON list ([1, 2]), expected a JSON object with keys")
    _rewrite(src, files / "junk.npz", meta=np.frombuffer(b"{not json", np.uint8))
    _refused(load, files / "junk.npz", "meta is not JSON text")
    _rewrite(src, files / "nometa.npz", meta=None)
    _refused(load, files / "nometa.npz", "has no 'meta' array")
    _rewrite(src, files / "empty_meta.npz", meta=_meta({}))
    _refused(load, files / "empty_meta.npz", "meta lacks")
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000  # json's decoder recurses once per level
    _rewrite(src, files / "deep.npz", meta=np.frombuffer(deep, np.uint8))
    _refused(load, files / "deep.npz", "meta nests JSON deeper than Python's recursion limit")


@pytest.mark.parametrize("given, wanted", [("graph", "trace"), ("trace", "graph"), ("graph", "mapping"),
                                           ("mapping", "trace"), ("trace", "mapping"), ("mapping", "graph")])
def test_a_file_of_another_kind_is_named_as_such(files, given, wanted):
    names = {"graph": "a network graph", "trace": "an event trace", "mapping": "a mapping"}
    _refused(LOADERS[wanted], files / f"{given}.npz", f"is {names[given]} file, not {names[wanted]} file")


def test_graph_meta_entries_with_missing_keys_or_wrong_types_are_refused(files):
    src = files / "graph.npz"
    meta = _read_meta(src)
    del meta["populations"][1]["graded"]
    _rewrite(src, files / "g1.npz", meta=_meta(meta))
    _refused(NetworkGraph.load, files / "g1.npz", "meta['populations'][1]: lacks 'graded'")
    meta = _read_meta(src)
    meta["projections"][0]["groups"] = "one"
    _rewrite(src, files / "g2.npz", meta=_meta(meta))
    _refused(NetworkGraph.load, files / "g2.npz", "meta['projections'][0]['groups'] is 'one', expected an integer")
    meta = _read_meta(src)
    meta["populations"] = "in"
    _rewrite(src, files / "g3.npz", meta=_meta(meta))
    _refused(NetworkGraph.load, files / "g3.npz", "meta['populations'] is 'in', expected a JSON list")
    for i, (edit, needle) in enumerate([
            (lambda n: n.pop("kind"), "meta['populations'][1]['neuron']: lacks 'kind'"),
            (lambda n: n.update(decay_input="no"), "meta['populations'][1]['neuron']['decay_input'] is 'no', expected "
                                                   "true or false"),
            (lambda n: n.update(leak=1.0), "meta['populations'][1]['neuron']: unknown key 'leak'")]):
        meta = _read_meta(src)
        edit(meta["populations"][1]["neuron"])
        _rewrite(src, files / f"n{i}.npz", meta=_meta(meta))
        _refused(NetworkGraph.load, files / f"n{i}.npz", needle)
    meta = _read_meta(src)
    meta["populations"][0]["colour"] = "red"
    _rewrite(src, files / "g4.npz", meta=_meta(meta))
    _refused(NetworkGraph.load, files / "g4.npz", "meta['populations'][0]: unknown key 'colour'")


def test_graph_arrays_of_the_wrong_dtype_or_shape_or_not_finite_are_refused(files):
    src = files / "graph.npz"
    with np.load(src) as z:
        w0, w2 = z["w0"].copy(), z["w2"]
    _rewrite(src, files / "a.npz", w2=w2.astype(str))
    _refused(NetworkGraph.load, files / "a.npz", "array 'w2' is <U")
    _rewrite(src, files / "b.npz", w2=np.zeros((3, 3), np.float32))
    _refused(NetworkGraph.load, files / "b.npz", "projection 'fc1': dense weight shape (3, 3) should be")
    _rewrite(src, files / "c.npz", w2=None)
    _refused(NetworkGraph.load, files / "c.npz", "has no array 'w2'")
    w0[0, 0, 0, 0] = np.nan
    _rewrite(src, files / "d.npz", w0=w0)
    _refused(NetworkGraph.load, files / "d.npz", "projection.weight: 'conv' has 1 non-finite value")
    meta = _read_meta(src)
    meta["populations"][1]["neuron"]["threshold"] = float("nan")
    _rewrite(src, files / "e.npz", meta=_meta(meta))
    _refused(NetworkGraph.load, files / "e.npz", "neuron.threshold: nan must be a number or +inf")


def test_trace_arrays_and_meta_of_the_wrong_kind_are_refused(files):
    src = files / "trace.npz"
    with np.load(src) as z:
        offsets = z["offsets"]
    _rewrite(src, files / "a.npz", offsets=offsets.astype(float))
    _refused(EventTrace.load, files / "a.npz", "array 'offsets' is float64 (31,), expected int with 1 dim")
    _rewrite(src, files / "b.npz", offsets=offsets[:-3])
    _refused(EventTrace.load, files / "b.npz", "b.npz: trace.offsets: shape (28,) should be (31,)")
    meta = _read_meta(src)
    meta["n_samples"] = "2"
    _rewrite(src, files / "c.npz", meta=_meta(meta))
    _refused(EventTrace.load, files / "c.npz", "meta['n_samples'] is '2', expected an integer")
    meta["n_samples"], meta["activity"] = 2, ["nobody"]
    _rewrite(src, files / "d.npz", meta=_meta(meta))
    _refused(EventTrace.load, files / "d.npz", "meta['activity'] names 'nobody'")
    meta["activity"], meta["n_timesteps"] = [], 0
    _rewrite(src, files / "e.npz", meta=_meta(meta))
    _refused(EventTrace.load, files / "e.npz", "trace.n_timesteps: 0 must be an integer >= 1")


def test_mapping_arrays_of_the_wrong_shape_are_refused(files):
    src = files / "mapping.npz"
    with np.load(src) as z:
        tile_xy = z["tile_xy"]
    _rewrite(src, files / "a.npz", tile_xy=tile_xy[:, :1].copy())
    _refused(Mapping.load, files / "a.npz", "mapping.tile_xy: shape")
    _rewrite(src, files / "b.npz", pop0=np.zeros(3))
    _refused(Mapping.load, files / "b.npz", "array 'pop0' is float64 (3,), expected int")


def test_streamed_trace_folders_refuse_bad_columns_and_meta(files):
    folder = files / "folder"
    with pytest.raises(FileNotFoundError, match="no such trace folder"):
        open_trace(files / "nowhere")
    _refused(open_trace, files / "trace.npz", "is a file, not a trace folder")
    cases = {"meta.json": b"[1]", "indices.npy": (folder / "indices.npy").read_bytes()[:140]}
    needles = {"meta.json": "meta is a JSON list ([1]), expected a JSON object",
               "indices.npy": "indices.npy: not a readable .npy column"}
    for name, content in cases.items():
        bad = files / f"bad_{name}"
        shutil.copytree(folder, bad)
        (bad / name).write_bytes(content)
        _refused(open_trace, bad, needles[name])
    bad = files / "bad_offsets"
    shutil.copytree(folder, bad)
    np.save(bad / "offsets.npy", np.zeros(31))
    _refused(open_trace, bad, "array 'offsets' is float64 (31,), expected int")
    (bad / "offsets.npy").unlink()
    _refused(open_trace, bad, "offsets.npy: missing or not a file")
    meta = json.loads((folder / "meta.json").read_text())
    del meta["n_samples"]
    (folder / "meta.json").write_text(json.dumps({**meta, "projections": []}))
    _refused(open_trace, folder, "is a network graph file, not an event trace file")


def test_streamed_trace_folders_refuse_symlinked_columns_and_meta(files):
    folder = files / "folder"
    assert open_trace(folder).n_samples >= 1
    for name in ("meta.json", "offsets.npy", "indices.npy", "values.npy", "activity0.npy"):
        if not (folder / name).exists():
            continue
        linked = files / f"linked_{name}"
        shutil.copytree(folder, linked)
        (linked / name).rename(files / f"elsewhere_{name}")  # the same, valid bytes, reached through a link
        os.symlink(files / f"elsewhere_{name}", linked / name)
        _refused(open_trace, linked, f"{name}: is a symlink")
        (linked / name).unlink()
        os.symlink(files / "nowhere", linked / name)  # a dangling link is refused too, not taken for an absent column
        _refused(open_trace, linked, f"{name}: is a symlink")
    os.symlink(folder, files / "folder_link")  # the folder itself may be a link
    assert open_trace(files / "folder_link").n_samples == open_trace(folder).n_samples


def test_long_user_values_are_cut_in_messages(files):
    meta = _read_meta(files / "trace.npz")
    meta["n_samples"] = "x" * 500
    _rewrite(files / "trace.npz", files / "long.npz", meta=_meta(meta))
    text = _refused(EventTrace.load, files / "long.npz", "meta['n_samples'] is 'xxx")
    assert len(text) < 200 and "..." in text
    deep = files / ("d" * 150)
    deep.mkdir()
    text = _refused(NetworkGraph.load, deep, "is a directory")
    assert len(text) < 200 and text.startswith("...")
