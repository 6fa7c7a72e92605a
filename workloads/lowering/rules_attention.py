"""Lowering of spiking self-attention (Spikformer's SpikeAttention, BESTformer's BinaryAttention) into gated
projections (hwmodels.trace.Projection.gate): a product of two spike tensors is a projection whose weights are the
other operand's values at the same timestep, so its synaptic events are counted from the actual spikes.

Layout: q, k, v are (D, H, W) populations read as L = H*W tokens of D = heads x dh features (channel c = h*dh + d).
SpikeAttention, out = (Q K^T) V * scale = Q (K^T V) * scale per head (Zhou et al., Spikformer, ICLR 2023):
  "attn<n>_k": K -> relay "attn<n>_kv" (shape (D*dh, 1, 1), M[h, d, e] at (h*dh + d)*dh + e = sum_l K[l,h,d] V[l,h,e]),
      a conv with groups D and one kernel tap per token (weight 1), gated by V: per K spike, one synapse per e,
      live when V[l, h, e] fired: non-zero events = coincident (K, V) spike pairs of the same token and head;
  "attn<n>_q": Q -> attention neurons, 1x1 conv with groups = heads (weight = scale), gated by M: per Q spike
      (l, h, d), one synapse per e, live when M[h, d, e] != 0: non-zero events = Q spikes x non-zero entries of
      their M row.
BinaryAttention, out = LIF_1(Q K^T) V * scale * alpha[t, h] (Cao et al., BESTformer, IJCAI 2025):
  "attn<n>_qk": Q -> spiking map population A (shape (heads*L, H, W): channel h*L + l' (key), position l (query)),
      1x1 conv with groups = heads, weight 1, gated by K; "attn<n>_v": A -> attention neurons, 1x1 conv with
      groups = heads, weight scale * alpha[h], gated by V.
"""
from __future__ import annotations

import numpy as np
import torch

from hwmodels.trace import NeuronModel, Population
from workloads.compression.binary import BinaryAttention
from workloads.lowering.build import Build, emit
from workloads.lowering.naming import layer_error, tag
from workloads.lowering.rules_neurons import NEURON_MODELS
from workloads.lowering.values import Current, Feed, Stage, spikes_of
from workloads.models.spikformer import SpikeAttention


def _operands(args: list, name: str, m) -> tuple[Feed, Feed, Feed, int, int, int]:
    """(q, k, v, D, dh, L) after checking the operands are plain token populations of one shape."""
    where = tag(name, m)
    q, k, v = (spikes_of(a, where, type(m).__name__) for a in args)
    if any(f.layout != "tokens" or not f.plain for f in (q, k, v)) or not q.pop.shape == k.pop.shape == v.pop.shape:
        raise layer_error(where, "attention needs q, k, v as plain token populations of one (D, H, W) shape")
    d = q.pop.shape[0]
    if d % m.heads:
        raise layer_error(where, f"D={d} is not divisible by heads={m.heads}")
    return q, k, v, d, d // m.heads, q.pop.size // d


def operand_bits(*pops: Population, levels: int = 1) -> int | None:
    """Bits of a stored operand: enough for `levels` + 1 non-negative integers when every operand population is
    binary, else None (the lowering's default width). Also used by workloads.lowering.rules_sssa."""
    return None if any(p.graded for p in pops) else max(1, int(np.ceil(np.log2(levels + 1))))


def _grouped_index(d: int, group_in: int, group_out: int, fn) -> np.ndarray:
    """int64 (d_out, group_in, 1, 1) gate index of a 1x1 conv with groups = heads: fn(h, j, e) for output channel
    h*group_out + e and in-group channel j."""
    heads = d // group_out
    h, j, e = np.meshgrid(np.arange(heads), np.arange(group_in), np.arange(group_out), indexing="ij")
    idx = fn(h, j, e).transpose(0, 2, 1).reshape(heads * group_out, group_in)
    return idx[:, :, None, None].astype(np.int64)


