"""Dataset loaders read from local files (CIFAR pickles, DVS event files written here in their real formats),
event binning, the MNIST event-camera emulator (hand-checked events) and event data through encode/train/lower."""
import math
import os
import pickle
import re
import shlex

import numpy as np
import pytest
import torch

from workloads.data import DATASETS, ENV_ROOT, dataset_options, load_dataset, stream_seed
from workloads.datasets.emulator import dvs_events, emulate_dvs, lin_log, render_video
from workloads.datasets.event_io import Events, events_to_frames, read_aedat2_cifar10dvs, read_npz_events
from workloads.encoding import encode
from workloads.train import TrainConfig, check_dataset

# ---------------------------------------------------------------- CIFAR python-pickle folders


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _cifar_rows(n, first):
    """n flat uint8 images; image k has red plane = (first + k) % 256, green 0, blue 255."""
    rows = np.zeros((n, 3072), np.uint8)
    rows[:, :1024] = ((first + np.arange(n)) % 256)[:, None]
    rows[:, 2048:] = 255
    return rows


@pytest.fixture
def cifar10_root(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for b in range(1, 6):  # 4 images per batch, labels 0..9 cycling over the 20 train images
        _pickle(folder / f"data_batch_{b}", {b"batch_label": b"x", b"data": _cifar_rows(4, 4 * (b - 1)),
                                             b"labels": [(4 * (b - 1) + i) % 10 for i in range(4)]})
    _pickle(folder / "test_batch", {b"data": _cifar_rows(10, 100), b"labels": list(range(9, -1, -1))})
    _pickle(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return tmp_path


def test_cifar10_shapes_values_labels_and_names(cifar10_root):
    ds = load_dataset("cifar10", root=cifar10_root)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_test.shape == (10, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64 and not ds.temporal
    assert (ds.n_classes, ds.in_shape, ds.class_names[:2]) == (10, (3, 32, 32), ("c0", "c1"))
    assert ds.y_train.tolist() == [i % 10 for i in range(20)] and ds.y_test.tolist() == list(range(9, -1, -1))
    assert torch.equal(ds.x_train[:, 0, 5, 7], torch.arange(20.0) / 255)  # red plane row-major, / 255
    assert float(ds.x_train[:, 1].abs().max()) == 0.0 and float(ds.x_train[:, 2].min()) == 1.0
    assert torch.equal(ds.x_test[:, 0, 0, 0], (100 + torch.arange(10.0)) / 255)


def test_cifar100_fine_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for part, n in (("train", 200), ("test", 100)):
        _pickle(folder / part, {b"data": _cifar_rows(n, 0), b"fine_labels": [i % 100 for i in range(n)],
                                b"coarse_labels": [i % 20 for i in range(n)]})
    _pickle(folder / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                              b"coarse_label_names": [f"k{i}".encode() for i in range(20)]})
    ds = load_dataset("cifar100", root=tmp_path, n_train=100, n_test=50)
    assert (ds.n_classes, len(ds.class_names), ds.class_names[99]) == (100, 100, "f99")
    assert torch.bincount(ds.y_train, minlength=100).tolist() == [1] * 100  # stratified: one per class
    assert len(ds.y_test) == 50 and len(ds.y_test.unique()) == 50  # 50 of the 100 one-image test classes


def test_cifar_subsampling_is_seeded_stratified_and_checked(cifar10_root):
    a = load_dataset("cifar10", seed=3, root=cifar10_root, n_train=10, n_test=5)
    assert torch.bincount(a.y_train).tolist() == [1] * 10 and len(a.y_test) == 5
    # each kept image is the one the file holds for its label (red value k/255 has label k % 10)
    assert torch.equal((a.x_train[:, 0, 0, 0] * 255).round().long() % 10, a.y_train)
    again = load_dataset("cifar10", seed=3, root=cifar10_root, n_train=10, n_test=5)
    assert torch.equal(again.x_train, a.x_train) and torch.equal(again.y_test, a.y_test)
    others = [load_dataset("cifar10", seed=s, root=cifar10_root, n_train=10).x_train for s in range(4, 8)]
    assert any(not torch.equal(o, a.x_train) for o in others)
    for bad in (0, 21):
        with pytest.raises(ValueError, match="n_train"):
            load_dataset("cifar10", root=cifar10_root, n_train=bad)


class _RunsCode:
    """Unpickling this calls os.system (touching `marker`): what a planted CIFAR file could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def test_a_planted_cifar_pickle_is_refused_and_never_runs(cifar10_root):
    marker = cifar10_root / "ran"
    batch = cifar10_root / "cifar-10-batches-py" / "data_batch_2"
    with open(batch, "wb") as f:
        pickle.dump({b"data": _cifar_rows(4, 0), b"labels": _RunsCode(marker)}, f, protocol=2)
    with pytest.raises(ValueError, match=re.escape(f"CIFAR file {batch}: not a CIFAR python pickle (refused "
                                                   "global posix.system)")) as err:
        load_dataset("cifar10", root=cifar10_root)
    assert "\n" not in str(err.value) and not marker.exists()
    batch.write_bytes(pickle.dumps({b"data": _cifar_rows(4, 0)}, protocol=2)[:40])  # truncated
    with pytest.raises(ValueError, match=f"CIFAR file {re.escape(str(batch))}: not a CIFAR python pickle"):
        load_dataset("cifar10", root=cifar10_root)


@pytest.mark.parametrize("content, needle", [
    ({b"labels": [0] * 4}, "has no 'data' entry"),
    ({b"data": _cifar_rows(4, 0)}, "has no 'labels' entry"),
    ({b"data": _cifar_rows(4, 0).astype(np.float32) / 255, b"labels": [0] * 4},
     "'data' is float32 (4, 3072); expected N rows of 3072 integers"),  # was cast to uint8: black images
    ({b"data": _cifar_rows(4, 0).astype(np.int64) + 100, b"labels": [0] * 4}, "'data' holds 100..355; pixels are"),
    ({b"data": _cifar_rows(4, 0)[:, :1000], b"labels": [0] * 4}, "'data' is uint8 (4, 1000)"),
    ({b"data": _cifar_rows(4, 0), b"labels": [0, 1, 2]}, "'labels' is int64 (3,); expected 4 integers"),  # shifted
    ({b"data": _cifar_rows(4, 0), b"labels": [0.5, 1, 2, 3]}, "'labels' is float64 (4,)"),
    ({b"data": _cifar_rows(4, 0), b"labels": [0, 1, 2, 10]}, "'labels' holds 0..10; labels are 0..9"),
])
def test_cifar_files_with_wrong_content_are_refused_naming_file_and_key(cifar10_root, content, needle):
    batch = cifar10_root / "cifar-10-batches-py" / "data_batch_3"
    _pickle(batch, content)
    with pytest.raises(ValueError, match=f"CIFAR file {re.escape(str(batch))}: {re.escape(needle)}") as err:
        load_dataset("cifar10", root=cifar10_root)
    assert "\n" not in str(err.value)


def test_cifar_meta_must_name_every_class(cifar10_root):
    _pickle(cifar10_root / "cifar-10-batches-py" / "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(ValueError, match="'label_names' must list the 10 class names, got list of 2"):
        load_dataset("cifar10", root=cifar10_root)


def test_genuine_protocol_2_cifar_pickles_of_numpy_arrays_load(cifar10_root):
    folder = cifar10_root / "cifar-10-batches-py"
    for b in range(1, 6):  # as the original files: protocol 2, bytes keys, numpy uint8 rows and int labels
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump({b"batch_label": b"training batch", b"data": _cifar_rows(4, 4 * (b - 1)),
                         b"labels": [(4 * (b - 1) + i) % 10 for i in range(4)],
                         b"filenames": [b"a.png"] * 4}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)], b"num_vis": 3072,
                     b"num_cases_per_batch": 4}, f, protocol=2)
    ds = load_dataset("cifar10", root=cifar10_root)
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.class_names[:2] == ("c0", "c1")
    assert torch.equal(ds.x_train[:, 0, 5, 7], torch.arange(20.0) / 255)
    assert ds.y_train.tolist() == [i % 10 for i in range(20)]


def test_missing_files_name_the_path_and_env_root(tmp_path, monkeypatch, cifar10_root):
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "nowhere" / "cifar-10-batches-py"))):
        load_dataset("cifar10", root=tmp_path / "nowhere")
    (cifar10_root / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(ValueError, match=f"{ENV_ROOT}") as err:
        load_dataset("cifar10", root=cifar10_root)
    assert "\n" not in str(err.value)
    monkeypatch.setenv(ENV_ROOT, str(tmp_path / "env"))
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "env" / "DVS128Gesture"))):
        load_dataset("dvs_gesture")
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "env" / "CIFAR10DVS")) + ".*aedat"):
        load_dataset("dvs_cifar10")


def test_registry_options_and_unknown_option():
    assert {"cifar10", "cifar100", "dvs_gesture", "dvs_cifar10", "mnist_dvs_emu"} <= set(DATASETS)
    assert dataset_options("dvs_cifar10")["size"] == 48 and dataset_options("cifar10") == {"n_train": None,
                                                                                           "n_test": None}
    with pytest.raises(ValueError, match="n_frames.*cifar10"):
        load_dataset("cifar10", n_frames=4)


def test_stream_seeds_are_reproducible_and_distinct():
    assert stream_seed(0, "train") == stream_seed(0, "train")
    assert len({stream_seed(s, k) for s in (0, 1) for k in ("train", "test", "split")}) == 6
    with pytest.raises(ValueError, match="stream"):
        stream_seed(0, "validation")

# ---------------------------------------------------------------- event files and binning


EV = Events(t=np.array([0, 10, 20, 30, 40, 100]), x=np.array([0, 3, 4, 127, 64, 5]),
            y=np.array([0, 0, 0, 127, 64, 1]), p=np.array([1, 1, 0, 0, 1, 1]))


def test_events_to_frames_by_number_and_time_hand_checked():
    want = np.zeros((3, 2, 32, 32), np.float32)  # by number: events (0,1) (2,3) (4,5); 128 -> 32 pools by 4
    want[0, 1, 0, 0] = 2
    want[1, 0, 0, 1] = want[1, 0, 31, 31] = 1
    want[2, 1, 16, 16] = want[2, 1, 0, 1] = 1
    np.testing.assert_array_equal(events_to_frames(EV, 3, (128, 128), 32, "number"), want)
    want = np.zeros((3, 2, 32, 32), np.float32)  # by time: frame = t * 3 // 101 -> 0, 0, 0, 0, 1, 2
    want[0, 1, 0, 0], want[0, 0, 0, 1], want[0, 0, 31, 31] = 2, 1, 1
    want[1, 1, 16, 16] = want[2, 1, 0, 1] = 1
    np.testing.assert_array_equal(events_to_frames(EV, 3, (128, 128), 32, "time"), want)
    binary = events_to_frames(EV, 3, (128, 128), 32, "time", binary=True)
    assert binary[0, 1, 0, 0] == 1 and binary.sum() == 5
    assert events_to_frames(EV, 2, (128, 128), 48).sum() == 6  # uneven 128 -> 48 blocks keep every event
    with pytest.raises(ValueError, match="outside"):
        events_to_frames(EV._replace(x=EV.x + 1), 3, (128, 128), 32)
    with pytest.raises(ValueError, match="split_by"):
        events_to_frames(EV, 3, (128, 128), 32, "count")


def _aedat(path, raw):
    """AEDAT 2.0: '#' header lines, then big-endian (address, timestamp) uint32 pairs; raw = (x, y, p, t) rows."""
    words = [w for x, y, p, t in raw for w in ((y << 8) | (x << 1) | p, t)]
    path.write_bytes(b"#!AER-DAT2.0\r\n# synthetic\r\n" + np.array(words, dtype=">u4").tobytes())


def test_aedat2_reader_decodes_dvs128_addresses_as_spikingjelly(tmp_path):
    _aedat(tmp_path / "a.aedat", [(10, 100, 0, 5), (127, 0, 1, 9)])
    ev = read_aedat2_cifar10dvs(tmp_path / "a.aedat")
    # x = 127 - y_raw, y = 127 - x_raw, p = 1 - p_raw
    assert ev.x.tolist() == [27, 127] and ev.y.tolist() == [117, 0] and ev.p.tolist() == [1, 0]
    assert ev.t.tolist() == [5, 9]


def test_event_arrays_are_checked_put_in_time_order_and_errors_name_the_file(tmp_path):
    good = {"t": np.array([30, 10, 20]), "x": np.array([1, 2, 3]), "y": np.array([4, 5, 6]), "p": np.array([1, 0, 1])}
    np.savez(tmp_path / "g.npz", **good)
    ev = read_npz_events(tmp_path / "g.npz")  # out of time order in the file: sorted by t
    assert ev.t.tolist() == [10, 20, 30] and ev.x.tolist() == [2, 3, 1] and ev.p.tolist() == [0, 1, 1]
    for i, (edit, needle) in enumerate([
            ({"x": np.arange(5)}, "t, x, y, p must be 1-D arrays of one length"),
            ({"t": np.array([0.0, np.nan, 2.0])}, "t holds values that are not finite whole numbers"),
            ({"x": np.array(["a", "b", "c"])}, "x holds <U1 values, not numbers"),
            ({"y": np.ones((3, 1))}, "must be 1-D arrays")]):
        np.savez(tmp_path / f"b{i}.npz", **{**good, **edit})
        with pytest.raises(ValueError, match=f"event file {re.escape(str(tmp_path / f'b{i}.npz'))}: .*{needle}"):
            read_npz_events(tmp_path / f"b{i}.npz")
    (tmp_path / "e.aedat").write_bytes(b"")  # an empty file: refused as the empty .npz is
    with pytest.raises(ValueError, match="e.aedat: is empty"):
        read_aedat2_cifar10dvs(tmp_path / "e.aedat")
    (tmp_path / "d.aedat").mkdir()  # a folder where a recording is expected
    with pytest.raises(ValueError, match=f"event file {re.escape(str(tmp_path / 'd.aedat'))}: cannot be read"):
        read_aedat2_cifar10dvs(tmp_path / "d.aedat")
    huge = Events(t=np.array([0, 2 ** 62]), x=np.zeros(2, int), y=np.zeros(2, int), p=np.ones(2, int))
    with pytest.raises(ValueError, match="too long to split into 4 frames by time"):
        events_to_frames(huge, 4, (128, 128), 32, "time")


def _gesture_events(i):
    """Recording i: 5 + i events, so a sample's total count identifies its file."""
    rng = np.random.default_rng(i)
    n = 5 + i
    return (rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), np.sort(rng.integers(0, 9999, n)))


def test_dvs_gesture_spikingjelly_and_tonic_layouts_agree(tmp_path):
    files = {("train", 0): 0, ("train", 4): 1, ("train", 10): 2, ("test", 4): 3, ("test", 10): 4}
    for (part, label), i in files.items():
        x, y, p, t = _gesture_events(i)
        sj = tmp_path / "sj" / "DVS128Gesture" / "events_np" / part / str(label)
        sj.mkdir(parents=True, exist_ok=True)
        np.savez(sj / f"user0{i}_led_0.npz", t=t, x=x, y=y, p=p)
        user = tmp_path / "tonic" / "DVSGesture" / f"ibmGesture{part.title()}" / f"user0{i}_led"
        user.mkdir(parents=True)
        np.save(user / f"{label}.npy", np.stack([x, y, p, t / 1000.0], 1))  # tonic keeps t in ms
    a = load_dataset("dvs_gesture", root=tmp_path / "sj", n_frames=4, size=32, split_by="time")
    b = load_dataset("dvs_gesture", root=tmp_path / "tonic", n_frames=4, size=32, split_by="time")
    assert a.temporal and a.x_train.shape == (3, 4, 2, 32, 32) and a.x_test.shape == (2, 4, 2, 32, 32)
    assert (a.n_classes, a.in_shape, a.n_frames) == (11, (2, 32, 32), 4)
    events = {5 + i: label for (_, label), i in files.items()}  # count -> label
    for x, y in ((a.x_train, a.y_train), (a.x_test, a.y_test)):
        assert [events[int(c)] for c in x.sum((1, 2, 3, 4))] == y.tolist()
    for xa, xb in ((a.x_train, b.x_train), (a.x_test, b.x_test)):  # same recordings, listed in another order
        order_a, order_b = xa.sum((1, 2, 3, 4)).argsort(), xb.sum((1, 2, 3, 4)).argsort()
        assert torch.equal(xa[order_a], xb[order_b])
    with pytest.raises(ValueError, match="size"):
        load_dataset("dvs_gesture", root=tmp_path / "sj", size=129)
    sj_file = tmp_path / "sj" / "DVS128Gesture" / "events_np" / "test" / "4" / "user03_led_0.npz"
    np.savez(sj_file, t=np.arange(3), x=np.array([0, 200, 0]), y=np.zeros(3, int), p=np.ones(3, int))
    with pytest.raises(ValueError, match=f"event file {re.escape(str(sj_file))}: events: 1 events lie outside"):
        load_dataset("dvs_gesture", root=tmp_path / "sj")
    x, y, p, t = _gesture_events(3)
    np.savez(sj_file, t=t, x=x, y=y, p=p)
    with pytest.raises(ValueError, match="option 'binary' of dataset 'dvs_gesture' is 'false'; expected true or false"):  # bool('false') is true
        load_dataset("dvs_gesture", root=tmp_path / "sj", binary="false")
    np.save(tmp_path / "tonic" / "DVSGesture" / "ibmGestureTest" / "user03_led" / "wave.npy", np.zeros((1, 4)))
    with pytest.raises(ValueError, match="wave.*integer"):
        load_dataset("dvs_gesture", root=tmp_path / "tonic")


def test_dvs_cifar10_aedat_seeded_split_labels_and_subsets(tmp_path):
    for cls in ("automobile", "truck"):
        folder = tmp_path / "CIFAR10DVS" / cls
        folder.mkdir(parents=True)
        for i in range(10):
            _aedat(folder / f"cifar10_{cls}_{i}.aedat", [(i, 3, i % 2, 10 * k) for k in range(3 + i)])
    ds = load_dataset("dvs_cifar10", seed=0, root=tmp_path, n_frames=3, size=32)
    assert ds.x_train.shape == (18, 3, 2, 32, 32) and ds.x_test.shape == (2, 3, 2, 32, 32)
    assert sorted(ds.y_test.tolist()) == [1, 9] and torch.bincount(ds.y_train).tolist()[1::8] == [9, 9]
    # recording i: 3 + i events at x_raw = i, y_raw = 3 -> pixel (x, y) = (124, 127 - i), ON iff i even
    i = ds.x_train.sum((1, 2, 3, 4)).long() - 3
    assert (ds.x_train.sum(1)[torch.arange(18), 1 - i % 2, (127 - i) // 4, 31] == i + 3).all()
    again = load_dataset("dvs_cifar10", seed=0, root=tmp_path, n_frames=3, size=32)
    assert torch.equal(again.x_test, ds.x_test)
    tests = {tuple(load_dataset("dvs_cifar10", seed=s, root=tmp_path, n_frames=3, size=32).x_test.sum((1, 2, 3, 4))
                   .tolist()) for s in range(5)}
    assert len(tests) > 1  # the split follows the seed
    small = load_dataset("dvs_cifar10", seed=0, root=tmp_path, n_frames=3, size=32, n_train=4, binary=True)
    assert torch.bincount(small.y_train).tolist()[1::8] == [2, 2] and set(small.x_train.unique().tolist()) == {0, 1}

# ---------------------------------------------------------------- MNIST event-camera emulator

ONE_STEP = math.trunc(math.log(255) / 0.2)  # 0 -> 1 intensity: ln(255) / C = 27.7 -> 27 events


def test_lin_log_matches_v2e():
    got = lin_log(np.array([0.0, 10 / 255, 20 / 255, 1.0]))
    np.testing.assert_allclose(got, [0.0, 10 * math.log(20) / 20, math.log(20), math.log(255)], rtol=1e-12)


def test_one_pixel_move_gives_off_behind_and_on_ahead():
    img = np.zeros((1, 2, 2))
    img[0, 0, 0] = 1.0  # a single bright pixel; triangle path from (0, 0): right, down-left, up
    frames = emulate_dvs(img, 3, 3, 0.2, "triangle", np.random.default_rng(0))
    want = np.zeros((1, 3, 2, 3, 3), np.float32)
    for t, (off, on) in enumerate((((0, 0), (0, 1)), ((0, 1), (1, 0)), ((1, 0), (0, 0)))):
        want[0, t, 0][off] = want[0, t, 1][on] = ONE_STEP
    np.testing.assert_array_equal(frames, want)


def test_reference_level_accumulates_sub_threshold_changes():
    video = np.array([0.5, 0.6, 0.62, 0.45, 1.0]).reshape(1, 5, 1, 1)
    # vs the last event's level: ln 1.2 = 0.18 (none); ln 1.24 = 0.215 (1 ON, ref = ln(0.5) + 0.2);
    # ln(0.9) - 0.2 = -0.305 (1 OFF, ref back to ln 0.5); ln 2 = 0.69 (3 ON)
    ev = dvs_events(video, 0.2)[0, :, :, 0, 0]
    assert ev.tolist() == [[0, 0], [0, 1], [1, 0], [0, 3]]
    moved = render_video(np.ones((1, 1, 1)), np.array([[[0, 0], [1, 1]]]), 2)
    assert moved[0, 0].tolist() == [[1, 0], [0, 0]] and moved[0, 1].tolist() == [[0, 0], [0, 1]]


def test_mnist_dvs_emu_shapes_labels_and_seeds():
    ds = load_dataset("mnist_dvs_emu", seed=2, n_train=40, n_test=20, n_frames=4)
    ref = load_dataset("mnist5k", seed=2, n_train=40, n_test=20)
    assert ds.temporal and ds.x_train.shape == (40, 4, 2, 32, 32) and ds.x_test.shape == (20, 4, 2, 32, 32)
    assert torch.equal(ds.y_train, ref.y_train) and torch.equal(ds.y_test, ref.y_test)
    assert (ds.x_train == ds.x_train.round()).all() and ds.x_train.min() == 0 and ds.x_train.max() <= ONE_STEP + 1
    assert (ds.x_train.sum((2, 3, 4)) > 0).all()  # every step moves the digit, so every frame has events
    assert torch.equal(load_dataset("mnist_dvs_emu", seed=2, n_train=40, n_test=20, n_frames=4).x_train, ds.x_train)
    assert not torch.equal(load_dataset("mnist_dvs_emu", seed=3, n_train=40, n_test=20, n_frames=4).x_test,
                           ds.x_test)
    with pytest.raises(ValueError, match="trajectory"):
        load_dataset("mnist_dvs_emu", n_train=10, n_test=10, trajectory="spiral")
    with pytest.raises(ValueError, match="size"):
        load_dataset("mnist_dvs_emu", n_train=10, n_test=10, size=28)

# ---------------------------------------------------------------- event data through encode, train, lower


def test_events_encoding_and_training_checks():
    x = torch.rand(3, 4, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    seq = encode(x, 4, "events")
    assert seq.shape == (4, 3, 2, 5, 5) and all(torch.equal(seq[t], x[:, t]) for t in range(4))
    with pytest.raises(ValueError, match="events.*T=5"):
        encode(x, 5, "events")
    with pytest.raises(ValueError, match="events"):
        encode(x, 4, "direct")
    with pytest.raises(ValueError, match="events"):
        encode(x[:, 0], 4, "events")
    ds = load_dataset("mnist_dvs_emu", n_train=10, n_test=10, n_frames=4)
    with pytest.raises(ValueError, match="TrainConfig.encoding"):
        check_dataset(ds, TrainConfig(encoding="direct", n_timesteps=4))
    with pytest.raises(ValueError, match="TrainConfig.n_timesteps"):
        check_dataset(ds, TrainConfig(encoding="events", n_timesteps=8))


@pytest.mark.slow
def test_sca_dvs_trains_on_emulated_events_and_lowers():
    from workloads.lowering import lower
    from workloads.models import build_model
    from workloads.train import evaluate, train

    ds = load_dataset("mnist_dvs_emu", seed=0, n_train=64, n_test=16, n_frames=4, binary=True)
    model = build_model("sca_dvs", ds.in_shape, ds.n_classes, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=32, n_timesteps=4, encoding="events", eval_batch_size=16)
    history = train(model, ds, cfg, seed=0, device=torch.device("cpu"), progress=False)
    assert len(history) == 1 and math.isfinite(history[0]["loss"])
    assert 0.0 <= evaluate(model, ds.x_test, ds.y_test, cfg, device=torch.device("cpu")) <= 1.0
    graph, trace = lower(model, encode(ds.x_test[:4], 4, "events"), device=torch.device("cpu"))
    assert graph.populations["input"].shape == (2, 32, 32) and not graph.populations["input"].graded
    np.testing.assert_array_equal(trace.to_dense("input", (2, 32, 32)), ds.x_test[:4].numpy())


@pytest.mark.parametrize("kind", ["object arrays", "not a zip", "pickle"])
def test_an_event_file_that_is_not_plain_arrays_is_refused_in_one_line_naming_it(tmp_path, kind):
    folders = [tmp_path / "DVS128Gesture" / "events_np" / part / "0" for part in ("train", "test")]
    for folder in folders:
        folder.mkdir(parents=True)
        x = np.zeros(5, np.int64)
        np.savez(folder / "a.npz", t=np.arange(5), x=x, y=x, p=x)
    bad = folders[1] / "a.npz"
    if kind == "object arrays":
        obj = np.array([_RunsCode(tmp_path / "ran")], dtype=object)
        np.savez(bad, t=obj, x=obj, y=obj, p=obj)
    else:
        bad.write_bytes(b"PK\x03\x04 truncated" if kind == "not a zip" else pickle.dumps(_RunsCode(tmp_path / "ran")))
    with pytest.raises(ValueError, match=f"event file {bad}: cannot be read") as err:
        load_dataset("dvs_gesture", root=tmp_path, n_frames=2, size=32)
    assert "\n" not in str(err.value) and not (tmp_path / "ran").exists()


@pytest.mark.parametrize("kind", ["npy named npz", "label ²"])
def test_a_gesture_file_of_the_other_format_or_a_non_ascii_label_is_one_line_naming_it(tmp_path, kind):
    # were a TypeError traceback (np.load of a .npy used as a context manager) and int('²') without the file
    folders = [tmp_path / "DVS128Gesture" / "events_np" / part / "0" for part in ("train", "test")]
    x = np.zeros(5, np.int64)
    for folder in folders:
        folder.mkdir(parents=True)
        np.savez(folder / "a.npz", t=np.arange(5), x=x, y=x, p=x)
    bad = folders[1] / "a.npz"
    if kind == "npy named npz":
        with open(bad, "wb") as f:
            np.save(f, np.zeros((5, 4), np.int64))
        want = f"event file {bad}: holds one ndarray (a .npy), not an .npz archive of arrays t, x, y, p"
    else:
        bad = folders[1].parent / "\u00b2" / "a.npz"
        bad.parent.mkdir()
        np.savez(bad, t=np.arange(5), x=x, y=x, p=x)
        want = f"event file {bad}: label '\u00b2' (from its path) must be an integer"
    with pytest.raises(ValueError, match=re.escape(want)):
        load_dataset("dvs_gesture", root=tmp_path, n_frames=2, size=32)


def test_a_tonic_npy_that_is_an_npz_archive_is_one_line_naming_it(tmp_path):
    from workloads.datasets.event_io import read_tonic_gesture_npy
    path = tmp_path / "1.npy"
    with open(path, "wb") as f:
        np.savez(f, a=np.zeros(3))
    with pytest.raises(ValueError, match=re.escape(f"event file {path}: is an .npz archive, not one .npy array")):
        read_tonic_gesture_npy(path)


def test_cifar_empty_bytes_of_protocol_2_load_and_bytes_with_an_argument_is_refused(cifar10_root):
    folder = cifar10_root / "cifar-10-batches-py"
    with open(folder / "data_batch_1", "wb") as f:  # Python 3 writes b"" as bytes() under protocol 2
        pickle.dump({b"batch_label": b"", b"data": _cifar_rows(4, 0), b"labels": [0, 1, 2, 3],
                     b"filenames": [b""] * 4}, f, protocol=2)
    assert load_dataset("cifar10", root=cifar10_root).x_train.shape == (20, 3, 32, 32)

    class Huge:
        def __reduce__(self):
            return bytes, (10**12,)  # a terabyte of zeros
    _pickle(folder / "data_batch_2", {b"data": Huge()})
    with pytest.raises(ValueError, match=r"data_batch_2: not a CIFAR python pickle \(bytes called with 1 argument"):
        load_dataset("cifar10", root=cifar10_root)


def test_a_cifar_class_name_that_is_not_utf8_is_named_with_its_file(cifar10_root):
    meta = cifar10_root / "cifar-10-batches-py" / "batches.meta"
    _pickle(meta, {b"label_names": [b"\xff\xfe"] + [f"c{i}".encode() for i in range(9)]})
    with pytest.raises(ValueError, match=re.escape(f"CIFAR file {meta}: a class name b'\\xff\\xfe' is not UTF-8")):
        load_dataset("cifar10", root=cifar10_root)


@pytest.mark.parametrize("name, option, value, want", [
    ("digits", "n_train", 100.0, "an integer or null"), ("digits", "n_test", "50", "an integer or null"),
    ("digits", "n_train", True, "an integer or null"), ("mnist_dvs_emu", "binary", "false", "true or false"),
    ("mnist_dvs_emu", "size", 32.5, "an integer"), ("mnist_dvs_emu", "contrast_threshold", "0.2", "a number"),
    ("dvs_gesture", "split_by", 3, "a string")])
def test_dataset_options_of_another_type_are_one_line_errors(name, option, value, want):
    """100.0 used to reach a slice (TypeError traceback), binary='false' gave binary frames (a truthy string)."""
    from workloads.data import load_dataset
    with pytest.raises(ValueError, match=f"^option '{option}' of dataset '{name}' is {value!r}; expected {want}$"):
        load_dataset(name, seed=0, **{option: value})


def test_an_integer_is_taken_for_a_float_option():
    from workloads.data import load_dataset
    ds = load_dataset("mnist_dvs_emu", seed=0, contrast_threshold=1, n_train=10, n_test=10)
    assert ds.x_train.shape[0] == 10


def test_one_cifar10dvs_recording_names_the_file_counts(tmp_path):
    folder = tmp_path / "CIFAR10DVS" / "events_np" / "cat"
    folder.mkdir(parents=True)
    x = np.arange(5)
    np.savez(folder / "0.npz", t=np.arange(5), x=x, y=x, p=x % 2)
    with pytest.raises(ValueError, match=r"dataset dvs_cifar10: found 1 train and 0 test files; both must be > 0"):
        load_dataset("dvs_cifar10", root=tmp_path)  # was "n_test must be in [1, 1), got 1", an option never given


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_a_bad_seed_is_named(seed):
    with pytest.raises(ValueError, match=rf"seed: {re.escape(repr(seed))} must be an integer >= 0"):
        load_dataset("digits", seed=seed)
