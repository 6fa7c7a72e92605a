"""Tests of workloads.lowering (fx): lowering of spiking ResNets (post-activation and pre-activation blocks) and
Spikformer (SpikeAttention, BinaryAttention, DSP low-rank layers) through torch.fx.

Exactness: replaying the recorded spikes through every lowered projection (gated projections with their gate's
recorded values) reproduces the input current the model's own neuron layers receive, and every relay's recorded
value. Attention events: hwmodels counts equal independent counts from the spike tensors.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

import hwmodels
from hwmodels.mapping.connectivity import synaptic_events
from hwmodels.trace import EventTrace, NetworkGraph
from workloads.compression.binary import swap_attention
from workloads.compression.dsp import factorize
from workloads.lowering import lower
from workloads.models import NeuronSpec, build_model
from workloads.models.blocks import conv_bn_sn
from workloads.models.resnet import BasicBlock, PreActBlock, SpikingResNet, conv_bn, pool_fc_head, resnet_stages
from seeded import seeded_init, Wrap

T, N = 2, 3
SN = NeuronSpec("LIF", 2.0, 1.0)


def _spikes(shape, p: float, seed: int) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < p).float()


def _resnet19_tiny() -> SpikingResNet:
    """ResNet19's blocks at widths 4/8: two identity-shortcut blocks, then a stride-2 block with a 1x1 conv+BN
    shortcut; stem conv-BN-LIF, head avg-pool + Linear."""
    net = SpikingResNet(nn.Sequential(*conv_bn_sn(2, 4, SN)), resnet_stages(BasicBlock, 4, (4, 8), (2, 1), SN),
                        nn.Sequential(*pool_fc_head(8, 5)))
    return seeded_init(net, seed=1)


def _resnet19_low_rank() -> SpikingResNet:
    """_resnet19_tiny with block 1's conv2 as a DSP rank-2 pair (3x3 conv to 2 relay channels, 1x1 conv)."""
    net = _resnet19_tiny()
    block = net.stages.layer1[0]
    block.conv2 = factorize(block.conv2, 2)
    return net


def _preact_tiny() -> SpikingResNet:
    """Pre-activation ResNet at widths 4/8 (stem conv without BN/SN, final BN-LIF, avg-pool, Linear)."""
    head = nn.Sequential(layer.BatchNorm2d(8, step_mode="m"), SN(), *pool_fc_head(8, 5))
    net = SpikingResNet(nn.Sequential(conv_bn(2, 4, 3, 1)), resnet_stages(PreActBlock, 4, (4, 8), (2, 1), SN), head)
    return seeded_init(net, seed=2)


def _spikformer_tiny(seed: int = 3) -> nn.Module:
    """Spikformer depth 1, D 16, 2 heads on 2x16x16 inputs: 4x4 = 16 tokens, dh = 8."""
    return seeded_init(build_model("spikformer", (2, 16, 16), 5, seed=0, depth=1, dim=16, heads=2), seed=seed, gain=4.0)


def _reference(model: nn.Module, x: torch.Tensor):
    """Independent of the lowering: every neuron's input current and output spikes, by module name, and y."""
    rec, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, neuron.BaseNode):
            def hook(mod, args, out, name=name):
                rec[name] = (args[0].clone(), out.clone())
            handles.append(m.register_forward_hook(hook))
    functional.reset_net(model)
    with torch.no_grad():
        y = model(x)
    functional.reset_net(model)
    for h in handles:
        h.remove()
    return rec, y


def _values(graph, trace, x, pop: str) -> torch.Tensor:
    """(T, N, n) float64 values of `pop` read back from the trace (the input from x)."""
    if pop == "input":
        return x.reshape(T, x.shape[1], -1).double()
    dense = trace.to_dense(pop, graph.populations[pop].shape)
    return torch.from_numpy(dense).transpose(0, 1).reshape(T, trace.n_samples, -1).double()


