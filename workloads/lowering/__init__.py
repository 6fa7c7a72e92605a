"""Lower a trained SpikingJelly multi-step model into the hardware contract: a NetworkGraph plus its EventTrace
(entry point `lower`, workloads.lowering.engine).

One engine for every model: torch.fx traces the forward (a plain nn.Sequential traces into the chain of its
layers) and each call is interpreted on symbolic values (`values`: spikes `Feed`, pending weight stages `Stage`
summed into a `Current`) by the rule the registry holds for its module type (`registry`: synaptic layers, pooling
and layout, neurons, recurrent containers, attention); the trace is recorded in one forward pass of the traced
graph per batch, a forward hook at every population turning its tensor into CSR events (`events`) and packed
neuron activity (`activity`) as it is computed (`recorder`); the weight bits are checked by `fit` (grid search:
`grid`).

Representation (every stage exact: replaying the recorded spikes gives the model's own currents):
- The linear stage between two populations (Conv1d/Conv2d or Linear, with BatchNorm and non-overlapping AvgPool
  folded in) becomes one projection "conv<k>"/"fc<k>"; MaxPool an OR population "pool<k>" fed by "maxpool<k>"; a
  DSP low-rank layer "<base>_b" -> relay "<base>_relay" -> "<base>_a"; a trailing weight stage the non-spiking
  readout "output".
- Residual add of currents before a neuron (ResNet-19's BasicBlock, sn2(bn2(conv2(.)) + shortcut(x))): the
  block's output population gets one projection per addend, "conv<k>" (main path, BN folded) and the shortcut,
  a 1x1 conv + BN "conv<k>" or, for an identity shortcut, "identity<k>": a 1x1 depthwise conv of weight 1 (C stored
  weights, fan-out 1; on a flat layer an n x n diagonal stored "sparse": n stored weights, fan-out 1).
  Pre-activation blocks add currents that the next block's BN + neuron read: that neuron
  layer gets one projection per addend with the BN folded into each (a current read by two layers is stored
  twice; no extra population or pipeline step).
- Spikes + spikes (Spikformer's x + attn(x), tokenizer x + rpe(x)): a graded relay population "add<k>" (kind
  "relay") fed by two identity projections; it forwards the sum (0, 1, 2, ...) every timestep.
- Tokens (T, N, L, D) are populations of shape (D, H, W); a token-wise Linear is a 1x1 conv, TokenMean is folded
  into the head Linear (weight / L per token), TokenBatchNorm per channel.
- Attention: gated projections (hwmodels.trace.Projection.gate), see workloads.lowering.rules_attention.
- Saccadic spike self-attention (SNN-ViT): stages linear in the token count, a relay of per-head key counts
  gating the query stage, see workloads.lowering.rules_sssa.
- BESTformer's couplings y + (a + b) / 2: one graded relay "add<k>" fed by "identity<k>" (weight 1) and two
  "half<k>" projections (weight 0.5, 1 bit); its head average folds the 0.5 into the two readout projections
  (workloads.lowering.rules_reversible).
- Recurrent containers: a self-projection "rec<k>" with a one-timestep delay (workloads.lowering.rules_recurrent).
- Reshapes keeping the time and batch axes (x.flatten(2), x.view/reshape(x.shape[0], x.shape[1], ...),
  x.unsqueeze(d >= 2), torch.flatten, nn.Flatten(2), nn.Unflatten(2, ...)): layout only
  (workloads.lowering.reshape).
Names: neuron populations "<kind><k>" (one counter), "pool<k>", "add<k>", "attn<k>_kv", "sssa<k>_ksum",
"<base>_relay"; projections "conv<k>", "fc<k>", "identity<k>", "half<k>", "maxpool<k>", "rec<k>",
"attn<k>_k"/"attn<k>_q" (SpikeAttention), "attn<k>_qk"/"attn<k>_v" (BinaryAttention), "sssa<k>_k"/"sssa<k>_q"/
"spread<k>" (SSSA), "<base>_b"/"<base>_a" (low-rank).
"""
from workloads.lowering.engine import lower

__all__ = ["lower"]
