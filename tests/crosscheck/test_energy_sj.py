"""Energy with the `generic-45nm` preset against SpikingJelly's `estimate_simple_energy` (Horowitz 45 nm) on the same
model and input, decomposed term by term.

SpikingJelly (SJ), per batch: E = E_AC x ACs + E_MAC x MACs + 24.96 pJ/byte x memory bytes, where
  ACs    = synaptic ACs (spike-driven conv/mm, structural: zero weights included)
         + 4 element-wise ops per neuron per timestep (IFNode: charge add, threshold sub, 1 - spike, reset add)
         + other ops it dispatches (aten.sum calls made while it counts memory traffic);
  MACs   = dense multiply-accumulates of every layer whose input is not binary (graded first layer);
  memory = 4 B per weight use (fp32) + 4 B per bias use + 4 B read and 4 B write of v per neuron per timestep.
Ours (generic-45nm), per sample: compute = E_AC x paid synaptic events + 2 E_AC x neuron updates; memory = bits
read per synaptic event and state bits read + written per update at Horowitz's SRAM energy per bit (32 KB
synapse SRAM: 20 pJ per 64 bits; 4 KB state SRAM: the 8 KB figure, 10 pJ per 64 bits); plus network and static
placeholders. Terms that must match exactly and are asserted: the synaptic AC energy of every Conv2d/Linear
layer with binary input (same count, same 0.9 pJ); the counts behind SJ's memory terms (weight reads = synaptic
ops, state accesses = our updates of its spiking neurons). Terms that differ, each asserted by value: SJ's
memory traffic at 24.96 pJ per byte of fp32 words against ours per stored bit at the SRAM's size; SJ's 4 ACs
per neuron step against our 2; our max-pool OR events and the updates of our max-pool and readout populations
(SJ has no synaptic op and no state there); SJ's MACs at 4.6 pJ for a graded input, where we charge 0.9 pJ per
in-bounds synapse of every non-zero input value.
"""
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import SimpleEnergyProfiler
from torch import nn

from hwmodels import load_preset, simulate
from workloads.lowering import lower

T, N = 4, 3
SYNAPTIC_OPS = ("convolution", "mm", "addmm", "bmm", "baddbmm")


