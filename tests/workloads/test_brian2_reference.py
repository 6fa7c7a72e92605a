"""Reference: the discrete-time neurons lowering uses (SpikingJelly LIFNode with decay_input=True and hard reset to 0,
IFNode) give the same spike trains and final potentials as the same difference equation run by Brian2 (one
Brian2 step = one timestep, applied with run_regularly, threshold v >= theta, reset v = v_reset), on the same
random input currents."""
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import neuron

b2 = pytest.importorskip("brian2")

T, N = 300, 16


@pytest.fixture
def brian2_numpy():
    """numpy code generation (no compiler) and no loop-invariant optimisation (Brian2 would otherwise precompute
    1/tau and round differently from v + (x - (v - v_reset)) / tau); prefs restored afterwards."""
    old = (b2.prefs.codegen.target, b2.prefs.codegen.loop_invariant_optimisations)
    b2.prefs.codegen.target = "numpy"
    b2.prefs.codegen.loop_invariant_optimisations = False
    yield
    b2.prefs.codegen.target, b2.prefs.codegen.loop_invariant_optimisations = old


def _brian2_run(currents: np.ndarray, update: str, theta: float, namespace: dict) -> tuple[np.ndarray, np.ndarray]:
    """Spikes (T, N) and final v of a Brian2 group applying `update` once per step (dt = 1 ms = one timestep)."""
    dt = 1 * b2.ms
    drive = b2.TimedArray(currents, dt=dt)
    group = b2.NeuronGroup(currents.shape[1], "v : 1", threshold="v >= theta", reset="v = v_reset", dt=dt,
                           namespace=dict(namespace, I=drive, theta=theta))
    group.run_regularly(update, dt=dt)
    mon = b2.SpikeMonitor(group)
    b2.Network(group, mon).run(currents.shape[0] * dt)
    spikes = np.zeros(currents.shape)
    spikes[np.rint(np.asarray(mon.t / dt)).astype(int), np.asarray(mon.i)] = 1.0
    return spikes, np.asarray(group.v[:])


def _currents(seed: int, low: float, high: float) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, (T, N))


@pytest.mark.parametrize("tau,theta", [(2.0, 1.0), (3.0, 0.7), (10.0, 0.5)])
def test_lif_matches_brian2_difference_equation(brian2_numpy, tau, theta):
    x = _currents(int(tau), -0.5, 1.5)
    node = neuron.LIFNode(tau=tau, decay_input=True, v_threshold=theta, v_reset=0.0, step_mode="m")
    sj = node(torch.tensor(x)).numpy()
    ref, v_end = _brian2_run(x, "v = v + (I(t, i) - (v - v_reset)) / tau", theta, {"tau": tau, "v_reset": 0.0})
    assert 0.02 * T * N < ref.sum() < 0.8 * T * N  # neither silent nor saturated
    np.testing.assert_array_equal(sj, ref)
    np.testing.assert_array_equal(node.v.numpy(), v_end)


def test_if_matches_brian2_difference_equation(brian2_numpy):
    x = _currents(7, -0.3, 0.6)
    node = neuron.IFNode(v_threshold=1.0, v_reset=0.0, step_mode="m")
    sj = node(torch.tensor(x)).numpy()
    ref, v_end = _brian2_run(x, "v = v + I(t, i)", 1.0, {"v_reset": 0.0})
    assert 0.05 * T * N < ref.sum() < 0.8 * T * N
    np.testing.assert_array_equal(sj, ref)
    np.testing.assert_array_equal(node.v.numpy(), v_end)