def _replay(graph, trace, x, proj) -> torch.Tensor:
    """Input current (T, N, n_target) that `proj` delivers, computed from the recorded values (gated: per (t, n)
    the weight times the gate's values at that step)."""
    src_pop, tgt = graph.populations[proj.source], graph.populations[proj.target]
    s = _values(graph, trace, x, proj.source)
    w = torch.from_numpy(proj.weight).double()
    gates = None if proj.gate is None else _values(graph, trace, x, proj.gate)
    out = torch.zeros(T, s.shape[1], tgt.size, dtype=torch.float64)
    for t in range(T):
        for n in range(s.shape[1]):
            wt = w if gates is None else w * gates[t, n][torch.from_numpy(proj.gate_index)]
            if proj.kind == "conv":
                c = F.conv2d(s[t, n].reshape((1,) + src_pop.shape), wt, None, proj.stride, proj.padding,
                             proj.dilation, proj.groups)
                out[t, n] = c.reshape(-1)
            else:
                out[t, n] = wt @ s[t, n]
    return out + (0.0 if proj.bias is None else torch.from_numpy(proj.bias).double())


def _model_input(graph, rec, y, pop: str) -> torch.Tensor | None:
    """What the model's own layer behind `pop` received: neuron input current (channel-major for tokens)."""
    if pop == "output":
        return y.reshape(T, y.shape[1], -1).double()
    tag = graph.metadata["layers"]["populations"][pop][0]
    name = tag.split(":")[0]
    if name not in rec:
        return None
    cur = rec[name][0]
    if cur.dim() == 4 or name.endswith("map_sn"):  # tokens (T, N, L, D) -> (D, L); attention map (h, L_q, L_k)
        cur = cur.transpose(-1, -2)
    return cur.reshape(T, cur.shape[1], -1).double()


def _check_replay(model, x):
    """Every population's input = the sum of its projections' replays (relays: their recorded value; neurons: the
    model's own input current). Returns (graph, trace, rec, number of populations checked)."""
    graph, trace = lower(model, x, batch_size=2)
    rec, y = _reference(model, x)
    checked = 0
    for pop in graph.populations.values():
        projs = graph.in_projections(pop.name)
        if not projs or graph.metadata["origin"][projs[0].name] == "MaxPool2d":
            continue
        assert all(_values(graph, trace, x, p.source).abs().sum() > 0 for p in projs), pop.name
        got = sum(_replay(graph, trace, x, p) for p in projs)
        want = _values(graph, trace, x, pop.name) if pop.neuron.kind == "relay" else _model_input(graph, rec, y,
                                                                                                 pop.name)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5, err_msg=pop.name)
        checked += 1
    return graph, trace, rec, checked


X = _spikes((T, N, 2, 16, 16), 0.3, seed=4)


@pytest.fixture(scope="module")
def spikformer_lowered():
    """(model, graph, trace, rec) of the tiny Spikformer on X, replay-checked."""
    model = _spikformer_tiny()
    graph, trace, rec, checked = _check_replay(model, X)
    assert checked == 17  # 5 tokenizer LIF, 3 adds, q/k/v, K^T V relay, attention LIF, proj, fc1, fc2, readout
    return model, graph, trace, rec


@pytest.mark.parametrize("make, n_checked", [(_resnet19_tiny, 8), (_preact_tiny, 8), (_resnet19_low_rank, 9)])
def test_resnets_replay_recorded_spikes_into_every_layers_input_current(make, n_checked):
    assert _check_replay(make(), X)[3] == n_checked


def test_spikformer_replays_exactly_attention_included(spikformer_lowered):
    _, graph, trace, _ = spikformer_lowered
    assert graph.populations["attn1_kv"].neuron.kind == "relay" and graph.populations["add1"].graded
    assert np.all(trace.counts().sum(axis=(0, 1))[:-1] > 0)  # every population but the readout emits


