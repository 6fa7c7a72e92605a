"""Brian2 import: a balanced E/I network runs in Brian2, imports as a recurrent NetworkGraph + EventTrace and
simulates on the Loihi preset with synaptic events equal to an independent count from the Brian2 synapse arrays;
neuron models read from equations (hand-computed); subgroups, spike generators and several runs as samples give a
hand-computed trace; bad input raises."""
import nir
import numpy as np
import pytest

from hwmodels import load_preset, simulate
from workloads.exchange.nir_io import from_nir, load_nir, save_nir
from workloads.exchange.recurrent import RecurrentGraph

b2 = pytest.importorskip("brian2")
from brian2 import Hz, mV, ms  # noqa: E402

from workloads.exchange.brian2_io import from_brian2  # noqa: E402
from workloads.exchange.brian2_neurons import neuron_model  # noqa: E402

LIF_EQS = "dv/dt = -v / tau : volt (unless refractory)"


@pytest.fixture(scope="module", autouse=True)
def numpy_target():
    """Brian2's numpy code generation (no compiler); restored afterwards."""
    old = b2.prefs.codegen.target
    b2.prefs.codegen.target = "numpy"
    yield
    b2.prefs.codegen.target = old


@pytest.fixture(scope="module")
def brunel():
    """80 E + 20 I LIF neurons (tau 20 ms, theta 20 mV, reset 10 mV, refractory 2 ms), 40 Poisson inputs, random
    sparse E/I connectivity (Brunel 2000 style, g = 4), 100 ms at dt 0.1 ms."""
    b2.seed(11)
    ns = {"tau": 20 * ms, "theta": 20 * mV, "v_r": 10 * mV}
    groups = {name: b2.NeuronGroup(n, LIF_EQS, threshold="v > theta", reset="v = v_r", refractory=2 * ms,
                                   method="exact", namespace=ns, name=name) for name, n in (("exc", 80), ("inh", 20))}
    drive = b2.PoissonGroup(40, rates=150 * Hz, name="drive")
    wiring = [("drive", "exc", 0.3, 1.6), ("drive", "inh", 0.3, 1.6), ("exc", "exc", 0.1, 0.8),
              ("exc", "inh", 0.1, 0.8), ("inh", "exc", 0.2, -3.2), ("inh", "inh", 0.2, -3.2)]
    pops = dict(groups, drive=drive)
    syns = []
    for src, tgt, p, w in wiring:
        s = b2.Synapses(pops[src], pops[tgt], "w : volt", on_pre="v += w", name=f"{src}_{tgt}")
        s.connect(p=p, condition="i != j" if src == tgt else None)
        s.w = f"{w} * mV * (0.5 + rand())"
        syns.append(s)
    mons = {name: b2.SpikeMonitor(g, name=f"mon_{name}") for name, g in pops.items()}
    net = b2.Network(*pops.values(), *syns, *mons.values())
    net.run(100 * ms)
    return net, pops, syns, mons


def test_balanced_network_imports_as_recurrent_graph(brunel):
    net, pops, syns, mons = brunel
    graph, trace = from_brian2(net)
    assert isinstance(graph, RecurrentGraph)
    assert [(p.name, p.size) for p in graph.populations.values()] == [("drive", 40), ("exc", 80), ("inh", 20)]
    assert [graph.depth(p) for p in ("drive", "exc", "inh")] == [0, 1, 1]
    lif = graph.populations["exc"].neuron
    assert (lif.kind, lif.tau, lif.threshold, lif.v_reset, lif.decay_input) == ("LIF", pytest.approx(200.0),
                                                                                pytest.approx(0.02),
                                                                                pytest.approx(0.01), False)
    assert graph.populations["drive"].is_input
    for s in syns:
        proj = next(p for p in graph.projections if p.name == s.name)
        np.testing.assert_array_equal(proj.weight[np.asarray(s.j), np.asarray(s.i)], np.asarray(s.w_, np.float32))
        assert proj.nonzero_synapses == len(s) and proj.storage == "sparse"
    assert (trace.n_samples, trace.n_timesteps) == (1, 1000)
    for name, mon in mons.items():
        pop = graph.populations[name]
        dense = trace.to_dense(name, pop.shape)[0]
        steps, idx = np.nonzero(dense)
        got = sorted(zip(steps.tolist(), idx.tolist()))
        want = sorted(zip(np.rint(np.asarray(mon.t_) / 1e-4).astype(int).tolist(), np.asarray(mon.i).tolist()))
        assert got == want and len(want) > 50, name


