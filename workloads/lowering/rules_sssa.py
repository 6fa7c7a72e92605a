"""Lowering of saccadic spike self-attention (SSSA, workloads.models.snn_vit; Wang et al., ICLR 2025) into
populations and projections whose synaptic events are counted from the actual spikes, every stage linear in the
token count L (D = heads x dh features per token, q, k, v token populations (D, H, W), L = H*W):

  "sssa<n>_k": K -> relay "sssa<n>_ksum" (heads, 1, 1): a conv whose kernel covers the whole token grid, groups =
      heads, weight 1, so relay h holds alpha[h] = sum_{l, d} K[l, h, d] (one synapse per K spike);
  "sssa<n>_q": Q -> the saccadic neurons (heads, H, W), 1x1 conv with groups = heads, weight 1 / (dh^2 L), gated by
      the relay (hwmodels.trace.Projection.gate): neuron (h, l) receives Q'[l, h] alpha[h] / (dh^2 L), the Patch
      of SpikeDistributionRelevance (one synapse per Q spike; its operand is the relay's count);
  "spread<k>": saccadic spikes S -> the gate's coincidence neurons (D, H, W), 1x1 conv groups = heads, weight 1
      (dh synapses per S spike), plus "identity<k>": V -> the same neurons (one synapse per V spike); the
      coincidence neurons (SpikeAnd: LIF with tau = 1, no memory, threshold 1.5) fire S (x) V exactly.

Per timestep and sample the attention pays nnz(K) + nnz(Q) + dh nnz(S) + nnz(V) synaptic events, at most 4 D L,
and updates at most heads relay, heads L saccadic and D L coincidence neurons: linear in L, with no
stored operand larger than the heads key counts (SpikeAttention's K^T V relay holds D dh values, its Q stage
fans out dh synapses per spike).

The saccadic neurons (SaccadicNeuron: H = M_w X over timesteps, M_w a learned lower-triangular T x T matrix,
per-timestep thresholds, no reset) have no chip neuron model; their population is an IF stand-in (threshold: the
mean learned threshold, soft reset) and graph.metadata["approximations"] says so for their in-projection. The
trace holds their actual spikes, and their activity comes from the node (input and H), so event counts are exact;
a replay of their membrane on the chip model is not.
"""
from __future__ import annotations

import numpy as np
import torch

from hwmodels.trace import NeuronModel, Population
from workloads.lowering.build import Build, emit
from workloads.lowering.naming import layer_error, tag
from workloads.lowering.rules_attention import operand_bits
from workloads.lowering.values import Current, Feed, Stage, layout_fn, spikes_of
from workloads.models.snn_vit import HeadSpread, SaccadicNeuron, SpikeAnd, SpikeDistributionRelevance

#: graph.metadata["approximations"] entry of a saccadic neuron population's in-projection
SACCADE_NOTE = ("saccadic neurons (H = M_w X, learned lower-triangular T x T M_w, per-timestep thresholds, no "
                "reset): the chip population is an IF stand-in with their mean threshold; spikes, activity and "
                "event counts are the model's own, a membrane replay is not")


def _tokens(value, where: str, what: str) -> Feed:
    """`value` as a plain token population's spikes; ValueError naming the layer otherwise."""
    feed = spikes_of(value, where, what)
    if feed.layout != "tokens" or not feed.plain:
        raise layer_error(where, f"{what} needs plain token populations (T, N, L, D) as input")
    return feed


