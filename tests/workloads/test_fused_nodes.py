"""The fused IF/LIF recording (workloads.lowering.fused, node_kernel) against SpikingJelly's own nodes: spikes,
final potential and activity rows bit for bit, the fallback to the node's forward, and the node given back its
own forward after the recording."""
import zlib

import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, neuron

from workloads import lower
from workloads.lowering import activity
from workloads.lowering.activity import Capture, Probes, node_activity
from workloads.lowering.fused import FusedForward, fusable
from workloads.lowering.jobs import Jobs
from workloads.lowering.node_kernel import node_rows
from workloads.models import build_model


def _current(seed: int, shape, threshold: float) -> torch.Tensor:
    """Seeded float32 input current with exact zeros, exact threshold hits, a -0.0, a NaN and infinities."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 0.8
    x[torch.rand(shape, generator=g) < 0.3] = 0.0
    hits = torch.rand(shape, generator=g) < 0.05
    x[hits] = threshold
    flat = x.view(-1)
    flat[:4] = torch.tensor([-0.0, float("nan"), float("inf"), -float("inf")])
    return x.contiguous()


def _node(kind: str, v_reset, tau: float, threshold: float, decay_input: bool):
    if kind == "IF":
        return neuron.IFNode(v_threshold=threshold, v_reset=v_reset, step_mode="m")
    if kind == "PLIF":  # w = -log(tau - 1), then moved off the init so sigmoid(w) is not a round number
        node = neuron.ParametricLIFNode(init_tau=tau, decay_input=decay_input, v_threshold=threshold,
                                        v_reset=v_reset, step_mode="m")
        node.w.data += 0.1234567
        return node
    return neuron.LIFNode(tau=tau, decay_input=decay_input, v_threshold=threshold, v_reset=v_reset, step_mode="m")


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.int32) if t.dtype == torch.float32 else t


@pytest.mark.parametrize("kind,decay_input", [("IF", True), ("LIF", True), ("LIF", False), ("PLIF", True),
                                               ("PLIF", False)])
@pytest.mark.parametrize("v_reset", [0.0, None, -0.25])
@pytest.mark.parametrize("tau,threshold", [(2.0, 1.0), (3.0, 0.3), (1.7, 0.9)])
@pytest.mark.parametrize("start", ["rest", "tensor"])
def test_fused_node_equals_spikingjelly_bit_for_bit(kind, decay_input, v_reset, tau, threshold, start):
    x = _current(zlib.crc32(repr((kind, decay_input, v_reset, tau)).encode()) % 1000, (4, 3, 5, 7), threshold)
    ref, fused = _node(kind, v_reset, tau, threshold, decay_input), _node(kind, v_reset, tau, threshold, decay_input)
    ref.store_v_seq = True
    if start == "tensor":  # a potential left by an earlier run, as a node that was not reset holds it
        warm = _current(7, (2, 3, 5, 7), threshold)
        with torch.no_grad():
            ref(warm), fused(warm)
    v0 = ref.v
    with torch.no_grad():
        want_spikes = ref(x)
        rows = {}
        f = FusedForward(fused, "p", rows)
        f.install()
        got_spikes = fused(x)
        f.remove()
    rest = 0.0 if v_reset is None else v_reset
    want_act = node_activity(x, v0, ref.v_seq, want_spikes, v_reset)
    got_act = rows["p"]
    activity._first_row(got_act, v0, x.shape[1:], rest)
    assert torch.equal(_bits(got_spikes), _bits(want_spikes))
    assert torch.equal(_bits(fused.v), _bits(ref.v))
    assert torch.equal(got_act, want_act)
    assert fused.v_seq is None and "multi_step_forward" not in fused.__dict__


def test_node_rows_split_over_threads_equals_one_pass():
    x = _current(3, (4, 10_001), 1.0).numpy()
    v0 = np.zeros(10_001, np.float32)
    one = node_rows(x, v0, 1, 2.0, 1.0, 0.0)
    with Jobs(3) as jobs:
        split = node_rows(x, v0, 1, 2.0, 1.0, 0.0, parts=3, run=jobs.map)
    for a, b in zip(one, split):
        assert a.tobytes() == b.tobytes()
    assert not np.any(v0)  # the start potential is copied, not stepped in place


@pytest.mark.parametrize("case", ["float64", "strided", "stale"])
def test_other_inputs_take_the_node_forward(case):
    node, ref = neuron.LIFNode(step_mode="m"), neuron.LIFNode(step_mode="m")
    x = _current(4, (3, 6, 8), 1.0)
    if case == "float64":
        x = x.double()
    elif case == "strided":
        x = x.transpose(1, 2)
    else:
        node.v = ref.v = torch.zeros(2)  # stale: SpikingJelly replaces it by rest
    rows = {}
    f = FusedForward(node, "p", rows)
    f.install()
    with torch.no_grad():
        got, want = node(x), ref(x)
    f.remove()
    assert torch.equal(got, want) and "p" not in rows


def test_fusable_only_for_plain_multi_step_if_lif_and_plif():
    class MyLIF(neuron.LIFNode):
        pass
    assert fusable(neuron.LIFNode(step_mode="m")) and fusable(neuron.IFNode(v_reset=None, step_mode="m"))
    assert not fusable(neuron.LIFNode(step_mode="s"))
    assert fusable(neuron.ParametricLIFNode(step_mode="m"))
    per_neuron = neuron.ParametricLIFNode(step_mode="m")
    per_neuron.w = torch.nn.Parameter(torch.zeros(3))  # one w per neuron: not SpikingJelly's shared factor
    assert not fusable(per_neuron)
    assert not fusable(MyLIF(step_mode="m"))
    patched = neuron.LIFNode(step_mode="m")
    patched.multi_step_forward = lambda x: x  # an instance's own forward: its dynamics are not SpikingJelly's
    assert not fusable(patched)


def test_capture_gives_the_node_its_forward_back_after_an_error():
    node = neuron.LIFNode(step_mode="m")
    probes = Probes(spikes={"p": node}, nodes={"p": (node, lambda t, a: t)})

    def sink(pop, values, rows):
        raise RuntimeError("sink failed")
    with pytest.raises(RuntimeError, match="sink failed"), torch.no_grad(), Capture(probes, sink):
        assert "multi_step_forward" in node.__dict__
        node(torch.ones(2, 3))
    assert "multi_step_forward" not in node.__dict__ and node.store_v_seq is False


def test_lower_with_fused_nodes_equals_lower_with_spikingjelly_nodes(monkeypatch):
    model = build_model("mnist_conv", (1, 28, 28), 10, neuron="LIF", tau=2.0, seed=0)
    x = torch.rand(4, 6, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 2
    g1, t1 = lower(model, x, batch_size=4)
    assert all("multi_step_forward" not in m.__dict__ for m in model.modules())
    monkeypatch.setattr(activity, "fusable", lambda m: False)
    functional.reset_net(model)
    g2, t2 = lower(model, x, batch_size=4)
    assert g1.fingerprint() == g2.fingerprint()
    for a, b in [(t1.offsets, t2.offsets), (t1.indices, t2.indices), (t1.values, t2.values)]:
        assert (a is None and b is None) or np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert t1.activity.keys() == t2.activity.keys()
    assert all(np.array_equal(t1.activity[k], t2.activity[k]) for k in t1.activity)