def test_balanced_network_synaptic_events_on_loihi(brunel):
    net, pops, syns, mons = brunel
    graph, trace = from_brian2(net)
    result = simulate(graph, trace, load_preset("loihi"))
    fired = {name: np.asarray(m.i) for name, m in mons.items()}
    out_degree_events = sum(int(np.bincount(np.asarray(s.i), minlength=len(s.source))[fired[s.source.name]].sum())
                            for s in syns)
    structural = sum(len(fired[s.source.name]) * len(s.target) for s in syns)
    assert result.synops == out_degree_events > 1000
    assert result.synops_nonzero == out_degree_events and result.synops_structural == structural
    assert result.spikes == sum(len(f) for f in fired.values())


def test_recurrent_graph_saves_and_exports_to_nir(brunel, tmp_path):
    net, *_ = brunel
    graph, _ = from_brian2(net)
    graph.save(tmp_path / "g.npz")
    back = RecurrentGraph.load(tmp_path / "g.npz")
    assert [graph.depth(p) for p in graph.populations] == [back.depth(p) for p in back.populations]
    save_nir(graph, tmp_path / "brunel.nir", dt=graph.metadata["dt_s"])
    g = load_nir(tmp_path / "brunel.nir")
    assert isinstance(g.nodes["exc"], nir.LIF) and np.allclose(g.nodes["exc"].tau, 0.02)  # Brian2's tau back
    assert ("inh_exc", "exc") in [tuple(e) for e in g.edges] and ("exc", "exc_exc") in [tuple(e) for e in g.edges]
    with pytest.raises(ValueError, match="not a chain"):
        from_nir(g)


def _group(eqs: str, threshold: str, reset: str, namespace: dict, n: int = 3, **kw):
    return b2.NeuronGroup(n, eqs, threshold=threshold, reset=reset, namespace=namespace, **kw)


def test_neuron_models_read_from_equations():
    dt = 1e-4
    lif = _group("dv/dt = (El - v + R*I) / tau : volt\nI : amp", "v > -50*mV", "v = -65*mV",
                 {"El": -65 * mV, "R": 10 * b2.Mohm, "tau": 10 * ms})
    model, note = neuron_model(lif, dt)
    assert (model.kind, model.tau, model.threshold, model.v_reset, note) == (
        "LIF", pytest.approx(100.0), pytest.approx(0.015), pytest.approx(0.0), "")
    integ = _group("dv/dt = I_in / C : volt\nI_in : amp", "v > 1*mV", "v = 0*mV", {"C": 200 * b2.pfarad})
    model, _ = neuron_model(integ, dt)
    assert (model.kind, model.tau, model.threshold, model.v_reset) == ("IF", None, pytest.approx(1e-3), 0.0)
    soft = _group(LIF_EQS, "v > theta", "v -= theta", {"tau": 5 * ms, "theta": 1 * mV}, refractory=1 * ms)
    model, note = neuron_model(soft, dt)
    assert (model.kind, model.tau, model.v_reset) == ("LIF", pytest.approx(50.0), None)
    assert note == "the refractory period is not modelled (the chip's neurons have none)"
    cond = _group("dv/dt = (El - v + ge * (Ee - v)) / tau : volt\ndge/dt = -ge / (5*ms) : 1", "v > -50*mV",
                  "v = -60*mV", {"El": -70 * mV, "Ee": 0 * mV, "tau": 20 * ms})
    model, note = neuron_model(cond, dt)
    assert (model.tau, model.threshold, model.v_reset) == (pytest.approx(200.0), pytest.approx(0.02),
                                                          pytest.approx(0.01))
    assert "leaks to its reset" in note
    assert (model.kind, model.tau_syn) == ("CubaLIF", pytest.approx(50.0)) and "conductance-based" in note
    cuba = _group("dv/dt = (I - v) / (10*ms) : 1\ndI/dt = -I / tau_s : 1", "v > 0.5", "v = 0", {"tau_s": 5 * ms})
    model, note = neuron_model(cuba, dt)  # a current-based synapse: two states, tau_syn = 5 ms / dt
    assert (model.kind, model.tau, model.tau_syn, model.threshold, note) == (
        "CubaLIF", pytest.approx(100.0), pytest.approx(50.0), pytest.approx(0.5), "")
    driven = _group("dv/dt = (I - v) / (10*ms) : 1\ndI/dt = (v - I) / (5*ms) : 1", "v > 0.5", "v = 0", {})
    model, note = neuron_model(driven, dt)  # the second state does not just decay: one state, said so
    assert model.kind == "LIF" and "reads the state variable(s) I" in note
    izh = _group("dv/dt = (0.04/mV*v**2 + 5*v + 140*mV - u) / ms : volt\ndu/dt = 0.02*(0.2*v - u) / ms : volt",
                 "v > 30*mV", "v = -65*mV", {})
    model, note = neuron_model(izh, dt)
    assert model.kind == "LIF" and model.tau is None and "not linear" in note
    with pytest.raises(ValueError, match="shorter than dt"):
        neuron_model(_group(LIF_EQS, "v > 1*mV", "v = 0*mV", {"tau": 0.05 * ms}), dt)


