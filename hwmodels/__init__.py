"""Hardware model of a neuromorphic core array: chip specs and presets, mapping, simulation (DES and analytic).

Never imports torch, spikingjelly, brian2, workloads or codesign: it consumes only the contract in
`hwmodels.trace` (NetworkGraph + EventTrace).
"""
from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection, concat_traces

__all__ = ["EventTrace", "NetworkGraph", "NeuronModel", "Population", "Projection", "concat_traces"]
