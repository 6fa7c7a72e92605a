"""Event-camera emulation of the shipped MNIST-5k ("mnist_dvs_emu"): each digit moves over a slightly larger
canvas and an ideal DVS pixel turns log-intensity changes into ON/OFF events, binned per step into frames, so
DVS-style networks (2 polarity channels) run on shipped data."""
from __future__ import annotations

import math
import os
from typing import Callable, Optional

import numpy as np

from workloads.datasets.base import Dataset, make_dataset, stream_seed
from workloads.datasets.images import load_mnist5k

#: samples emulated at once (bounds the float64 video held in memory to ~40 MB at T=8, 32x32)
CHUNK = 500


def lin_log(intensity: np.ndarray, threshold_dn: float = 20.0) -> np.ndarray:
    """v2e's photoreceptor response (Hu, Liu & Delbruck, CVPRW 2021, `v2ecore.emulator_utils.lin_log`): with
    DN = 255 * intensity (intensity in [0, 1]), L = DN * ln(thr) / thr for DN <= thr, else ln(DN); linear near
    black (no log(0)), continuous at thr = 20 DN. Returns float64 of the input's shape."""
    dn = 255.0 * np.asarray(intensity, dtype=np.float64)
    return np.where(dn <= threshold_dn, dn * (math.log(threshold_dn) / threshold_dn),
                    np.log(np.maximum(dn, threshold_dn)))


def dvs_events(video: np.ndarray, contrast_threshold: float = 0.2) -> np.ndarray:
    """Ideal DVS pixels (Lichtsteiner, Posch & Delbruck, IEEE JSSC 2008; the ESIM/v2e model without noise,
    refractory period or threshold mismatch) on a video (N, T+1, H, W) of intensities in [0, 1].

    Each pixel memorises the log intensity L_ref at its last event (initially frame 0). At step t = 1..T it
    emits n = trunc((L_t - L_ref) / C) events, ON if n > 0 and OFF if n < 0, and moves L_ref by n * C, so
    sub-threshold changes accumulate across steps. Returns event counts (N, T, 2, H, W) float32, channel 0 =
    OFF, 1 = ON (frame t-1 holds the events of step t). Raises ValueError unless C > 0 and T >= 1.
    """
    if contrast_threshold <= 0 or video.ndim != 4 or video.shape[1] < 2:
        raise ValueError(f"dvs_events: need contrast_threshold > 0 and video (N, T+1 >= 2, H, W), got "
                         f"{contrast_threshold} and shape {video.shape}")
    log_i = lin_log(video)
    ref = log_i[:, 0].copy()
    n_s, n_t1, h, w = video.shape
    out = np.zeros((n_s, n_t1 - 1, 2, h, w), dtype=np.float32)
    for t in range(1, n_t1):
        n = np.trunc((log_i[:, t] - ref) / contrast_threshold)
        out[:, t - 1, 0], out[:, t - 1, 1] = np.maximum(-n, 0), np.maximum(n, 0)
        ref += n * contrast_threshold
    return out


def random_walk(n: int, n_steps: int, margin: int, rng: np.random.Generator) -> np.ndarray:
    """Per-sample integer offsets (n, n_steps+1, 2) as (row, col) in [0, margin]: start at the centre
    (margin // 2), each step one of the 8 neighbouring moves drawn uniformly; a move that would leave the range
    is reversed on that axis (reflection). Every step moves the image by one pixel in each moved axis."""
    moves = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)])
    draws = moves[rng.integers(0, len(moves), size=(n, n_steps))]
    pos = np.empty((n, n_steps + 1, 2), dtype=np.int64)
    pos[:, 0] = margin // 2
    for t in range(n_steps):
        step = pos[:, t] + draws[:, t]
        pos[:, t + 1] = np.where((step < 0) | (step > margin), pos[:, t] - draws[:, t], step)
    return pos


def triangle(n: int, n_steps: int, margin: int, rng: np.random.Generator) -> np.ndarray:
    """The same offsets for every sample (rng unused), a small version of N-MNIST's three saccades (Orchard et
    al. 2015): from the centre, repeat right, down-left, up, tracing a triangle of one-pixel sides."""
    cycle = np.array([(0, 1), (1, -1), (-1, 0)])
    steps = cycle[np.arange(n_steps) % 3]
    path = np.concatenate([np.zeros((1, 2), dtype=np.int64), np.cumsum(steps, axis=0)]) + margin // 2
    return np.broadcast_to(path, (n, n_steps + 1, 2)).copy()


TRAJECTORIES: dict[str, Callable[[int, int, int, np.random.Generator], np.ndarray]] = {
    "random_walk": random_walk, "triangle": triangle}