def _small_net():
    """A 3-neuron spike generator into subgroup A = cells[:4], A -> B = cells[4:], dt 1 ms; 30 mV kicks against a
    20 mV threshold make every kicked neuron fire one step later."""
    ns = {"tau": 10 * ms}
    cells = b2.NeuronGroup(6, "dv/dt = -v / tau : volt", threshold="v > 20*mV", reset="v = 0*mV", dt=1 * ms,
                           namespace=ns, name="cells")
    a, b = cells[:4], cells[4:]
    stim = b2.SpikeGeneratorGroup(3, [0, 2, 1, 0], [0, 1, 3, 6] * ms, dt=1 * ms, name="stim")
    s_in = b2.Synapses(stim, a, "w : volt", on_pre="v += w", dt=1 * ms, name="syn_in")
    s_in.connect(i=[0, 1, 2], j=[0, 1, 3])
    s_in.w = 30 * mV
    s_ab = b2.Synapses(a, b, "w : volt", on_pre="v += w", dt=1 * ms, name="syn_ab")
    s_ab.connect(i=0, j=1)
    s_ab.w = 30 * mV
    return cells, stim, a, b, [s_in, s_ab]


def test_subgroups_generators_and_runs_as_samples():
    cells, stim, a, b, syns = _small_net()
    mons = [b2.SpikeMonitor(stim), b2.SpikeMonitor(a), b2.SpikeMonitor(b)]
    net = b2.Network(cells, stim, *syns, *mons)
    net.run(5 * ms)
    net.run(5 * ms)
    graph, trace = from_brian2(net, sample_duration=5e-3)
    assert list(graph.populations) == ["stim", "cells"] and isinstance(graph, RecurrentGraph)  # cells -> cells
    assert (graph.depth("stim"), graph.depth("cells")) == (0, 1)
    proj = {p.name: p for p in graph.projections}
    w_in = proj["syn_in"].weight
    assert w_in.shape == (6, 3) and set(zip(*np.nonzero(w_in))) == {(0, 0), (1, 1), (3, 2)}
    assert np.allclose(w_in[np.nonzero(w_in)], 0.03)
    assert [a.tolist() for a in np.nonzero(proj["syn_ab"].weight)] == [[5], [0]]  # subgroup offsets 4 and 0
    assert (trace.n_samples, trace.n_timesteps) == (2, 5)
    want = {"stim": {(0, 0, 0), (0, 1, 2), (0, 3, 1), (1, 1, 0)},
            "cells": {(0, 1, 0), (0, 2, 3), (0, 2, 5), (0, 4, 1), (1, 2, 0), (1, 3, 5)}}
    for name, events in want.items():
        got = {(s, t, int(i)) for s in range(2) for t in range(5) for i in trace.spikes(s, t, name).indices}
        assert got == events, name


def test_bad_input_raises():
    cells, stim, a, b, syns = _small_net()
    net = b2.Network(cells, stim, *syns, b2.SpikeMonitor(stim))
    net.run(4 * ms)
    with pytest.raises(ValueError, match="'cells': feeds 'syn_ab' but has no SpikeMonitor"):
        from_brian2(net)
    with pytest.raises(ValueError, match="sample_duration"):
        from_brian2([cells, stim, syns[0], net.objects], sample_duration=3e-3)
    with pytest.raises(ValueError, match="storage"):
        from_brian2(net, storage="conv")
    partial = b2.SpikeMonitor(stim, record=[0])
    with pytest.raises(ValueError, match="record"):
        from_brian2([stim, cells, syns[0], partial], duration=4e-3)
    with pytest.raises(ValueError, match="the monitors of 'cells' record 4 of its 6 neurons"):  # a only, b not
        from_brian2([stim, cells, syns[0], b2.SpikeMonitor(stim), b2.SpikeMonitor(a)], duration=4e-3)