def _attention(build: Build, m: SpikeAttention, name: str, at, args) -> Current:
    """SpikeAttention(q, k, v): relay "attn<n>_kv" of K^T V per head and the gated stage "attn<n>_q" (module
    docstring)."""
    q, k, v, d, dh, n_tok = _operands(args, name, m)
    where, (_, hg, wg) = tag(name, m), q.pop.shape
    n = build.next_name("attn")
    kv = Population(f"{n}_kv", (d * dh, 1, 1), NeuronModel("relay"), graded=True,
                    state_bits=operand_bits(k.pop, v.pop, levels=n_tok) or 16)
    o = np.arange(d * dh)  # output channel (h*dh + dd)*dh + e of the K -> M conv
    h, e = o // dh // dh, o % dh
    index = ((h * dh + e)[:, None] * n_tok + np.arange(n_tok)[None, :]).reshape(d * dh, 1, hg, wg)
    stage1 = Stage(k.pop.name, "conv", torch.ones(d * dh, 1, hg, wg), "SpikeAttention",  # float32 ones: exact
                   [where], groups=d, bits=operand_bits(v.pop), gate=v.pop.name, gate_index=index, name=f"{n}_k")
    emit(build, Current([stage1], None, kv.shape, "chw"), kv, [where], at, _kv_values(m.heads))
    index = _grouped_index(d, dh, dh, lambda hh, j, ee: (hh * dh + j) * dh + ee)
    stage2 = Stage(q.pop.name, "conv", torch.full((d, dh, 1, 1), float(m.scale), dtype=torch.float64),
                   "SpikeAttention", [where], groups=m.heads, bits=operand_bits(k.pop, v.pop, levels=n_tok),
                   gate=kv.name, gate_index=index, name=f"{n}_q")
    return Current([stage2], None, q.pop.shape, "tokens")


def _kv_values(heads: int):
    """Capture fn: M = K^T V per head from the attention call's (q, k, v) arguments, (T, B, D*dh)."""
    def fn(out, args):
        k, v = (a.reshape(a.shape[:3] + (heads, -1)).transpose(2, 3) for a in args[1:])  # (T, B, h, L, dh)
        return (k.transpose(-2, -1) @ v).reshape(k.shape[0], k.shape[1], -1)
    return fn


def _map_values(out: torch.Tensor, args) -> torch.Tensor:
    """Capture fn of BinaryAttention's map neurons (T, B, h, L_query, L_key) -> (T, B, h*L_key*L_query)."""
    return out.transpose(-1, -2).reshape(out.shape[0], out.shape[1], -1)


def _binary_attention(build: Build, m: BinaryAttention, name: str, at, args) -> Current:
    """BinaryAttention(q, k, v): map neurons fed by "attn<n>_qk" and the gated stage "attn<n>_v" (module
    docstring)."""
    q, k, v, d, dh, n_tok = _operands(args, name, m)
    where, (_, hg, wg) = tag(name, m), q.pop.shape
    n, heads = build.next_name("attn"), m.heads
    model = NEURON_MODELS[type(m.map_sn)](m.map_sn)
    amap = Population(f"{model.kind.lower()}{build.next_name('')}", (heads * n_tok, hg, wg), model)
    index = _grouped_index(heads * n_tok, dh, n_tok, lambda hh, j, key: (hh * dh + j) * n_tok + key)
    stage1 = Stage(q.pop.name, "conv", torch.ones(heads * n_tok, dh, 1, 1, dtype=torch.float64), "BinaryAttention",
                   [where], groups=heads, bits=operand_bits(k.pop), gate=k.pop.name, gate_index=index, name=f"{n}_qk")
    emit(build, Current([stage1], None, amap.shape, "chw"), amap, [f"{name}.map_sn:{type(m.map_sn).__name__}"],
         m.map_sn, _map_values)
    alpha = m.alpha.detach().cpu().double()
    if not torch.equal(alpha, alpha[:1].expand_as(alpha)):
        build.notes[f"{n}_v"] = ("BinaryAttention alpha varies over timesteps: the weight holds its mean over t "
                                 "(currents approximate; spikes and event counts exact)")
    scale = float(m.scale) * alpha.mean(0).repeat_interleave(dh)  # per output channel h*dh + e
    index = _grouped_index(d, n_tok, dh, lambda hh, key, ee: (hh * dh + ee) * n_tok + key)
    stage2 = Stage(amap.name, "conv", scale.reshape(d, 1, 1, 1).expand(d, n_tok, 1, 1).clone(), "BinaryAttention",
                   [where], groups=heads, bits=operand_bits(v.pop), gate=v.pop.name, gate_index=index, name=f"{n}_v")
    return Current([stage2], None, q.pop.shape, "tokens")


#: attention module type -> rule
RULES = {SpikeAttention: _attention, BinaryAttention: _binary_attention}
