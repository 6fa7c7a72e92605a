"""DVS128-Gesture and CIFAR10-DVS read from local event files (SpikingJelly or tonic layouts, or the original
CIFAR10-DVS .aedat) and binned into polarity frames (N, T, 2, size, size); nothing is downloaded."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from workloads.datasets.base import (Dataset, data_root, make_dataset, missing, stratified_split, stream_seed,
                                     subsample_indices)
from workloads.datasets.event_io import (Events, check_frames, events_to_frames, read_aedat2_cifar10dvs,
                                         read_npz_events, read_tonic_gesture_npy)

SENSOR_HW = (128, 128)  # DVS128 (both sets)
CIFAR10DVS_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
GESTURE_CLASSES = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
                   "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise", "arm_roll",
                   "air_drums", "air_guitar", "other_gestures")
#: CIFAR10-DVS has no official split: a seeded stratified 10 % of each class is the test set (the usual 9:1)
CIFAR10DVS_TEST_FRACTION = 0.1


@dataclass(frozen=True)
class EventLayout:
    """One on-disk layout of an event set: files `pattern` (glob) under <root>/`folder`, read by `reader`;
    `label(path)` gives the class index, `split(path)` "train" / "test" (None: the set has no official split)."""

    folder: str
    pattern: str
    reader: Callable[[Path], Events]
    label: Callable[[Path], int]
    split: Optional[Callable[[Path], str]]
    description: str


def _cifar_label(path: Path) -> int:
    if path.parent.name not in CIFAR10DVS_CLASSES:
        raise ValueError(f"CIFAR10-DVS file {path}: class folder must be one of {list(CIFAR10DVS_CLASSES)}")
    return CIFAR10DVS_CLASSES.index(path.parent.name)


def _int_label(text: str, path: Path) -> int:
    if not (text.isascii() and text.isdigit()):  # str.isdigit() also takes '²', which int() refuses
        raise ValueError(f"event file {path}: label {text!r} (from its path) must be an integer")
    return int(text)


def _tonic_split(path: Path) -> str:
    return {"ibmGestureTrain": "train", "ibmGestureTest": "test"}.get(path.parent.parent.name, "neither")


LAYOUTS: dict[str, tuple[EventLayout, ...]] = {
    "dvs_gesture": (
        EventLayout("DVS128Gesture/events_np", "*/*/*.npz", read_npz_events, lambda p: _int_label(p.parent.name, p),
                    lambda p: p.parent.parent.name, "SpikingJelly's {train,test}/<label 0-10>/*.npz, arrays "
                    "t, x, y, p"),
        EventLayout("DVSGesture", "ibmGesture*/*/*.npy", read_tonic_gesture_npy, lambda p: _int_label(p.stem, p),
                    _tonic_split, "tonic's {ibmGestureTrain,ibmGestureTest}/userNN_<lighting>/<label>.npy, "
                    "(n, 4) arrays x, y, p, t[ms]")),
    "dvs_cifar10": (
        EventLayout("CIFAR10DVS/events_np", "*/*.npz", read_npz_events, _cifar_label, None,
                    "SpikingJelly's <class>/*.npz, arrays t, x, y, p"),
        EventLayout("CIFAR10DVS", "*/*.aedat", read_aedat2_cifar10dvs, _cifar_label, None,
                    "the original <class>/*.aedat, AEDAT 2.0")),
}
SOURCES = {"dvs_gesture": "https://research.ibm.com/interactive/dvsgesture/ (converted by SpikingJelly or tonic)",
           "dvs_cifar10": "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671"}


def find_event_files(name: str, root: Path) -> tuple[EventLayout, list[Path]]:
    """The first layout of LAYOUTS[name] with files under `root`, and its files sorted by path.

    Raises the one-line missing-files ValueError naming every accepted path and format when none has files.
    """
    for lay in LAYOUTS[name]:
        files = sorted((root / lay.folder).glob(lay.pattern))
        if files:
            return lay, files
    expected = " or ".join(f"{root / lay.folder} ({lay.description})" for lay in LAYOUTS[name])
    raise missing(name, expected, "event files", SOURCES[name])


def _split(lay: EventLayout, files: list[Path], labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test file indices: the layout's own split, else a seeded stratified 10 % test split (none of
    either when there are fewer than 2 files: load_event_set then names the counts)."""
    if lay.split is not None:
        parts = np.array([lay.split(f) for f in files])
        return np.flatnonzero(parts == "train"), np.flatnonzero(parts == "test")
    if len(files) < 2:
        return np.arange(len(files)), np.zeros(0, np.int64)
    n_test = max(1, round(CIFAR10DVS_TEST_FRACTION * len(files)))
    return stratified_split(labels, n_test, stream_seed(seed, "split"))


