"""Recurrent networks in the hardware contract: a NetworkGraph whose projections may form cycles (e.g. the E->E, E->I,
I->E, I->I projections of a balanced Brian2 network). Only the depth of a population changes meaning.
"""
from __future__ import annotations

from hwmodels.trace import NetworkGraph, Population, Projection


class RecurrentGraph(NetworkGraph):
    """A NetworkGraph that accepts cycles (self-projections included).

    depth(p): when the projections that carry a one-timestep delay, those graph.metadata["recurrent"] names (lowered
    SpikingJelly recurrent containers, NIR loops) and every self-projection (which can only act one timestep
    later), leave the others acyclic, the longest path over those others
    (NetworkGraph's rule: a population acts after every same-timestep input, so a skip or residual path around
    a recurrent population does not shorten the pipeline); otherwise (Brian2 imports, whose every synapse acts
    one step later in the recorded trace) the shortest projection path from a population with no in-projection
    (an input), found breadth-first; populations reached from no input get depth 0. With the hardware model's
    pipelined semantics a population at depth d acts at hardware step t + d, as in the feed-forward case; a
    recurrent projection's spikes of timestep t act on their targets' timestep t + 1 in the recorded trace (the
    source simulator already applied the one-step synaptic delay), so no extra pipeline stage is counted for it.
    Raises ValueError as NetworkGraph does, except for cycles. Save with `save`, read back with
    `RecurrentGraph.load` (NetworkGraph.load refuses the cycles).
    """

    def _compute_depth(self) -> dict[str, int]:
        declared = self.metadata.get("recurrent") if isinstance(self.metadata, dict) else None
        delayed = set(declared) if isinstance(declared, dict) else set()
        same_step = [p for p in self.projections if p.name not in delayed and p.source != p.target]
        if not has_cycle(list(self.populations), same_step):
            return _longest_paths(list(self.populations), same_step)
        return self._shortest_paths()

    def _shortest_paths(self) -> dict[str, int]:
        links = edges(self.projections)
        incoming = {b for _, b in links}
        frontier = [name for name in self.populations if name not in incoming]
        depth = {name: 0 for name in self.populations}
        seen = set(frontier)
        d = 0
        while frontier:
            d += 1
            nxt = []
            for a, b in links:
                if a in frontier and b not in seen:
                    seen.add(b)
                    depth[b] = d
                    nxt.append(b)
            frontier = nxt
        return depth


def _longest_paths(population_names: list[str], projections: list[Projection]) -> dict[str, int]:
    """Longest path (in projections, gates included) to each population over acyclic `projections`."""
    depth = {name: 0 for name in population_names}
    for _ in range(len(population_names) + 1):
        changed = False
        for a, b in edges(projections):
            if depth[b] < depth[a] + 1:
                depth[b], changed = depth[a] + 1, True
        if not changed:
            break
    return depth


def edges(projections: list[Projection]) -> list[tuple[str, str]]:
    """(source, target) population pairs a target depends on: every projection's source and, for a gated
    projection (hwmodels.trace Projection.gate, when the contract has it), its gate population."""
    out = [(p.source, p.target) for p in projections]
    return out + [(p.gate, p.target) for p in projections if getattr(p, "gate", None) is not None]


def has_cycle(population_names: list[str], projections: list[Projection]) -> bool:
    """True when the projections form a directed cycle (Kahn's algorithm: some population is never freed)."""
    links = edges(projections)
    indeg = {name: 0 for name in population_names}
    for _, b in links:
        indeg[b] += 1
    ready = [n for n, k in indeg.items() if k == 0]
    freed = 0
    while ready:
        n = ready.pop()
        freed += 1
        for a, b in links:
            if a == n:
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
    return freed < len(indeg)


def make_graph(populations: list[Population], projections: list[Projection], name: str = "network",
               metadata: dict | None = None) -> NetworkGraph:
    """A plain NetworkGraph when the projections are acyclic (depth = longest path), else a RecurrentGraph.
    Raises ValueError as NetworkGraph does (unknown population, repeated names, shapes)."""
    names = [p.name for p in populations]
    if any(end not in set(names) for p in projections for end in (p.source, p.target)):
        return NetworkGraph(populations, projections, name, metadata)  # raises the contract's own error
    cls = RecurrentGraph if has_cycle(names, projections) else NetworkGraph
    return cls(populations, projections, name, metadata)


def load_graph(path) -> NetworkGraph:
    """A graph file written by NetworkGraph.save or RecurrentGraph.save (e.g. a lowered recurrent SpikingJelly
    model, a NIR or Brian2 import), read as the class make_graph gives its projections: a RecurrentGraph when they
    form a cycle (NetworkGraph.load refuses those), else a NetworkGraph. Raises what NetworkGraph.load raises
    (FileNotFoundError, one-line ValueError naming the file) for anything else."""
    try:
        return NetworkGraph.load(path)
    except ValueError as exc:
        try:
            graph = RecurrentGraph.load(path)
        except ValueError:
            raise exc from None
        if not has_cycle(list(graph.populations), graph.projections):
            raise
        return graph
