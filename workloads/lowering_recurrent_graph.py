"""SpikingJelly's recurrent containers in fx-traced forwards (workloads.lowering_graph): the Sequential rules of
workloads.lowering_recurrent run on a one-layer walk positioned on the container's input, and what they emit (the
population, its feed-forward projection and the recurrent projection "rec<k>") joins the graph build.
"""
from __future__ import annotations

from hwmodels.trace import Population
from workloads.lowering_graph_rules import _one_layer_walk, _tag
from workloads.lowering_recurrent import RECURRENT_RULES
from workloads.lowering_rules import Walk, _Weight
from workloads.lowering_values import Current, Feed, GraphBuild, add_population, layout_fn


def _walk_on(build: GraphBuild, value, tag: str) -> Walk:
    """A one-layer walk (sharing the build's name counters) on spikes (Feed) or on a Current of one ungated term
    (its weights pending, as after a Linear in a Sequential). ValueError naming `tag` otherwise."""
    if isinstance(value, Feed):
        walk = _one_layer_walk(build, value)
    elif isinstance(value, Current) and len(value.terms) == 1 and value.terms[0].gate is None:
        t = value.terms[0]
        src = next(p for p in build.walk.populations if p.name == t.source)
        w = build.walk
        walk = Walk(src, tuple(value.out_shape), w.weight_bits, w.storage, w.layer_bits, w.layer_storage,
                    w.state_bits, line=w.line)
        walk.weight = _Weight(t.kind, t.w, value.bias, tuple(value.out_shape), t.origin, t.stride, t.padding,
                              t.dilation, t.groups, t.bits, t.storage, t.name)
        walk.tags = list(t.tags)
    else:
        raise ValueError(f"layer {tag}: a recurrent container needs spikes or one weight layer's output as input, "
                         "not a sum of currents")
    walk.counters = build.walk.counters
    return walk


def recurrent_rule(build: GraphBuild, m, name: str, node, args) -> Feed:
    """LinearRecurrentContainer / ElementWiseRecurrentContainer on a traced value: the population of its node,
    captured from the container's output (its activity from the node, workloads.lowering_graph._node_sources)."""
    tag = _tag(name, m)
    walk = _walk_on(build, args[0], tag)
    RECURRENT_RULES[type(m)](walk, m, name)
    pop: Population = walk.populations[-1]
    layout = "chw" if len(pop.shape) == 3 else "flat"
    shared = build.walk
    shared.projections.extend(walk.projections)
    shared.origin.update(walk.origin)
    shared.layers["projections"].update(walk.layers["projections"])
    shared.recurrent.update(walk.recurrent)
    add_population(build, pop, walk.layers["populations"][pop.name], node.name, layout_fn(layout))
    return Feed(pop, layout)


#: container type -> graph rule (workloads.lowering_graph.GRAPH_RULES)
RECURRENT_GRAPH_RULES = {t: recurrent_rule for t in RECURRENT_RULES}
