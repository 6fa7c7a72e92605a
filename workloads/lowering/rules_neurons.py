"""Spiking neurons: which SpikingJelly and workloads.neurons nodes the chip's neuron models express
(NEURON_MODELS), the population a node becomes and its lowering rule.

A node after a weight layer (or a sum of them) becomes a population "<kind><k>" (one counter over all neuron
layers: lif1, if2, plif3, ...) with one projection per pending stage. A node fed by the input tensor itself (no
weight layer before it, e.g. Sequential(IFNode, Linear, IFNode, ...) on a constant current, as SANA-FE and Loihi
applications feed per-neuron biases) becomes a population with no in-projection ("input current").
"""
from __future__ import annotations

from typing import Callable

import torch
from spikingjelly.activation_based import neuron
from torch import nn

from hwmodels.trace import NeuronModel, Population
from workloads.lowering.build import Build, add_population, emit
from workloads.lowering.naming import described, layer_error, tag
from workloads.lowering.values import Current, Feed, layout_fn
from workloads.neurons import CubaLIFNode, QLIFNode, SLIFNode


def _threshold(m: neuron.BaseNode) -> float:
    return float(m.v_threshold)


def _reset(m: neuron.BaseNode) -> float | None:
    return None if m.v_reset is None else float(m.v_reset)


def _if(m: neuron.BaseNode) -> NeuronModel:
    return NeuronModel("IF", _threshold(m), None, _reset(m))


def _lif(m: neuron.BaseNode) -> NeuronModel:
    return NeuronModel("LIF", _threshold(m), float(m.tau), _reset(m), bool(m.decay_input))


def _plif(m: neuron.BaseNode) -> NeuronModel:
    """PLIF: learned tau = 1 / sigmoid(w) (Fang et al., ICCV 2021)."""
    tau = float(1.0 / torch.sigmoid(m.w.detach().cpu().double()))
    return NeuronModel("PLIF", _threshold(m), tau, _reset(m), bool(m.decay_input))


def _mean_theta(m: SLIFNode) -> float:
    """Mean learned threshold of an sLIF node; ValueError while it is still lazily uninitialised."""
    if isinstance(m.theta, nn.parameter.UninitializedParameter):
        raise ValueError("sLIF node: threshold not initialised; run one forward pass before lowering")
    return float(m.theta.detach().double().mean())


def _decay(kind: str, threshold: Callable[[nn.Module], float]) -> Callable[[nn.Module], NeuronModel]:
    """workloads.neurons.DecayNode family, H = (1 - 1/tau) V + X: SpikingJelly's LIF form without input decay."""
    return lambda m: NeuronModel(kind, threshold(m), float(m.tau), _reset(m), False)


#: exact node type -> its NeuronModel
NEURON_MODELS: dict[type, Callable[[nn.Module], NeuronModel]] = {
    neuron.IFNode: _if, neuron.TernaryIFNode: _if, neuron.LIFNode: _lif, neuron.TernaryLIFNode: _lif,
    neuron.ParametricLIFNode: _plif,
    # Q-SNN neuron: a LIF whose state after each reset is Q_b(tanh V); the graph keeps the LIF charge and the b
    # bits of state (STATE_BITS), the tanh/rounding is the chip's state format
    QLIFNode: _decay("LIF", _threshold),
    # sLIF: learnable per-neuron thresholds; NeuronModel holds one threshold, their mean
    SLIFNode: _decay("sLIF", _mean_theta),
    # current-based LIF (imported NIR CubaLIF, snnTorch Synaptic): two states per neuron, the chip charges both
    CubaLIFNode: lambda m: NeuronModel("CubaLIF", _threshold(m), float(m.tau), _reset(m), False, float(m.tau_syn)),
}
#: the chip's spiking neuron models (hwmodels.trace.NEURON_KINDS without "input" and "relay")
CHIP_NEURONS = ("IF", "LIF", "PLIF", "sLIF", "CubaLIF")
#: node type -> bits of membrane state it keeps (others: Population's default); a CompressionResult overrides
STATE_BITS: dict[type, Callable[[nn.Module], int]] = {QLIFNode: lambda m: int(m.bits)}


def is_ternary(m: nn.Module) -> bool:
    """True when the node emits {-1, 0, 1} spikes (SpikingJelly Ternary*Node or a workloads.neurons node with
    ternary=True): its population is graded so the trace keeps the signs."""
    return isinstance(m, (neuron.TernaryIFNode, neuron.TernaryLIFNode)) or bool(getattr(m, "ternary", False))


def neuron_population(build: Build, m: neuron.BaseNode, name: str, shape: tuple[int, ...]) -> Population:
    """The population of spiking node `m` (module name `name`): its NeuronModel (NEURON_MODELS), the next
    "<kind><k>" name, graded when ternary, its state bits (the compression's, else the node's own, STATE_BITS)."""
    model = NEURON_MODELS[type(m)](m)
    bits = build.settings.state_bits.get(name) or (STATE_BITS[type(m)](m) if type(m) in STATE_BITS else None)
    return Population(f"{model.kind.lower()}{build.next_name('')}", shape, model, graded=is_ternary(m),
                      **({"state_bits": int(bits)} if bits else {}))


def neuron_rule(build: Build, m: neuron.BaseNode, name: str, at, args) -> Feed:
    """A spiking node on a Current (its population, one projection per stage) or on the input tensor (input
    current, see the module docstring)."""
    value = args[0]
    if isinstance(value, Feed) and value.pop.is_input and not (value.pools or value.mean) \
            and value.layout != "tokens":
        return _input_current_neuron(build, m, name, at, value)
    if not isinstance(value, Current):
        raise layer_error(described(name, m), "a spiking neuron layer needs a Conv2d or Linear layer (or a sum of "
                                              "weight layers) or the input tensor before it")
    pop = neuron_population(build, m, name, value.out_shape)
    emit(build, value, pop, [tag(name, m)], at, layout_fn(value.layout))
    return Feed(pop, value.layout, line=value.line)


def _input_current_neuron(build: Build, m: neuron.BaseNode, name: str, at, feed: Feed) -> Feed:
    """A spiking node fed by the input tensor (maybe flattened or reshaped): a population with no in-projection,
    its neurons integrating that current; listed in build.input_current."""
    layout = "flat" if len(feed.shape) == 1 else "chw"
    pop = neuron_population(build, m, name, feed.shape)
    build.input_current.append(pop.name)
    add_population(build, pop, [tag(name, m)], at, layout_fn(layout))
    return Feed(pop, layout, line=feed.line)


def supported_neurons() -> list[str]:
    """Names of the spiking node types the chip's neuron models express (NEURON_MODELS)."""
    return sorted(c.__name__ for c in NEURON_MODELS)


def neuron_refusal(where: str, m: nn.Module) -> ValueError:
    """The one-line ValueError for spiking node `m` (module name `where`) whose dynamics none of the chip's neuron
    models (hwmodels.trace.NEURON_KINDS) expresses, e.g. QIFNode, IzhikevichNode, KLIFNode."""
    name = type(m).__name__
    return ValueError(f"layer {where} ({name}): spiking neuron {name} is not supported: its dynamics are not one of "
                      f"the chip's neuron models ({', '.join(CHIP_NEURONS)}); supported neurons: "
                      f"{', '.join(supported_neurons())}")


#: node type -> rule
RULES = {t: neuron_rule for t in NEURON_MODELS}
