"""Shared builders for the hwmodels tests: small hand-built graphs, random traces, brute-force unrolling."""
import mmap

import numpy as np
import pytest

from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection

INPUT = NeuronModel(kind="input")
#: Loihi overrides that charge Davies' compartment updates the window way (every neuron of a population updated in
#: each step of its window at the active (spiking) / inactive cost, no separate access, no leakage): the hand
#: computations of the timing tests below use these simple per-step sums
WINDOW_RULE = {"core.neuron_access_rule": "window", "core.neuron_update_rule": "all",
               "core.neuron_access_energy_j": 0.0, "core.neuron_access_latency_s": 0.0,
               "core.neuron_active_energy_j": 81e-12, "core.neuron_inactive_energy_j": 52e-12,
               "core.neuron_active_latency_s": 8.4e-9, "core.neuron_inactive_latency_s": 5.3e-9,
               "core.static_power_w": 0.0}


def unroll(proj: Projection, src_shape: tuple, dst_shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(weights, in-bounds mask), both (n_target, n_source), by explicit loops over a conv's taps."""
    if proj.kind == "dense":
        return proj.weight.astype(float), np.ones(proj.weight.shape, bool)
    c_out, c_in_g, kh, kw = proj.weight.shape
    _, h, w = src_shape
    _, ho, wo = dst_shape
    wmat = np.zeros((int(np.prod(dst_shape)), int(np.prod(src_shape))))
    inb = np.zeros(wmat.shape, bool)
    per_g = c_out // proj.groups
    for o in range(c_out):
        for ci in range(c_in_g):
            c = (o // per_g) * c_in_g + ci
            for ky in range(kh):
                for kx in range(kw):
                    for oy in range(ho):
                        for ox in range(wo):
                            y = oy * proj.stride[0] - proj.padding[0] + ky * proj.dilation[0]
                            x = ox * proj.stride[1] - proj.padding[1] + kx * proj.dilation[1]
                            if 0 <= y < h and 0 <= x < w:
                                t, s = (o * ho + oy) * wo + ox, (c * h + y) * w + x
                                wmat[t, s] = proj.weight[o, ci, ky, kx]
                                inb[t, s] = True
    return wmat, inb


def mixed_graph(rng: np.random.Generator) -> NetworkGraph:
    """input (2,6,6) -conv(pad 1, zeros in kernel)-> c1 (4,6,6) -pool as grouped conv stride 2-> p1 (4,3,3)
    -dense sparse storage (half zeros)-> d1 (20,) -dense dense storage (some zeros)-> out (5,)."""
    w1 = rng.normal(size=(4, 2, 3, 3)) * (rng.random((4, 2, 3, 3)) < 0.7)
    w3 = rng.normal(size=(20, 36)) * (rng.random((20, 36)) < 0.5)
    w4 = rng.normal(size=(5, 20)) * (rng.random((5, 20)) < 0.8)
    pops = [Population("in", (2, 6, 6), INPUT), Population("c1", (4, 6, 6)), Population("p1", (4, 3, 3)),
            Population("d1", (20,)), Population("out", (5,))]
    projs = [Projection("conv", "in", "c1", "conv", w1, padding=(1, 1), weight_bits=4),
             Projection("pool", "c1", "p1", "conv", np.full((4, 1, 2, 2), 0.25), stride=(2, 2), groups=4),
             Projection("fc1", "p1", "d1", "dense", w3, storage="sparse"),
             Projection("fc2", "d1", "out", "dense", w4)]
    return NetworkGraph(pops, projs)


def random_trace(graph: NetworkGraph, rng: np.random.Generator, n_samples: int, n_timesteps: int,
                 rate: float) -> EventTrace:
    """Bernoulli(rate) spikes for every population of `graph`."""
    return EventTrace.from_dense({n: rng.random((n_samples, n_timesteps) + p.shape) < rate
                                  for n, p in graph.populations.items()})


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def nets():
    """The builders of this file (conftest modules are not importable by name across test folders)."""
    from types import SimpleNamespace
    return SimpleNamespace(unroll=unroll, mixed_graph=mixed_graph, random_trace=random_trace, INPUT=INPUT,
                           WINDOW=WINDOW_RULE)


def mapped(a: np.ndarray) -> bool:
    """Whether `a`'s memory is an mmap.mmap (through its chain of bases and memoryviews)."""
    b = a
    while b is not None:
        if isinstance(b, mmap.mmap) or (isinstance(b, memoryview) and isinstance(b.obj, mmap.mmap)):
            return True
        b = getattr(b, "base", None)
    return False
