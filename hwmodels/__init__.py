"""Hardware model of a neuromorphic core array: chip specs and presets, mapping, simulation (DES and analytic).

Never imports torch, spikingjelly, brian2, workloads or codesign: it consumes only the contract in
`hwmodels.trace` (NetworkGraph + EventTrace).
"""
from hwmodels.mapping.map import PLACEMENTS, Mapping, MappingError, map_network
from hwmodels.chip.presets import apply_overrides, list_presets, load_preset, override_keys
from hwmodels.result import SimResult
from hwmodels.simcache import SimCache
from hwmodels.simulate import MODELS, simulate
from hwmodels.chip.spec import ChipSpec, CoreSpec, FormatCosts, RouterSpec
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection, concat_traces

__all__ = ["EventTrace", "NetworkGraph", "NeuronModel", "Population", "Projection", "concat_traces",
           "ChipSpec", "CoreSpec", "FormatCosts", "RouterSpec", "load_preset", "list_presets", "apply_overrides",
           "override_keys", "Mapping", "MappingError", "map_network", "PLACEMENTS", "SimResult", "SimCache",
           "simulate", "MODELS"]
