"""What a saved EventTrace's meta holds (an .npz trace and a streamed trace folder alike): the format versions,
the required keys, and the checked optional entries (activity columns, sizes, graph fingerprint).
"""
from __future__ import annotations

from hwmodels.npzfile import quote

#: version written by EventTrace.save and hwmodels.stream; 2 adds neuron activity and predictions
TRACE_FORMAT_VERSION = 2
#: trace versions EventTrace.load and hwmodels.stream.open_trace read (1: no activity, the default rule applies)
TRACE_VERSIONS_READ = (1, 2)


#: keys (and JSON types) every saved trace's meta holds (.npz and streamed folders)
TRACE_META = {"format_version": int, "populations": list, "n_samples": int, "n_timesteps": int}


def activity_columns(meta: dict, name: str, kind: type) -> dict[str, int]:
    """{population: its index} of the populations whose activity a trace meta lists (a list in an .npz trace,
    a {population: bytes per row} object in a streamed one: `kind`). Raises ValueError naming the file `name`
    when the entry is not of `kind` or names an unknown population."""
    listed = meta.get("activity", kind())
    if not isinstance(listed, kind):
        raise ValueError(f"{name}: meta['activity'] is {quote(listed)}, expected a JSON {kind.__name__}")
    pops = meta["populations"]
    for pop in listed:
        if pop not in pops:
            raise ValueError(f"{name}: meta['activity'] names {quote(pop)}, not one of the trace's populations")
    return {pop: pops.index(pop) for pop in listed}


def optional_meta(meta: dict, name: str) -> dict:
    """{"sizes", "graph_fingerprint"} of a trace meta (None when absent; the EventTrace constructor checks the
    entries of sizes). Raises ValueError naming the file `name` when sizes is not a JSON object or the
    fingerprint not a string."""
    sizes, fp = meta.get("sizes"), meta.get("graph_fingerprint")
    if sizes is not None and not isinstance(sizes, dict):
        raise ValueError(f"{name}: meta['sizes'] is {quote(sizes)}, expected a JSON object {{population: neurons}}")
    if fp is not None and not isinstance(fp, str):
        raise ValueError(f"{name}: meta['graph_fingerprint'] is {quote(fp)}, expected a string")
    return {"sizes": sizes, "graph_fingerprint": fp}
