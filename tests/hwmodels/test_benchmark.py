"""Speed of the DES on the default MNIST conv net shape with a synthetic trace (run with -m benchmark)."""
import time

import numpy as np
import pytest

from hwmodels import load_preset, map_network, simulate
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection


def mnist_conv_graph(rng: np.random.Generator) -> NetworkGraph:
    """input 1x28x28 -conv3x3-> lif1 16x28x28 -pool-> 16x14x14 -conv3x3-> lif2 32x14x14 -pool-> 32x7x7 -fc-> 10."""
    pops = [Population("input", (1, 28, 28), NeuronModel(kind="input")), Population("lif1", (16, 28, 28)),
            Population("pool1", (16, 14, 14)), Population("lif2", (32, 14, 14)), Population("pool2", (32, 7, 7)),
            Population("output", (10,))]
    projs = [Projection("conv1", "input", "lif1", "conv", rng.normal(size=(16, 1, 3, 3)), padding=(1, 1)),
             Projection("pool1", "lif1", "pool1", "conv", np.ones((16, 1, 2, 2)), stride=(2, 2), groups=16),
             Projection("conv2", "pool1", "lif2", "conv", rng.normal(size=(32, 16, 3, 3)), padding=(1, 1)),
             Projection("pool2", "lif2", "pool2", "conv", np.ones((32, 1, 2, 2)), stride=(2, 2), groups=32),
             Projection("fc", "pool2", "output", "dense", rng.normal(size=(10, 1568)))]
    return NetworkGraph(pops, projs)


@pytest.mark.benchmark
@pytest.mark.parametrize("rate", [0.05, 0.15])
def test_des_mnist_conv_100_samples_under_20_s(rate):
    rng = np.random.default_rng(0)
    g = mnist_conv_graph(rng)
    tr = EventTrace.from_dense({n: rng.random((100, 4) + p.shape) < rate for n, p in g.populations.items()})
    chip = load_preset("loihi")
    m = map_network(g, chip)
    t0 = time.perf_counter()
    d = simulate(g, tr, chip, m, model="des")
    wall = time.perf_counter() - t0
    a = simulate(g, tr, chip, m, model="analytic")
    print(f"rate {rate}: DES {wall:.2f} s for 100 samples, {d.messages:.0f} messages/inference, "
          f"latency DES {d.latency_s * 1e6:.2f} us vs analytic {a.latency_s * 1e6:.2f} us")
    assert wall < 20.0 and d.latency_s >= a.latency_s and d.energy_j == a.energy_j