def load_event_set(name: str, seed: int, root, n_frames: int, size: int, split_by: str, binary: bool,
                   n_train: Optional[int], n_test: Optional[int], class_names: tuple[str, ...]) -> Dataset:
    """Find, split, subsample (seeded, stratified; only the kept files are read) and bin event set `name`.
    ValueError for a `binary` that is not a bool (the string "false" would be true) and what check_frames refuses."""
    if not isinstance(binary, bool):
        raise ValueError(f"binary must be true or false, got {binary!r}")
    check_frames(n_frames, SENSOR_HW, size, split_by)
    lay, files = find_event_files(name, data_root(root))
    labels = np.array([lay.label(f) for f in files], dtype=np.int64)
    bad = np.flatnonzero((labels < 0) | (labels >= len(class_names)))
    if len(bad):
        raise ValueError(f"dataset {name}: label of {files[bad[0]]} must be in [0, {len(class_names)})")
    tr, te = _split(lay, files, labels, seed)
    if len(tr) == 0 or len(te) == 0:
        raise ValueError(f"dataset {name}: found {len(tr)} train and {len(te)} test files; both must be > 0")
    tr = tr[subsample_indices(labels[tr], n_train, stream_seed(seed, "train"), "n_train")]
    te = te[subsample_indices(labels[te], n_test, stream_seed(seed, "test"), "n_test")]

    def frames(idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), n_frames, 2, size, size), dtype=np.float32)  # filled in place: one copy in RAM
        for row, i in enumerate(idx):
            events = lay.reader(files[i])  # its errors name the file
            try:
                out[row] = events_to_frames(events, n_frames, SENSOR_HW, size, split_by, binary)
            except ValueError as exc:
                raise ValueError(f"event file {files[i]}: {exc}") from None
        return out

    return make_dataset(name, (frames(tr), labels[tr]), (frames(te), labels[te]), len(class_names),
                        temporal=True, class_names=class_names)


def load_dvs_gesture(seed: int = 0, root: Optional[str | os.PathLike] = None, *, n_frames: int = 16,
                     size: int = 32, split_by: str = "number", binary: bool = False, n_train: Optional[int] = None,
                     n_test: Optional[int] = None) -> Dataset:
    """DVS128-Gesture (Amir et al., CVPR 2017; 11 classes, 128x128 sensor) from local event files.

    Files: <root>/DVS128Gesture/events_np/{train,test}/<label>/*.npz (SpikingJelly's conversion, arrays t, x, y,
    p) or <root>/DVSGesture/{ibmGestureTrain,ibmGestureTest}/userNN_<lighting>/<label>.npy (tonic's, (n, 4)
    columns x, y, p, t in ms). Official split (users 1-23 train, 24-29 test, as the folders hold it).
    x (N, n_frames, 2, size, size) float32 event counts (0/1 with binary), frames by `split_by` ("number":
    equal event counts, "time": equal durations); optional seeded stratified subsets n_train / n_test.
    Raises ValueError naming the expected paths and formats when no file is found, or for bad options.
    """
    return load_event_set("dvs_gesture", seed, root, n_frames, size, split_by, binary, n_train, n_test,
                          GESTURE_CLASSES)


def load_dvs_cifar10(seed: int = 0, root: Optional[str | os.PathLike] = None, *, n_frames: int = 10,
                     size: int = 48, split_by: str = "number", binary: bool = False, n_train: Optional[int] = None,
                     n_test: Optional[int] = None) -> Dataset:
    """CIFAR10-DVS (Li et al., Front. Neurosci. 2017; 10 classes x 1,000 recordings, 128x128) from event files.

    Files: <root>/CIFAR10DVS/events_np/<class>/*.npz (SpikingJelly's conversion) or the original
    <root>/CIFAR10DVS/<class>/*.aedat (AEDAT 2.0), class folders named as CIFAR10DVS_CLASSES. No official split:
    a seeded stratified 10 % test set. Frames as in `load_dvs_gesture` (default 10 frames of 48x48, TET/VGGSNN);
    optional seeded stratified subsets n_train / n_test. Raises ValueError naming the expected paths and formats
    when no file is found, or for bad options.
    """
    return load_event_set("dvs_cifar10", seed, root, n_frames, size, split_by, binary, n_train, n_test,
                          CIFAR10DVS_CLASSES)