def test_weights_given_as_expressions_are_evaluated_and_an_unrun_network_is_refused():
    stim = b2.SpikeGeneratorGroup(2, [0, 1], [0, 1] * ms, dt=1 * ms, name="stim")
    cells = b2.NeuronGroup(3, "dv/dt = -v / (4*ms) : 1", threshold="v > 1", reset="v = 0", dt=1 * ms, name="cells")
    syn = b2.Synapses(stim, cells, "w = 0.25 * (i + 1) + j : 1", on_pre="v_post += w", dt=1 * ms, name="syn")
    syn.connect()
    net = b2.Network(stim, cells, syn, b2.SpikeMonitor(stim), b2.SpikeMonitor(cells))
    with pytest.raises(ValueError, match="has not run yet"):
        from_brian2(net)
    net.run(3 * ms)
    graph, _ = from_brian2(net)
    want = np.array([[0.25 + j, 0.5 + j] for j in range(3)])  # weight[j, i] = 0.25 (i + 1) + j
    np.testing.assert_allclose(graph.projections[0].weight, want)


def test_gap_junctions_stdp_and_named_pathways():
    """A gap junction (no on_pre: no spike events) is a note, not a projection; an on_post pathway (STDP) is noted
    beside its projection; several on_pre pathways are refused in one line (each has its own events and delay)."""
    stim = b2.SpikeGeneratorGroup(2, [0, 1], [0, 1] * ms, dt=1 * ms, name="stim")
    cells = b2.NeuronGroup(2, "dv/dt = (-v + Igap) / (4*ms) : 1\nIgap : 1", threshold="v > 1", reset="v = 0",
                           dt=1 * ms, name="cells")
    syn = b2.Synapses(stim, cells, "w : 1", on_pre="v_post += w", on_post="w += 0.01", dt=1 * ms, name="syn")
    syn.connect(j="i")
    syn.w = 2.0
    gap = b2.Synapses(cells, cells, "w : 1\nIgap_post = w * (v_pre - v_post) : 1 (summed)", dt=1 * ms, name="gap")
    gap.connect(condition="i != j")
    net = b2.Network(stim, cells, syn, gap, b2.SpikeMonitor(stim), b2.SpikeMonitor(cells))
    net.run(3 * ms)
    graph, _ = from_brian2(net)
    assert [p.name for p in graph.projections] == ["syn"] and not isinstance(graph, RecurrentGraph)
    assert "on_post" in graph.metadata["notes"]["syn"] and "no on_pre" in graph.metadata["notes"]["gap"]
    stim = b2.SpikeGeneratorGroup(2, [0, 1], [0, 1] * ms, dt=1 * ms, name="stim2")
    cells = b2.NeuronGroup(2, "dv/dt = -v / (4*ms) : 1", threshold="v > 1", reset="v = 0", dt=1 * ms, name="c2")
    two = b2.Synapses(stim, cells, "w : 1", on_pre={"up": "v_post += w", "down": "v_post -= w"}, dt=1 * ms,
                      name="two")
    two.connect(j="i")
    net = b2.Network(stim, cells, two, b2.SpikeMonitor(stim), b2.SpikeMonitor(cells))
    net.run(2 * ms)
    with pytest.raises(ValueError, match=r"^Synapses 'two': on_pre pathways \['up', 'down'\] are not supported"):
        from_brian2(net)


def test_a_constant_gone_with_the_run_scope_asks_for_the_namespace():
    def run():
        tau_m = 5 * ms  # noqa: F841 (read by Brian2 from this scope)
        cells = b2.NeuronGroup(2, "dv/dt = -v / tau_m : 1", threshold="v > 1", reset="v = 0", dt=1 * ms)
        net = b2.Network(cells, b2.SpikeMonitor(cells))
        net.run(2 * ms)
        return net
    with pytest.raises(ValueError, match=r"identifier 'tau_m' cannot be resolved; pass the values the network ran "
                                         r"with as from_brian2\(\.\.\., namespace=\{'tau_m': \.\.\.\}\)"):
        from_brian2(run())
    assert from_brian2(run(), namespace={"tau_m": 5 * ms})[0].populations