def _relevance(build: Build, m: SpikeDistributionRelevance, name: str, at, args) -> Current:
    """SpikeDistributionRelevance(q, k): relay "sssa<n>_ksum" fed by "sssa<n>_k", and the current of the gated
    stage "sssa<n>_q" (module docstring)."""
    where = tag(name, m)
    q, k = (_tokens(a, where, "SpikeDistributionRelevance") for a in args)
    if q.pop.shape != k.pop.shape:
        raise layer_error(where, f"q {q.pop.shape} and k {k.pop.shape} must have one shape")
    d, hg, wg = q.pop.shape
    heads = m.heads
    if d % heads:
        raise layer_error(where, f"D={d} is not divisible by heads={heads}")
    dh, n_tok, n = d // heads, hg * wg, build.next_name("sssa")
    levels = operand_bits(k.pop, levels=n_tok * dh)
    ksum = Population(f"{n}_ksum", (heads, 1, 1), NeuronModel("relay"), graded=True, state_bits=levels or 16)
    stage_k = Stage(k.pop.name, "conv", torch.ones(heads, dh, hg, wg, dtype=torch.float64),
                    "SpikeDistributionRelevance", [where], groups=heads, bits=1, name=f"{n}_k")
    emit(build, Current([stage_k], None, ksum.shape, "chw"), ksum, [where], at, _ksum_values(heads))
    index = np.broadcast_to(np.arange(heads).reshape(heads, 1, 1, 1), (heads, dh, 1, 1)).copy()
    stage_q = Stage(q.pop.name, "conv", torch.full((heads, dh, 1, 1), 1.0 / (dh * dh * n_tok), dtype=torch.float64),
                    "SpikeDistributionRelevance", [where], groups=heads, bits=levels, gate=ksum.name,
                    gate_index=index, name=f"{n}_q")
    return Current([stage_q], None, (heads, hg, wg), "tokens")


def _ksum_values(heads: int):
    """Capture fn of the relay: alpha = per-head K spike count from the relevance call's (q, k), (T, B, heads)."""
    def fn(out, args):
        k = args[1]
        return k.reshape(k.shape[:3] + (heads, -1)).sum((2, 4))
    return fn


def _spread(build: Build, m: HeadSpread, name: str, at, args) -> Current:
    """HeadSpread(s): a 1x1 conv "spread<k>" of weight 1 from each head's neuron to its `width` channels."""
    where = tag(name, m)
    s = _tokens(args[0], where, "HeadSpread")
    heads, hg, wg = s.pop.shape
    d = heads * m.width
    stage = Stage(s.pop.name, "conv", torch.ones(d, 1, 1, 1, dtype=torch.float64), "HeadSpread", [where],
                  groups=heads, bits=1, name=build.next_name("spread"))
    return Current([stage], None, (d, hg, wg), "tokens")


def _neurons(build: Build, name: str, m, at, value, model: NeuronModel) -> Feed:
    """A population of `model` fed by the Current `value` (one projection per stage), captured from node `at`."""
    if not isinstance(value, Current):
        raise layer_error(tag(name, m), f"{type(m).__name__} needs a weight stage (a current) as input")
    pop = Population(f"{model.kind.lower()}{build.next_name('')}", value.out_shape, model)
    emit(build, value, pop, [tag(name, m)], at, layout_fn(value.layout))
    return Feed(pop, value.layout, line=value.line)


def _saccade(build: Build, m: SaccadicNeuron, name: str, at, args) -> Feed:
    """SaccadicNeuron: its population (an IF stand-in, see the module docstring and SACCADE_NOTE)."""
    theta = float(m.threshold.detach().double().mean())
    feed = _neurons(build, name, m, at, args[0], NeuronModel("IF", theta, None, None))
    for proj in build.projections:
        if proj.target == feed.pop.name:
            build.notes[proj.name] = SACCADE_NOTE
    return feed


def _and(build: Build, m: SpikeAnd, name: str, at, args) -> Feed:
    """SpikeAnd: a LIF population with tau = 1 (H = X, no memory), no input decay, its threshold, hard reset."""
    return _neurons(build, name, m, at, args[0], NeuronModel("LIF", float(m.v_threshold), 1.0, 0.0, False))


#: SSSA module type -> rule
RULES = {SpikeDistributionRelevance: _relevance, HeadSpread: _spread, SaccadicNeuron: _saccade, SpikeAnd: _and}
