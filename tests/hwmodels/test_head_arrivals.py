"""Network.head_arrival_s (the compiled contention-free head arrivals of hwmodels.kernels.arrivals) against the
numpy expression it replaced, ready + path_latency_s + link time, bit for bit, on one chip and across
chip-to-chip links, and by hand."""
import numpy as np
import pytest

from hwmodels import load_preset, map_network
from hwmodels.events.network import Network
from hwmodels.trace import NetworkGraph, NeuronModel, Population


def _network(multichip: bool) -> Network:
    over = {"core.neurons_per_core": 16, "mesh_width": 3, "mesh_height": 2, "cores_per_tile": 4}
    if multichip:
        over.update({"mesh_width": 2, "mesh_height": 1, "n_chips": 4, "router.chip_link_latency_s": 20e-9,
                     "router.chip_link_energy_j": 10e-12})
    chip = load_preset("loihi", over)
    return Network(map_network(NetworkGraph([Population("a", (16 * 20,), NeuronModel())], []), chip), chip)


@pytest.mark.parametrize("multichip", [False, True])
def test_head_arrivals_equal_the_numpy_expression(rng, multichip):
    net = _network(multichip)
    n_cores, n_flows = len(net.tiles), 200
    ready, src = rng.random(n_flows) * 1e-6, rng.integers(0, n_cores, n_flows)
    flow, dst = rng.integers(0, n_flows, 1000), rng.integers(0, n_cores, 1000)
    got = net.head_arrival_s(ready, flow, src, dst, 3.7e-9)
    want = ready[flow] + net.path_latency_s(src[flow], dst) + 3.7e-9
    assert got.dtype == np.float64 and np.array_equal(got, want)
    assert not multichip or (net.path_latency_s(src[flow], dst) > 20e-9).any()  # chip links crossed


def test_head_arrival_by_hand():
    net = _network(False)
    r = net.chip.router
    (x0, y0), (x1, y1) = net.tiles[0], net.tiles[-1]
    want = 1e-6 + (abs(x1 - x0) * r.hop_latency_ew_s + abs(y1 - y0) * r.hop_latency_ns_s) + 2e-9
    got = net.head_arrival_s(np.array([1e-6]), np.array([0]), np.array([0]), np.array([len(net.tiles) - 1]), 2e-9)
    assert (x1, y1) != (x0, y0) and got[0] == pytest.approx(want, rel=1e-12)
