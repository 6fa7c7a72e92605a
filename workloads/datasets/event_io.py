"""Plain numpy readers of DVS event files and the binning of an event stream into polarity frames.

Formats (each reader returns `Events` with int64 t in microseconds, x, y in sensor pixels, p 1 = ON / 0 = OFF):
SpikingJelly's converted ``.npz`` (arrays t, x, y, p), tonic's DVSGesture ``.npy`` ((n, 4) columns x, y, p, t in
ms) and the original CIFAR10-DVS ``.aedat`` (AEDAT 2.0, DVS128 addresses).
"""
from __future__ import annotations

import functools
import zipfile
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np


class Events(NamedTuple):
    """An event stream in time order: t (n,) int64 timestamps in us; x, y (n,) int64 pixel column and row;
    p (n,) int64 polarity, 1 = ON (brighter), 0 = OFF."""

    t: np.ndarray
    x: np.ndarray
    y: np.ndarray
    p: np.ndarray


def _events(t, x, y, p) -> Events:
    """Events of four 1-D arrays of one length, in time order (a file out of order is sorted by t, stably): t, x, y
    whole numbers (integers, or floats holding them), p any real numbers (> 0: ON). ValueError ("events: ...")
    for other shapes, lengths or kinds, or timestamps that are not finite or do not fit int64 microseconds."""
    arrays = {k: np.asarray(a) for k, a in zip("txyp", (t, x, y, p))}
    shapes = {k: a.shape for k, a in arrays.items()}
    if any(a.ndim != 1 for a in arrays.values()) or len({a.shape for a in arrays.values()}) != 1:
        raise ValueError(f"events: t, x, y, p must be 1-D arrays of one length, got shapes {shapes}")
    for k, a in arrays.items():
        if a.dtype.kind not in "iubf":
            raise ValueError(f"events: {k} holds {a.dtype} values, not numbers")
        if a.dtype.kind == "f" and k != "p" and not (np.isfinite(a).all() and (a == np.rint(a)).all()
                                                     and (np.abs(a) < 2.0 ** 62).all()):
            raise ValueError(f"events: {k} holds values that are not finite whole numbers")
    t, x, y = (arrays[k].astype(np.int64) for k in "txy")
    p = (arrays["p"] > 0).astype(np.int64)
    if len(t) > 1 and bool((t[1:] < t[:-1]).any()):  # a file not in time order: put it in time order (stable)
        order = np.argsort(t, kind="stable")
        t, x, y, p = t[order], x[order], y[order], p[order]
    return Events(t, x, y, p)


def names_the_file(reader: Callable[[Path], Events]) -> Callable[[Path], Events]:
    """`reader` with a file it cannot read (not an .npz / .npy, truncated, or holding object arrays, which are
    refused: np.load never unpickles) raising a one-line ValueError naming the file."""
    @functools.wraps(reader)
    def read(path: Path) -> Events:
        try:
            return reader(path)
        except (OSError, EOFError, zipfile.BadZipFile, ValueError) as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if text.startswith(f"event file {path}"):
                raise
            raise ValueError(f"event file {path}: cannot be read ({text[:160]})") from None
    return read


@names_the_file
def read_npz_events(path: Path) -> Events:
    """SpikingJelly's event file (`spikingjelly.datasets` "events_np" folders): an .npz with 1-D arrays t (us),
    x, y, p (0/1). Raises ValueError naming the file and the missing keys."""
    loaded = np.load(path)
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a plain .npy array saved under an .npz name
        raise ValueError(f"event file {path}: holds one {type(loaded).__name__} (a .npy), not an .npz archive of "
                         "arrays t, x, y, p")
    with loaded as f:
        absent = [k for k in "txyp" if k not in f.files]
        if absent:
            raise ValueError(f"event file {path}: npz must hold arrays t, x, y, p; missing {absent}")
        return _events(f["t"], f["x"], f["y"], f["p"])


@names_the_file
def read_tonic_gesture_npy(path: Path) -> Events:
    """tonic's DVSGesture sample (tonic.datasets.DVSGesture, ibmGestureTrain/ibmGestureTest): a .npy array
    (n, 4) with columns x, y, p, t where t is in ms (tonic multiplies it by 1000; so do we, rounding to us).
    Raises ValueError naming the file when the array is not (n, 4)."""
    arr = np.load(path)
    if not isinstance(arr, np.ndarray):  # an .npz archive saved under a .npy name
        arr.close()
        raise ValueError(f"event file {path}: is an .npz archive, not one .npy array (n, 4) of x, y, p, t")
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"event file {path}: expected an (n, 4) array of x, y, p, t, got shape {arr.shape}")
    return _events(np.rint(arr[:, 3].astype(np.float64) * 1000.0), arr[:, 0], arr[:, 1], arr[:, 2])