def test_post_activation_block_adds_two_currents_and_identity_is_a_unit_depthwise_conv():
    net = _resnet19_tiny()
    graph, _ = lower(net, X[:, :1])
    by_target = {p: [q.name for q in graph.in_projections(p)] for p in graph.populations}
    # stem lif1; block1: lif2 <- conv2, lif3 <- conv3 (main) + identity1 (x = lif1); block2 likewise from lif3;
    # stride-2 block: lif6 <- conv6 from lif5, lif7 <- conv7 (main) + conv8 (1x1 stride-2 conv + BN shortcut)
    assert by_target["lif3"] == ["conv3", "identity1"] and by_target["lif5"] == ["conv5", "identity2"]
    assert by_target["lif7"] == ["conv7", "conv8"] and by_target["output"] == ["fc1"]
    ident = next(p for p in graph.projections if p.name == "identity1")
    assert (ident.source, ident.kind, ident.groups, ident.weight_bits, ident.bias) == ("lif1", "conv", 4, 1, None)
    np.testing.assert_array_equal(ident.weight, np.ones((4, 1, 1, 1), np.float32))
    short = next(p for p in graph.projections if p.name == "conv8")
    bn = net.stages.layer2[0].shortcut[1]
    scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach()
    want = net.stages.layer2[0].shortcut[0].weight.detach() * scale[:, None, None, None]
    np.testing.assert_allclose(short.weight, want.numpy(), rtol=1e-6)
    assert (short.stride, short.source) == ((2, 2), "lif5")
    assert graph.metadata["layers"]["projections"]["conv8"] == ["stages.layer2.0.shortcut.0:Conv2d",
                                                                "stages.layer2.0.shortcut.1:BatchNorm2d"]


def test_preactivation_stream_of_currents_gives_one_projection_per_addend():
    graph, _ = lower(_preact_tiny(), X[:, :1])
    srcs = {p: sorted(q.source for q in graph.in_projections(p)) for p in graph.populations}
    # block2.sn1 reads bn1(conv2_b1(sn2_b1) + stem(input)); block3.sn1 (stage 2) also block2's conv2 path;
    # block3's conv2 + its 1x1 shortcut of block3.sn1 feed the head's BN-LIF
    assert srcs["lif3"] == ["input", "lif2"] and srcs["lif5"] == ["input", "lif2", "lif4"]
    assert srcs["lif7"] == ["lif5", "lif6"] and all(p.neuron.kind == "LIF" for n, p in graph.populations.items()
                                                    if n not in ("input", "output"))


def test_attention_events_equal_counts_from_the_spike_tensors(spikformer_lowered):
    """Per head h, token l, timestep t (binary spikes, dh = D / heads):
    K^T V stage ("attn1_k", source K gated by V): non-zero = sum_{t,l,h} nnz(K[t,l,h,:]) * nnz(V[t,l,h,:]) (pairs of
    coincident spikes), structural = nnz(K) * dh; Q stage ("attn1_q", source Q gated by M = K^T V):
    non-zero = sum_{t,h,d} (sum_l Q[t,l,h,d]) * nnz(M[t,h,d,:]), structural = nnz(Q) * dh. The hardware model pays
    the structural counts (storage "conv": a dense walk of the dynamic operand's row)."""
    _, graph, trace, rec = spikformer_lowered
    heads, dh = 2, 8
    q, k, v = (rec[f"blocks.0.attn.{n}.sn"][1].double() for n in "qkv")  # (T, N, L, D)
    q, k, v = (a.reshape(a.shape[:3] + (heads, dh)) for a in (q, k, v))  # (T, N, L, h, dh)
    m = torch.einsum("tnlhd,tnlhe->tnhde", k, v)
    nonzero, structural = synaptic_events(graph, trace, "nonzero"), synaptic_events(graph, trace, "structural")
    pairs = int((k.sum(-1) * v.sum(-1)).sum())
    q_events = int((q.sum(2) * (m != 0).sum(-1)).sum())
    assert 0 < pairs < structural["attn1_k"] == int(k.sum()) * dh
    assert nonzero["attn1_k"] == pairs
    assert 0 < q_events <= structural["attn1_q"] == int(q.sum()) * dh
    assert nonzero["attn1_q"] == q_events
    chip = hwmodels.load_preset("generic-45nm")
    sim = hwmodels.simulate(graph, trace, chip, model="analytic")
    pops = sim.populations
    assert pops.loc["attn1_kv", "synops"] * trace.n_samples == pytest.approx(structural["attn1_k"])
    q_target = next(p.target for p in graph.projections if p.name == "attn1_q")
    assert graph.metadata["layers"]["populations"][q_target] == ["blocks.0.attn.attn_sn:LIFNode"]
    assert [p.name for p in graph.in_projections(q_target)] == ["attn1_q"]
    assert pops.loc[q_target, "synops"] * trace.n_samples == pytest.approx(structural["attn1_q"])
    assert sim.synops * trace.n_samples == pytest.approx(sum(structural.values()))