def _net(seed: int) -> nn.Sequential:
    """conv(pad 1)-IF-maxpool-conv(pad 1)-IF-maxpool-Linear readout (biased, no neuron), 1x8x8 input."""
    net = nn.Sequential(
        layer.Conv2d(1, 4, 3, padding=1, bias=False, step_mode="m"), neuron.IFNode(0.5, step_mode="m"),
        layer.MaxPool2d(2, step_mode="m"),
        layer.Conv2d(4, 8, 3, padding=1, bias=False, step_mode="m"), neuron.IFNode(0.5, step_mode="m"),
        layer.MaxPool2d(2, step_mode="m"), layer.Flatten(step_mode="m"), layer.Linear(32, 10, step_mode="m"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 2.0 / m.weight[0].numel() ** 0.5)
    return net.eval()


def _sj(net: nn.Sequential, x: torch.Tensor):
    """SJ's report and its AC count split into synaptic, neuron (BaseNode modules) and other ops."""
    prof = SimpleEnergyProfiler()
    prof.bind_model(net)
    functional.reset_net(net)
    with torch.no_grad(), prof:
        net(x)
    functional.reset_net(net)
    rep, counts = prof.get_report(), prof.ac_counter.get_counts()
    by_op = {op.__name__.split(".")[0]: v for op, v in counts["Global"].items()}
    syn = sum(v for op, v in by_op.items() if op in SYNAPTIC_OPS)
    neuron_scopes = {f"Sequential.{i}" for i, m in enumerate(net) if isinstance(m, neuron.BaseNode)}
    neu = sum(sum(counts.get(scope, {}).values()) for scope in neuron_scopes)
    return rep, {"synaptic": syn, "neuron": neu, "other": rep.counts["ac"] - syn - neu, "sum_ops": by_op.get("sum", 0)}


def _ours(net: nn.Sequential, x: torch.Tensor):
    """Lowered graph, SimResult on generic-45nm, and per-origin totals (J per sample) of synapse energy."""
    graph, trace = lower(net, x)
    res = simulate(graph, trace, load_preset("generic-45nm"), model="analytic")
    origin = {p.target: graph.metadata["origin"][p.name] for p in graph.projections}
    syn = res.populations["energy_synapse_compute_j"]
    by_origin = {o: float(sum(syn[pop] for pop, og in origin.items() if og == o)) for o in set(origin.values())}
    return graph, trace, res, by_origin


def test_generic_45nm_against_spikingjelly_binary_input():
    net, chip = _net(seed=0), load_preset("generic-45nm")
    x = (torch.rand((T, N, 1, 8, 8), generator=torch.Generator().manual_seed(1)) < 0.4).float()
    rep, ac = _sj(net, x)
    graph, trace, res, syn = _ours(net, x)
    e_ac, e_upd = chip.core.synop_energy_j.dense, chip.core.neuron_inactive_energy_j
    cost = rep.config.cost_config
    assert cost.e_ac_pj * 1e-12 == e_ac  # the same Horowitz E_AC (32-bit FP add, 0.9 pJ)
    assert rep.counts["mac"] == 0  # all inputs binary
    # (1) exact: synaptic AC energy of the Conv2d/Linear layers (structural count x E_AC)
    assert ac["synaptic"] == rep.counts["synop"]
    assert (syn["Conv2d"] + syn["Linear"]) * N == pytest.approx(ac["synaptic"] * e_ac, rel=1e-12)
    # (2) exact counts behind SJ's memory terms: one fp32 weight read per synaptic op, a 4 B bias read per readout
    #     output per step, a 4 B read + write of v per spiking neuron per step = our updates of those populations
    origin = {p.target: graph.metadata["origin"][p.name] for p in graph.projections}
    spiking = [graph.populations[t] for t, o in origin.items()
               if o in ("Conv2d", "Linear") and graph.populations[t].neuron.threshold < float("inf")]
    neuron_steps = N * T * sum(p.size for p in spiking)
    assert rep.counts["weight_read_bytes"] == 4 * ac["synaptic"]
    assert rep.counts["bias_read_bytes"] == 4 * N * T * 10
    assert rep.counts["neuron_state_read_bytes"] == rep.counts["neuron_state_write_bytes"] == 4 * neuron_steps
    # (3) our neuron energy: every non-input neuron (spiking, max-pool OR and readout) updated once per timestep
    for pop in graph.populations.values():
        if not pop.is_input:
            assert res.populations.loc[pop.name, "energy_neuron_compute_j"] == pytest.approx(e_upd * pop.size * T,
                                                                                             rel=1e-12)
    # (4) differences, each by value: SJ's 4 element-wise ACs per neuron step; our max-pool OR synaptic events
    assert ac["neuron"] == 4 * neuron_steps
    assert ac["other"] == ac["sum_ops"]  # aten.sum that SJ dispatches while counting memory traffic
    pool_events = res.synops_structural * N - ac["synaptic"]
    assert pool_events > 0 and syn["MaxPool2d"] * N == pytest.approx(pool_events * e_ac, rel=1e-12)
    updates = N * T * sum(p.size for p in graph.populations.values() if not p.is_input)
    compute = (res.energy_breakdown_j["synapse_compute"] + res.energy_breakdown_j["neuron_compute"]) * N
    sj_j = rep.energy_total_pj * 1e-12
    explained = (cost.e_memory_pj_per_byte * 1e-12 * rep.counts["memory_access_bytes"]  # SJ's memory traffic
                 + e_ac * (ac["neuron"] + ac["other"])  # SJ: element-wise neuron ops and its other ACs
                 - e_upd * updates  # ours: 2 E_AC per neuron update
                 - e_ac * pool_events)  # ours: max-pool OR events
    assert sj_j - compute == pytest.approx(explained, rel=1e-9)
    # memory: SJ reads a 4-byte fp32 word per synaptic op at 24.96 pJ/byte; we read the stored weight bits at the
    # 32 KB SRAM's 20 pJ / 64 bits (lowering widens these float weights to 32 bits: weight_fit "widen"), and the
    # 1-bit max-pool weights; state: 16 bits read + written per update at the 8 KB figure
    bits = {p.target: p.weight_bits for p in graph.projections}
    syn_bits = sum(res.populations.loc[t, "synops"] * b for t, b in bits.items()) * N
    assert res.energy_breakdown_j["synapse_memory"] * N == pytest.approx(syn_bits * 20 / 64 * 1e-12, rel=1e-12)
    assert res.energy_breakdown_j["neuron_memory"] * N == pytest.approx(updates * 2 * 16 * 10 / 64 * 1e-12, rel=1e-12)
    sj_weights = cost.e_memory_pj_per_byte * 1e-12 * rep.counts["weight_read_bytes"]
    assert sj_weights > 5 * res.energy_breakdown_j["synapse_memory"] * N  # fp32 at 25 pJ/B vs bits at the SRAM


def test_graded_first_layer_is_a_mac_layer_for_spikingjelly():
    net, chip = _net(seed=2), load_preset("generic-45nm")
    g = torch.Generator().manual_seed(3)
    x = torch.rand((T, N, 1, 8, 8), generator=g) * (torch.rand((T, N, 1, 8, 8), generator=g) < 0.6)
    rep, ac = _sj(net, x)
    graph, trace, res, syn = _ours(net, x)
    assert graph.populations["input"].graded
    # SJ: the graded conv is dense MACs over every output position and kernel tap, zero pixels and padding included
    dense_macs = T * N * 4 * 8 * 8 * (1 * 3 * 3)
    assert rep.counts["mac"] == dense_macs
    assert rep.counts["weight_read_bytes"] == 4 * (dense_macs + ac["synaptic"])
    # ours: E_AC per in-bounds synapse of every non-zero input value (E_MAC has no ChipSpec field)
    events = F.conv2d((x != 0).float().flatten(0, 1), torch.ones(4, 1, 3, 3), padding=1).sum().item()
    conv1 = graph.projections[0]
    assert graph.metadata["origin"][conv1.name] == "Conv2d" and conv1.source == "input"
    conv1_j = res.populations.loc[conv1.target, "energy_synapse_compute_j"] * N
    assert conv1_j == pytest.approx(events * chip.core.synop_energy_j.conv, rel=1e-12)
    assert events < dense_macs  # zero pixels and padded taps cost us nothing
    # the binary layers after it still match exactly
    binary = syn["Conv2d"] * N - events * chip.core.synop_energy_j.conv + syn["Linear"] * N
    assert binary == pytest.approx(ac["synaptic"] * chip.core.synop_energy_j.dense, rel=1e-9)