@names_the_file
def read_aedat2_cifar10dvs(path: Path) -> Events:
    """An original CIFAR10-DVS recording (Li et al. 2017, figshare): AEDAT 2.0 (jAER) — header lines starting
    with '#', then big-endian uint32 pairs (address, timestamp in us). DVS128 address bits: x_raw = bits 1-7,
    y_raw = bits 8-14, p_raw = bit 0. Mapped as SpikingJelly does (datasets.cifar10_dvs._load_origin_data):
    x = 127 - y_raw, y = 127 - x_raw, p = 1 - p_raw, so these files and SpikingJelly's .npz of them agree.
    Raises ValueError naming the file when the body is not a whole number of 8-byte events."""
    data = Path(path).read_bytes()
    if not data:
        raise ValueError(f"event file {path}: is empty (an AEDAT 2.0 recording starts with its '#!AER-DAT' header)")
    pos = 0
    while data[pos:pos + 1] == b"#":
        end = data.find(b"\n", pos)
        pos = len(data) if end < 0 else end + 1
    if (len(data) - pos) % 8:
        raise ValueError(f"event file {path}: AEDAT 2.0 body of {len(data) - pos} bytes is not a multiple of 8")
    words = np.frombuffer(data, dtype=">u4", offset=pos).astype(np.int64)
    addr, t = words[0::2], words[1::2]
    x_raw, y_raw, p_raw = (addr >> 1) & 0x7F, (addr >> 8) & 0x7F, addr & 1
    return _events(t, 127 - y_raw, 127 - x_raw, 1 - p_raw)


def _bins_by_number(ev: Events, n_frames: int) -> np.ndarray:
    """Equal event counts: event i (time order) goes to frame floor(i * T / n) (counts differ by at most 1)."""
    n = len(ev.t)
    return np.arange(n, dtype=np.int64) * n_frames // max(n, 1)


def _bins_by_time(ev: Events, n_frames: int) -> np.ndarray:
    """Equal durations: frame floor(T * (t - t_first) / (t_last - t_first + 1)), t in integer us."""
    if len(ev.t) == 0:
        return np.zeros(0, dtype=np.int64)
    t0, t1 = int(ev.t.min()), int(ev.t.max())
    if (t1 - t0 + 1) * n_frames >= 2 ** 63:
        raise ValueError(f"events: timestamps span {t1 - t0} us, too long to split into {n_frames} frames by time")
    return (ev.t - t0) * n_frames // (t1 - t0 + 1)


#: split_by -> frame index of every event, after the two modes of SpikingJelly's
#: integrate_events_by_fixed_frames_number: equal event counts (_bins_by_number: counts differ by at most 1) or
#: equal durations (_bins_by_time); SpikingJelly gives the remainder of N / T to its last frame, so frames made
#: from the same events differ from its own in the last few events of some frames
FRAME_SPLITS: dict[str, Callable[[Events, int], np.ndarray]] = {"number": _bins_by_number, "time": _bins_by_time}


def check_frames(n_frames: int, sensor_hw: tuple[int, int], size: int, split_by: str) -> None:
    """Raise ValueError naming the option unless split_by is in FRAME_SPLITS, n_frames >= 1 and
    1 <= size <= min(sensor_hw)."""
    if split_by not in FRAME_SPLITS:
        raise ValueError(f"split_by must be one of {sorted(FRAME_SPLITS)}, got {split_by!r}")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if not 1 <= size <= min(sensor_hw):
        raise ValueError(f"size must be in [1, {min(sensor_hw)}], got {size}")


def events_to_frames(ev: Events, n_frames: int, sensor_hw: tuple[int, int], size: int, split_by: str = "number",
                     binary: bool = False) -> np.ndarray:
    """Bin an event stream into frames (T, 2, size, size) float32: event counts per frame, polarity channel
    (0 = OFF, 1 = ON) and output pixel; 0/1 (any event) when `binary`.

    Frames: `split_by` in FRAME_SPLITS. Space: sensor pixel (x, y) of a (H, W) sensor lands in output pixel
    (y * size // H, x * size // W), i.e. sum pooling over size/H-wide blocks (exact integer pooling when size
    divides H and W, e.g. 128 -> 32; for 128 -> 48 the blocks are 2 or 3 pixels wide).
    Raises ValueError for a bad n_frames, size or split_by, or events outside the sensor.
    """
    check_frames(n_frames, sensor_hw, size, split_by)
    (h, w), t = sensor_hw, n_frames
    outside = (ev.x < 0) | (ev.x >= w) | (ev.y < 0) | (ev.y >= h)
    if outside.any():
        raise ValueError(f"events: {int(outside.sum())} events lie outside the {w}x{h} sensor")
    k = FRAME_SPLITS[split_by](ev, t)
    flat = ((k * 2 + ev.p) * size + ev.y * size // h) * size + ev.x * size // w
    frames = np.bincount(flat, minlength=t * 2 * size * size).reshape(t, 2, size, size).astype(np.float32)
    return np.minimum(frames, 1.0) if binary else frames