def render_video(images: np.ndarray, offsets: np.ndarray, size: int) -> np.ndarray:
    """Place images (N, h, w) on black size x size canvases at offsets (N, T+1, 2) (row, col of the top-left
    corner): returns (N, T+1, size, size) float64. Raises ValueError when an image leaves the canvas."""
    n, h, w = images.shape
    if offsets.min() < 0 or offsets[..., 0].max() + h > size or offsets[..., 1].max() + w > size:
        raise ValueError(f"offsets: images of {h}x{w} must stay inside the {size}x{size} canvas")
    video = np.zeros((n, offsets.shape[1], size, size))
    for oy, ox in np.unique(offsets.reshape(-1, 2), axis=0):
        i, t = np.nonzero((offsets[..., 0] == oy) & (offsets[..., 1] == ox))
        video[i, t, oy:oy + h, ox:ox + w] = images[i]
    return video


def check_emulation(n_frames: int, size: int, image_size: int, contrast_threshold: float, trajectory: str) -> None:
    """Raise ValueError naming the option unless trajectory is in TRAJECTORIES, n_frames >= 1, C > 0 and the
    size x size canvas leaves room to move an image_size image (size > image_size)."""
    if trajectory not in TRAJECTORIES:
        raise ValueError(f"trajectory must be one of {sorted(TRAJECTORIES)}, got {trajectory!r}")
    checks = {"n_frames": n_frames >= 1, "size": size > image_size, "contrast_threshold": contrast_threshold > 0}
    for field, ok in checks.items():
        if not ok:
            raise ValueError(f"{field} out of range (n_frames >= 1, size > {image_size}, contrast_threshold > 0): "
                             f"n_frames={n_frames}, size={size}, contrast_threshold={contrast_threshold}")


def emulate_dvs(images: np.ndarray, n_frames: int, size: int, contrast_threshold: float, trajectory: str,
                rng: np.random.Generator, binary: bool = False) -> np.ndarray:
    """Event frames (N, n_frames, 2, size, size) float32 of images (N, h, w) in [0, 1] moving along
    TRAJECTORIES[trajectory] (n_frames steps, offsets from `rng`) inside size x size: `dvs_events` counts, or 0/1
    when `binary`. Deterministic given the rng state. Raises ValueError for a bad trajectory, n_frames < 1 or a
    canvas that leaves no room to move (size <= h or w)."""
    n, h, w = images.shape
    check_emulation(n_frames, size, max(h, w), contrast_threshold, trajectory)
    offsets = TRAJECTORIES[trajectory](n, n_frames, size - max(h, w), rng)
    out = np.zeros((n, n_frames, 2, size, size), dtype=np.float32)
    for s in range(0, n, CHUNK):
        out[s:s + CHUNK] = dvs_events(render_video(images[s:s + CHUNK], offsets[s:s + CHUNK], size),
                                      contrast_threshold)
    return np.minimum(out, 1.0) if binary else out


def load_mnist_dvs_emu(seed: int = 0, root: Optional[str | os.PathLike] = None, *, n_frames: int = 8,
                       size: int = 32, contrast_threshold: float = 0.2, trajectory: str = "random_walk",
                       binary: bool = False, n_train: Optional[int] = None, n_test: Optional[int] = None) -> Dataset:
    """MNIST-5k seen by an emulated event camera; `root` unused (shipped data).

    The mnist5k split of `seed` (4,000 / 1,000, optional stratified subsets n_train / n_test), each digit moved
    over n_frames steps inside a size x size canvas (`emulate_dvs`; trajectories drawn from the
    "trajectory_train" / "trajectory_test" streams of `seed`). x: (N, n_frames, 2, size, size) float32 event
    counts per step (channel 0 OFF, 1 ON; 0/1 when `binary`). Defaults: C = 0.2 (v2e's default threshold),
    32x32 so workloads.models "sca_dvs" takes it as in_shape (2, 32, 32). Same seed, same frames.
    Raises ValueError for a bad option (`check_emulation`, n_train / n_test) before any work.
    """
    check_emulation(n_frames, size, 28, contrast_threshold, trajectory)
    ds = load_mnist5k(seed, n_train=n_train, n_test=n_test)

    def frames(x, stream: str) -> np.ndarray:
        rng = np.random.default_rng(stream_seed(seed, stream))
        return emulate_dvs(x[:, 0].numpy(), n_frames, size, contrast_threshold, trajectory, rng, binary)

    return make_dataset("mnist_dvs_emu", (frames(ds.x_train, "trajectory_train"), ds.y_train.numpy()),
                        (frames(ds.x_test, "trajectory_test"), ds.y_test.numpy()), ds.n_classes, temporal=True,
                        class_names=ds.class_names)
