"""Lowering of BESTformer's reversible couplings (workloads.models.bestformer): weighted sums of spikes and graded
values, where halving a value is a weight of 0.5 on the projection that carries it.

Couple(y, a, b) = y + (a + b) / 2 on populations: one graded relay population "add<k>" (kind "relay", built by
workloads.lowering.build.relay_of as the spikes + spikes residual: it forwards its value every timestep) fed by an
identity projection "identity<j>" from y and a projection "half<j>" of weight 0.5 from each of a and b (a 1x1
depthwise conv: C stored weights of one level, 1 bit, fan-out 1); an operand read twice gets one projection of the
summed weight. Every event of y, a and b is one synaptic event into the relay, which the hardware model charges
like any projection's.
Average(a, b) = (a + b) / 2: on two currents (BESTformer's two heads feeding the readout) the union of their
stages with the 0.5 folded into the weights and biases (no population: the readout "output" gets one projection
per head); on populations, a relay "add<k>" fed by two "half<j>" projections.
"""
from __future__ import annotations

import torch

from workloads.lowering.build import Build, relay_of
from workloads.lowering.naming import layer_error, tag
from workloads.lowering.values import Current, Feed, Stage, add_currents, diagonal_stage, identity_stage
from workloads.models.bestformer import Average, Couple


def _feed_stage(build: Build, feed: Feed, weight: float, where: str, origin: str) -> Stage:
    """weight x the population's output, diagonal: an identity projection for 1, else a "half<j>"-style one."""
    if not feed.plain:
        raise layer_error(where, f"{feed.pop.name} is pooled, flattened or averaged; only plain outputs are summed")
    if weight == 1.0:
        return identity_stage(feed, where)
    return diagonal_stage(feed.pop.name, feed.pop.shape, weight, origin, [where], bits=1,
                          name=build.next_name("half"))


def _merged(terms: list[tuple[object, float]]) -> list[tuple[object, float]]:
    """Terms with the weights of one population summed (a Feed read twice becomes one projection)."""
    out: dict[object, list] = {}
    for value, w in terms:
        key = value.pop.name if isinstance(value, Feed) else id(value)
        out.setdefault(key, [value, 0.0])[1] += w
    return [(v, w) for v, w in out.values()]


def weighted_sum(build: Build, terms: list[tuple[object, float]], where: str, at) -> Feed | Current:
    """sum of weight x value over `terms` [(Feed or Current, weight)]. All Feeds: a graded relay population
    "add<k>" (captured from `at`) with one diagonal projection per distinct operand (module docstring); else a
    Current: Feeds as diagonal stages, Currents with their stages and bias scaled by the weight. Raises ValueError
    naming `where` when the operands' shapes or layouts differ."""
    terms = _merged(terms)
    shapes = {(v.pop.shape if isinstance(v, Feed) else v.out_shape, v.layout) for v, _ in terms}
    if len(shapes) != 1:
        raise layer_error(where, f"cannot sum operands of shapes/layouts {sorted(shapes)}")
    origin = where.rsplit(":", 1)[-1]
    if all(isinstance(v, Feed) for v, _ in terms):
        return relay_of(build, [_feed_stage(build, v, w, where, origin) for v, w in terms], terms[0][0], where, at)
    total = None
    for v, w in terms:
        if isinstance(v, Feed):
            cur = Current([_feed_stage(build, v, w, where, origin)], None, v.pop.shape, v.layout, v.line)
        else:
            n = v.out_shape[0]
            cur = v.scaled(torch.full((n,), w, dtype=torch.float64), torch.zeros(n, dtype=torch.float64), where)
        total = cur if total is None else add_currents(total, cur, where)
    return total


def couple_rule(build: Build, m: Couple, name: str, at, args) -> Feed | Current:
    """Couple(y, a, b) = y + (a + b) / 2 (module docstring)."""
    y, a, b = args
    return weighted_sum(build, [(y, 1.0), (a, 0.5), (b, 0.5)], tag(name, m), at)


def average_rule(build: Build, m: Average, name: str, at, args) -> Feed | Current:
    """Average(a, b) = (a + b) / 2 (module docstring)."""
    a, b = args
    return weighted_sum(build, [(a, 0.5), (b, 0.5)], tag(name, m), at)


#: coupling module type -> rule
RULES = {Couple: couple_rule, Average: average_rule}