def test_binary_attention_lowers_to_a_spiking_map_and_gated_stages():
    """QK stage ("attn1_qk", Q gated by K): non-zero = sum_{t,h,d} (sum_l Q[t,l,h,d]) (sum_l' K[t,l',h,d]);
    AV stage ("attn1_v", map A gated by V): non-zero = sum_{t,h,l'} (sum_l A[t,h,l,l']) nnz(V[t,l',h,:])."""
    model = _spikformer_tiny(seed=5)
    swap_attention(model, T)
    attn = model.blocks[0].attn.attn
    with torch.no_grad():
        attn.alpha.copy_(torch.tensor([[1.5, 0.75]]).expand(T, 2))  # constant over t: folds exactly
    graph, trace, rec, checked = _check_replay(model.eval(), X)
    assert checked == 17 and "approximations" not in graph.metadata  # the map A replaces the K^T V relay
    amap = next(p.target for p in graph.projections if p.name == "attn1_qk")
    assert graph.populations[amap].shape == (2 * 16, 4, 4) and graph.populations[amap].neuron.threshold == 1.0
    q, k, v = (rec[f"blocks.0.attn.{n}.sn"][1].double().reshape(T, N, 16, 2, 8) for n in "qkv")
    a = rec["blocks.0.attn.attn.map_sn"][1].double()  # (T, N, h, L_query, L_key)
    nonzero = synaptic_events(graph, trace, "nonzero")
    assert nonzero["attn1_qk"] == int((q.sum(2) * k.sum(2)).sum()) > 0
    assert nonzero["attn1_v"] == int((a.sum(3) * v.sum(-1).transpose(2, 3)).sum()) > 0
    with torch.no_grad():
        attn.alpha.copy_(torch.tensor([[1.0, 1.0], [0.5, 2.0]]))
    graph, _ = lower(model, X[:, :1])
    assert list(graph.metadata["approximations"]) == ["attn1_v"]
    np.testing.assert_allclose(next(p for p in graph.projections if p.name == "attn1_v").weight[[0, 8], 0, 0, 0],
                               [0.125 * 0.75, 0.125 * 1.5])  # scale x mean alpha per head


