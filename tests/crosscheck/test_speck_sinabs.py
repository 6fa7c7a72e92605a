"""Speck (DYNAP-CNN) mapping against sinabs, SynSense's own toolchain: on a handful of conv SNNs (some ending in
linear layers) our `speck` preset accepts exactly the nets sinabs' `get_valid_mapping` places on the chip's nine
cores, with the same kernel and neuron memory per layer (`DynapcnnLayer.memory_summary`, entries), and puts each
layer on a core sinabs' `get_constraints` says it fits.

sinabs imports samna (SynSense's device library) at module level; the samna on PyPI is a stub that pip-installs
the real one from another index when imported, so it is not installed here and a placeholder module stands in
for it while sinabs is imported (the mapping code never calls it). The input population takes no core on speck
(ChipSpec.input_location "port"), as sinabs feeds the input from the DVS layer outside the nine cores, so nets of
nine layers fit and ten do not.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

import numpy as np
import pytest

from hwmodels.mapping.map import MappingError, map_network
from hwmodels.chip.presets import load_preset
from hwmodels.trace import NetworkGraph, NeuronModel, Population, Projection

torch = pytest.importorskip("torch")
pytest.importorskip("sinabs", reason="sinabs (optional peer, scripts/setup.sh) is not installed")
nn = torch.nn

_FAKE = ("samna", "samnagui")


class _Anything(type):
    """Any attribute of the placeholder is another placeholder class (types in annotations, base classes)."""

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(name, (), {})


class _Placeholder(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(name, (), {})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in _FAKE:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        return _Placeholder(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def _import_sinabs_mapping():
    """(sinabs.layers, DynapcnnNetwork, DynapcnnLayer, get_valid_mapping, the chip's LayerConstraints), importing
    sinabs' dynapcnn backend with samna replaced by a placeholder (and removed from sys.modules afterwards)."""
    finder = _Finder()
    sys.meta_path.insert(0, finder)
    try:
        import sinabs.layers as sl
        from sinabs.backend.dynapcnn import DynapcnnNetwork
        from sinabs.backend.dynapcnn.chips.dynapcnn import DynapcnnConfigBuilder
        from sinabs.backend.dynapcnn.dynapcnn_layer import DynapcnnLayer
        from sinabs.backend.dynapcnn.mapping import get_valid_mapping
    finally:
        sys.meta_path.remove(finder)
        for name in [m for m in sys.modules if m.split(".")[0] in _FAKE]:
            del sys.modules[name]
    return sl, DynapcnnNetwork, DynapcnnLayer, get_valid_mapping, DynapcnnConfigBuilder.get_constraints()


SL, DYNAPCNN_NETWORK, DYNAPCNN_LAYER, GET_VALID_MAPPING, CONSTRAINTS = _import_sinabs_mapping()
IN_SHAPE = (2, 32, 32)

#: layers: ("conv", c_out, kernel, stride, padding[, bias]) or ("linear", features[, bias]) (a Flatten before the
#: first); bias True gives the layer a bias, one bias-memory entry per output channel (1024 per core on Speck)
NETS = {
    "conv8-fc10": [("conv", 8, 3, 2, 1), ("linear", 10)],
    "conv8-fc10-kernel-too-big": [("conv", 8, 3, 1, 0), ("linear", 10)],  # fc kernel 8 x 1024 x 16 = 128 Ki
    "conv16-conv32-fc10-needs-32ki": [("conv", 16, 3, 2, 1), ("conv", 32, 3, 2, 1), ("linear", 10)],
    "conv6k5-conv16k5-fc64-fc10": [("conv", 6, 5, 2, 0), ("conv", 16, 5, 2, 0), ("linear", 64), ("linear", 10)],
    "conv6k5-fc64-too-big": [("conv", 6, 5, 1, 0), ("conv", 16, 5, 2, 0), ("linear", 64), ("linear", 10)],
    "two-64ki-layers": [("conv", 32, 3, 1, 1), ("conv", 64, 3, 2, 1), ("conv", 64, 3, 1, 1), ("conv", 64, 3, 1, 1)],
    "three-64ki-layers": [("conv", 32, 3, 1, 1), ("conv", 64, 3, 2, 1), ("conv", 64, 3, 1, 1),
                          ("conv", 64, 3, 1, 1), ("conv", 64, 3, 1, 1)],
    "five-32ki-layers": [("conv", 32, 3, 2, 1)] + [("conv", 32, 3, 1, 1)] * 5 + [("linear", 10)],
    "big-neurons-and-kernel": [("conv", 64, 3, 1, 1), ("conv", 64, 3, 1, 1)],  # 64 Ki neurons, 64 Ki kernel
    "eight-layers": [("conv", 8, 3, 1, 1)] * 3 + [("conv", 16, 3, 2, 1)] * 3 + [("linear", 32), ("linear", 10)],
    "nine-layers": [("conv", 8, 3, 1, 1)] * 4 + [("conv", 16, 3, 2, 1)] * 3 + [("linear", 32), ("linear", 10)],
    "ten-layers": [("conv", 8, 3, 1, 1)] * 5 + [("conv", 16, 3, 2, 1)] * 3 + [("linear", 32), ("linear", 10)],
    "fc2048-no-bias": [("conv", 1, 3, 8, 1), ("linear", 2048)],  # 16 inputs: kernel 2^(4 + 11) = 32 Ki entries
    "fc1024-bias": [("conv", 1, 3, 8, 1, True), ("linear", 1024, True)],
    "fc2048-bias": [("conv", 1, 3, 8, 1, True), ("linear", 2048, True)],  # 2048 biases > 1024 entries
    "conv1100-bias": [("conv", 1100, 1, 8, 0, True)],
    "conv1100-no-bias": [("conv", 1100, 1, 8, 0)],
    "nine-layers-two-16ki-kernels-left": [("conv", 32, 3, 2, 1), ("conv", 32, 3, 1, 1), ("conv", 32, 3, 1, 1)]
    + [("conv", 8, 3, 1, 1)] * 4 + [("linear", 16), ("linear", 10)],
}


def _torch_net(layers: list, seed: int) -> nn.Sequential:
    gen = torch.Generator().manual_seed(seed)
    mods, shape = [], IN_SHAPE
    for kind, *args in layers:
        bias = len(args) in (2, 5) and args[-1] is True
        if kind == "conv":
            c_out, k, stride, pad = args[:4]
            mods.append(nn.Conv2d(shape[0], c_out, k, stride=stride, padding=pad, bias=bias))
            side = (shape[1] + 2 * pad - k) // stride + 1
            shape = (c_out, side, side)
        else:
            if len(shape) == 3:
                mods.append(nn.Flatten())
            mods.append(nn.Linear(int(np.prod(shape)), args[0], bias=bias))
            shape = (args[0],)
        with torch.no_grad():
            mods[-1].weight.copy_(torch.randn(mods[-1].weight.shape, generator=gen))
            if bias:
                mods[-1].bias.copy_(torch.randn(mods[-1].bias.shape, generator=gen))
        mods.append(SL.IAFSqueeze(batch_size=1))
    return nn.Sequential(*mods)


def _graph(net: nn.Sequential) -> NetworkGraph:
    """Our NetworkGraph of the same layers: an input population, then one population per conv / linear."""
    pops, projs, shape = [Population("in", IN_SHAPE, NeuronModel(kind="input"))], [], IN_SHAPE
    for mod in net:
        if not isinstance(mod, (nn.Conv2d, nn.Linear)):
            continue
        w = mod.weight.detach().numpy()
        src, name = pops[-1].name, f"l{len(projs)}"
        if isinstance(mod, nn.Conv2d):
            side = (shape[1] + 2 * mod.padding[0] - mod.kernel_size[0]) // mod.stride[0] + 1
            shape = (mod.out_channels, side, side)
        else:
            shape = (mod.out_features,)
        bias = None if mod.bias is None else np.repeat(mod.bias.detach().numpy(), int(np.prod(shape[1:])))
        if isinstance(mod, nn.Conv2d):
            projs.append(Projection(name, src, name, "conv", w, stride=mod.stride, padding=mod.padding, bias=bias))
        else:
            projs.append(Projection(name, src, name, "dense", w, bias=bias))
        pops.append(Population(name, shape))
    return NetworkGraph(pops, projs)


def _sinabs(net: nn.Sequential) -> tuple[list[dict] | None, list]:
    """(sinabs' chip core per layer or None when get_valid_mapping finds none, its memory summaries)."""
    dyn = DYNAPCNN_NETWORK(net, input_shape=IN_SHAPE, discretize=False)
    layers = [m for m in dyn.sequence if isinstance(m, DYNAPCNN_LAYER)]
    summaries = [{k: int(v) for k, v in m.memory_summary().items()} for m in layers]
    try:
        cores = [core for _, core in sorted(GET_VALID_MAPPING(dyn, CONSTRAINTS))]
    except ValueError as err:
        assert "No valid mapping found" in str(err)
        cores = None
    return cores, summaries


@pytest.mark.parametrize("name", list(NETS))
def test_speck_accepts_what_sinabs_accepts_with_the_same_memory(name):
    net = _torch_net(NETS[name], seed=len(name))
    sinabs_cores, summaries = _sinabs(net)
    graph, chip = _graph(net), load_preset("speck")
    try:
        m = map_network(graph, chip)
    except MappingError as err:
        assert sinabs_cores is None, f"sinabs maps {name} onto cores {sinabs_cores}; we refuse it: {err}"
        return
    assert sinabs_cores is not None, f"sinabs finds no valid mapping for {name}; we map it"
    layers = [p for p in graph.populations if p != "in"]
    assert m.core_population == ("in", *layers)  # one core per layer, the input on the port (no chip core)
    assert m.chip_cores_used == len(layers) and m.is_port.tolist() == [True] + [False] * len(layers)
    ours = [{"kernel": int(m.core_synapse_bits[i + 1]) // 8, "neuron": int(m.core_state_bits[i + 1]) // 16}
            for i in range(len(layers))]
    assert ours == [{"kernel": s["kernel"], "neuron": s["neuron"]} for s in summaries]
    chip_core = m.tile_xy[:, 1] * chip.mesh_width + m.tile_xy[:, 0]  # one core per tile, row by row
    for i, s in enumerate(summaries):  # each layer sits on a core sinabs says it fits
        c = CONSTRAINTS[int(chip_core[i + 1])]
        assert s["kernel"] <= c.kernel_memory and s["neuron"] <= c.neuron_memory, (name, i, int(chip_core[i + 1]))


def test_the_nets_cover_both_verdicts_and_the_big_cores():
    """The cases above are not all one-sided: sinabs accepts some, refuses others, and uses cores 3-6."""
    verdicts = {name: _sinabs(_torch_net(layers, seed=len(name)))[0] for name, layers in NETS.items()}
    assert {name for name, cores in verdicts.items() if cores is None} == {
        "conv8-fc10-kernel-too-big", "conv6k5-fc64-too-big", "three-64ki-layers", "five-32ki-layers",
        "big-neurons-and-kernel", "ten-layers", "fc2048-bias", "conv1100-bias"}
    assert len(verdicts["nine-layers"]) == 9  # all nine cores, the input on none
    # bias memory (1024 entries a core) decides these, nothing else
    assert verdicts["fc2048-bias"] is None and verdicts["conv1100-bias"] is None
    assert all(verdicts[n] is not None for n in ("fc1024-bias", "fc2048-no-bias", "conv1100-no-bias"))
    assert set(verdicts["two-64ki-layers"]) >= {5, 6} and set(verdicts["conv16-conv32-fc10-needs-32ki"]) & {3, 4, 5, 6}
