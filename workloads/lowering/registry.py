"""The one registry of the lowering: module type -> rule.

A rule is fn(build, module, name, at, args) -> value: it reads the symbolic values of the call's arguments
(workloads.lowering.values), may emit populations and projections into `build` (workloads.lowering.build; a
population's values are read from `at`, the fx node name of the call or the module itself) and returns the value
of the call's output. Types are exact (the plain torch class and its SpikingJelly multi-step wrapper each have an
entry; a subclass such as layer.WSConv2d computes something else from its weights), seen through
torch.nn.utils.parametrize. Rules for module types defined outside workloads.lowering (e.g. a container of
workloads.exchange) are added with `register`.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from workloads.lowering import rules_attention, rules_neurons, rules_pooling, rules_recurrent, rules_synaptic
from workloads.lowering import rules_reversible
from workloads.lowering import rules_sssa
from workloads.lowering.naming import base_type

Rule = Callable[..., object]

#: module type -> rule
RULES: dict[type, Rule] = {
    **rules_synaptic.RULES, **rules_pooling.RULES, **rules_neurons.RULES, **rules_recurrent.RULES,
    **rules_attention.RULES,
    **rules_reversible.RULES,
    **rules_sssa.RULES,
}


def register(module_type: type, rule: Rule) -> None:
    """Lower modules of exactly `module_type` with `rule` (replacing any rule it had)."""
    RULES[module_type] = rule


def find_rule(module: nn.Module) -> Rule | None:
    """The rule for `module` (by exact base type, see the module docstring); None when unsupported."""
    return RULES.get(base_type(module))


def supported_types() -> list[str]:
    """Names of all supported module types (for error messages)."""
    return sorted({t.__name__ for t in RULES})