def test_low_rank_tokens_and_per_layer_settings_of_a_compression_result():
    model = _spikformer_tiny()
    block = model.blocks[0]
    block.attn.q.linear = factorize(block.attn.q.linear, 3)
    compression = {"weight_bits": {"blocks.0.attn.q.linear": 4, "blocks.0.mlp.fc2.linear": 2},
                   "storage": {"blocks.0.mlp.fc2.linear": "sparse"}, "state_bits": {"blocks.0.attn.attn_sn": 5}}
    graph, trace, _, checked = _check_replay(model, X)
    assert checked == 18  # the rank-3 relay's recorded value equals B s too
    graph, _ = lower(model, X[:, :1], compression=compression, weight_bits=6, weight_fit="quantize")
    projs = {p.name: p for p in graph.projections}
    tags = graph.metadata["layers"]["projections"]
    b, a = next((p for n, p in projs.items() if n.endswith("_b")), None), next(p for n, p in projs.items()
                                                                                if n.endswith("_a"))
    relay = graph.populations[b.target]
    assert (relay.neuron.kind, relay.graded, relay.shape, b.weight.shape) == ("relay", True, (3, 4, 4), (3, 16, 1, 1))
    assert (b.weight_bits, a.weight_bits, a.source, a.weight.shape) == (4, 4, relay.name, (16, 3, 1, 1))
    fc2 = next(p for n, p in projs.items() if tags[n][0] == "blocks.0.mlp.fc2.linear:Linear")
    assert (fc2.weight_bits, fc2.storage) == (2, "sparse")
    attn_pop = next(n for n, t in graph.metadata["layers"]["populations"].items()
                    if t == ["blocks.0.attn.attn_sn:LIFNode"])
    assert graph.populations[attn_pop].state_bits == 5
    assert {p.weight_bits for n, p in projs.items() if p.gate is None and graph.metadata["origin"][n] == "Conv2d"} \
        == {6}


def test_graph_and_trace_round_trip_with_gates(spikformer_lowered, tmp_path):
    _, graph, trace, _ = spikformer_lowered
    graph.save(tmp_path / "g.npz")
    trace.save(tmp_path / "t.npz")
    g2, t2 = NetworkGraph.load(tmp_path / "g.npz"), EventTrace.load(tmp_path / "t.npz")
    for p, q in zip(graph.projections, g2.projections):
        assert (p.name, p.source, p.target, p.gate, p.groups, p.storage) == (q.name, q.source, q.target, q.gate,
                                                                             q.groups, q.storage)
        np.testing.assert_array_equal(p.weight, q.weight)
        assert (p.gate_index is None) == (q.gate_index is None)
        if p.gate_index is not None:
            np.testing.assert_array_equal(p.gate_index, q.gate_index)
    assert [g2.depth(n) for n in g2.populations] == [graph.depth(n) for n in graph.populations]
    q_target = next(p.target for p in g2.projections if p.name == "attn1_q")
    assert g2.depth(q_target) == g2.depth("attn1_kv") + 1 == g2.depth("lif7") + 2  # the gate delays the target
    np.testing.assert_array_equal(t2.indices, trace.indices)
    np.testing.assert_array_equal(t2.values, trace.values)
    assert synaptic_events(g2, t2, "nonzero") == synaptic_events(graph, trace, "nonzero")


def test_graph_engine_traces_record_their_graphs_fingerprint(spikformer_lowered, tmp_path):
    """The fx-graph engine writes the fingerprint of the graph it lowered into the trace (kept by save/load); the
    simulator refuses that trace with another model's graph."""
    _, graph, trace, _ = spikformer_lowered
    assert trace.graph_fingerprint == graph.fingerprint() and trace.sizes["lif7"] == graph.populations["lif7"].size
    graph.save(tmp_path / "g.npz")
    trace.save(tmp_path / "t.npz")
    assert EventTrace.load(tmp_path / "t.npz").graph_fingerprint == NetworkGraph.load(tmp_path / "g.npz").fingerprint()
    other, _ = lower(_spikformer_tiny(seed=4), X[:, :1])
    with pytest.raises(ValueError, match="trace.graph_fingerprint: the trace was recorded on a graph with"):
        hwmodels.simulate(other, trace, hwmodels.load_preset("loihi"), model="analytic")


@pytest.mark.parametrize("make", [_resnet19_tiny, _preact_tiny, _spikformer_tiny])
def test_end_to_end_simulation_pays_structural_events(make):
    graph, trace = lower(make(), X[:, :2])
    chip = hwmodels.load_preset("generic-45nm")
    sim = hwmodels.simulate(graph, trace, chip)
    structural = synaptic_events(graph, trace, "structural")
    assert {p.storage for p in graph.projections} <= {"dense", "conv"}
    assert sim.synops * trace.n_samples == pytest.approx(sum(structural.values()))
    assert sim.energy_j > 0 and sim.latency_s > 0 and sim.hardware_steps == T + graph.n_layers


def test_graph_path_equals_sequential_walk_on_a_plain_chain():
    net = seeded_init(nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(4, step_mode="m"),
        neuron.LIFNode(step_mode="m"), layer.MaxPool2d(2, 2, step_mode="m"),
        layer.Conv2d(4, 6, 3, padding=1, step_mode="m"), layer.BatchNorm2d(6, step_mode="m"),
        neuron.IFNode(v_threshold=0.5, step_mode="m"), layer.AvgPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"),
        layer.Linear(6 * 4 * 4, 7, step_mode="m"), layer.BatchNorm1d(7, step_mode="m"), neuron.IFNode(step_mode="m"),
        layer.Linear(7, 3, step_mode="m")), seed=6)
    x = X[:, :, :, :, :]
    g1, t1 = lower(net, x)
    g2, t2 = lower(Wrap(net), x)
    assert [(p.name, p.shape, p.neuron) for p in g1.populations.values()] == [
        (p.name, p.shape, p.neuron) for p in g2.populations.values()]
    assert g1.metadata["origin"] == g2.metadata["origin"]
    for p, q in zip(g1.projections, g2.projections, strict=True):
        assert (p.name, p.kind, p.stride, p.padding, p.groups, p.weight_bits) == (
            q.name, q.kind, q.stride, q.padding, q.groups, q.weight_bits)
        np.testing.assert_array_equal(p.weight, q.weight)
        np.testing.assert_array_equal(p.bias if p.bias is not None else 0, q.bias if q.bias is not None else 0)
    np.testing.assert_array_equal(t1.offsets, t2.offsets)
    np.testing.assert_array_equal(t1.indices, t2.indices)


class _Bad(nn.Module):
    def __init__(self, kind: str):
        super().__init__()
        self.kind, self.conv, self.sn = kind, layer.Conv2d(2, 2, 3, padding=1, step_mode="m"), SN()
        self.conv2, self.relu = layer.Conv2d(2, 2, 3, padding=1, step_mode="m"), nn.ReLU()
        if kind == "single":
            self.sn.step_mode = "s"

    def forward(self, x):
        if self.kind == "conv_conv":
            return self.sn(self.conv2(self.conv(x)))
        s = self.sn(self.conv(x))
        if self.kind == "mul":
            return s * 2
        if self.kind == "twice":
            return self.sn(self.conv2(s))
        if self.kind == "relu":
            return self.relu(s)
        if self.kind == "flow":
            return s if s.sum() > 0 else x
        return s + self.conv2(x) + x[:, :, :1]


@pytest.mark.parametrize("kind, match", [
    ("mul", r"operation mul .*unsupported"), ("twice", r"layer sn: the same module object is called twice"),
    ("conv_conv", r"layer conv2:Conv2d: Conv2d needs spikes"), ("relu", r"layer relu \(ReLU\): unsupported"),
    ("flow", r"cannot be traced by torch.fx"), ("slice", r"operation getitem"),
    ("single", r"layer sn \(LIFNode\): step_mode must be 'm', got 's'"),
])
def test_unsupported_graph_models_raise_value_error(kind, match):
    with pytest.raises(ValueError, match=match):
        lower(_Bad(kind), X[:, :1])


def test_ternary_spikformer_replays_with_signed_gate_values():
    """Ternary spikes {-1, 0, 1}: K^T V holds signed sums; the gated stages stay exact (no max-pool: 4x4 tokens)."""
    model = seeded_init(build_model("spikformer", (2, 4, 4), 5, seed=0, depth=1, dim=16, heads=2, pool_after=(),
                              neuron_options={"ternary": True}), seed=3, gain=4.0)
    graph, trace, _, checked = _check_replay(model, X[..., :4, :4])
    assert checked == 17 and graph.populations["lif6"].graded and (trace.values < 0).any()
    assert {p.weight_bits for p in graph.projections if p.gate is not None} == {8}  # graded operands: default bits
