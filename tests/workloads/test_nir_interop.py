"""NIR interoperability with the peers through their own NIR code: snnTorch's export_to_nir (nirtorch) into our
import, lowering and simulation; our export of the default MNIST model into nir.read (type-checked), snnTorch's
import_from_nir and SpikingJelly's nir_exchange, with the same spikes on the same input."""
import contextlib
import io

import nir
import numpy as np
import pytest
import torch
from torch import nn

from hwmodels import load_preset, simulate
from workloads.data import load_dataset
from workloads.encoding import encode
from workloads.exchange.nir_io import nir_workload, save_nir
from workloads.lowering import lower
from workloads.models import build_model

snn = pytest.importorskip("snntorch")
import nirtorch  # noqa: E402,F401  (a pinned peer: scripts/setup.sh installs it with snntorch)
from snntorch.export_nir import export_to_nir  # noqa: E402  (needs nirtorch)
from snntorch.import_nir import import_from_nir  # noqa: E402


def _spikes(seed: int, shape) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.4).float()


def _leaky(shape, beta: float, threshold: float = 1.0, output: bool = False):
    """snnTorch Leaky with per-neuron beta/threshold (export_to_nir needs the layer shape for NIR's type check) and
    the reset NIR's LIF describes (to v_reset 0 in the step that fires): snnTorch's export writes v_reset 0 whatever
    the module's reset_mechanism/reset_delay, so its defaults (subtract, delayed) would not survive the export."""
    return snn.Leaky(beta=torch.full(shape, beta), threshold=torch.full(shape, threshold), init_hidden=True,
                     output=output, reset_mechanism="zero", reset_delay=False)


def _snntorch_spikes(net: nn.Module, x: torch.Tensor, per_sample: bool = False) -> dict[str, np.ndarray]:
    """Spikes (T, N, ...) of every snn.Leaky of `net` run step by step on x (T, N, ...) from reset state.
    per_sample: run each sample unbatched (snnTorch's import reads NIR Flatten dims as torch's, batch included)."""
    names = [n for n, m in net.named_modules() if isinstance(m, snn.Leaky)]
    rec = {n: [] for n in names}
    hooks = [net.get_submodule(n).register_forward_hook(
        lambda m, a, o, n=n: rec[n].append((o[0] if isinstance(o, tuple) else o).detach().clone())) for n in names]
    batches = [x[:, s] for s in range(x.shape[1])] if per_sample else [x]
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        for xb in batches:
            for n in names:
                net.get_submodule(n).reset_hidden()
            state = None
            for t in range(x.shape[0]):
                out = net(xb[t]) if state is None and not per_sample else net(xb[t], state)
                state = out[1] if per_sample else None
    for h in hooks:
        h.remove()
    out = {}
    for n, v in rec.items():
        a = torch.stack(v).numpy()
        out[n] = a.reshape(len(batches), x.shape[0], *a.shape[1:]).swapaxes(0, 1) if per_sample else a
    return out


def _ours(graph, trace, name: str) -> np.ndarray:
    pop = graph.populations[name]
    return trace.to_dense(name, pop.shape).swapaxes(0, 1)  # (T, N, ...)


def _check_snntorch(net: nn.Module, g: nir.NIRGraph, x: torch.Tensor, leaky_pops: dict[str, str]):
    graph, trace = nir_workload(g, x)
    ref = _snntorch_spikes(net, x)
    for module, pop in leaky_pops.items():
        np.testing.assert_array_equal(_ours(graph, trace, pop), ref[module], err_msg=pop)
        assert ref[module].sum() >= 5, module
    result = simulate(graph, trace, load_preset("loihi"))
    assert result.energy_j > 0 and result.synops > 0
    return graph


def test_snntorch_mlp_exported_by_snntorch_imports_and_matches_its_spikes():
    torch.manual_seed(3)
    net = nn.Sequential(nn.Linear(10, 8), _leaky((8,), 0.75), nn.Linear(8, 4), _leaky((4,), 0.5, 0.6, output=True))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
        net[2].weight.mul_(3.0)
    g = export_to_nir(net, torch.zeros(10))
    graph = _check_snntorch(net, g, _spikes(4, (25, 3, 10)), {"1": "lif1", "3": "lif2"})
    assert graph.populations["lif1"].neuron.tau == pytest.approx(4.0)


def test_snntorch_conv_net_exported_by_snntorch_imports_and_matches_its_spikes():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), _leaky((4, 8, 8), 0.5), nn.AvgPool2d(2), nn.Flatten(),
                        nn.Linear(64, 6), _leaky((6,), 0.75, output=True))
    with torch.no_grad():
        net[0].weight.mul_(2.0)
        net[4].weight.mul_(4.0)
    g = export_to_nir(net, torch.zeros(1, 2, 8, 8), ignore_dims=[0])  # with the batch dim nir's type check fails
    graph = _check_snntorch(net, g, _spikes(6, (12, 3, 2, 8, 8)), {"1": "lif1", "5": "lif2"})
    assert [p.kind for p in graph.projections] == ["conv", "dense"]


def test_batch_dimension_written_by_nirtorch_into_the_input_is_recognised():
    """nirtorch.extract_nir_graph writes the sample's whole shape (batch included) into the Input node."""
    from snntorch.export_nir import _extract_snntorch_module
    torch.manual_seed(7)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), _leaky((3, 4, 4), 0.5), nn.Flatten(), nn.Linear(48, 5),
                        _leaky((5,), 0.5, output=True))
    with torch.no_grad():
        net[0].weight.mul_(3.0)
    g = nirtorch.extract_nir_graph(net, _extract_snntorch_module, torch.zeros(7, 1, 6, 6))
    assert list(g.nodes["input"].input_type["input"]) == [7, 1, 6, 6]
    graph, _ = nir_workload(g, _spikes(8, (5, 2, 1, 6, 6)))
    assert graph.populations["input"].shape == (1, 6, 6)


# ------------------------------------------------------------------ our export read by the peers


@pytest.fixture(scope="module")
def mnist_export(tmp_path_factory):
    """The default model (mnist_conv, LIF tau 2, max-pools) on digits, conv weights x4 so every layer spikes,
    lowered on 6 direct-encoded samples (T=4) and written with save_nir."""
    ds = load_dataset("digits", seed=0)
    model = build_model("mnist_conv", ds.in_shape, ds.n_classes, seed=0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(4.0)
    x = encode(ds.x_test[:6], 4, "direct").float()
    graph, trace = lower(model, x)
    path = tmp_path_factory.mktemp("nir") / "mnist.nir"
    save_nir(graph, path)
    return graph, trace, x, path


_HIDDEN = ("lif1", "pool1", "lif2", "pool2")


def test_exported_mnist_model_passes_nir_type_check_with_max_pool_as_avg_pool(mnist_export):
    graph, trace, _, path = mnist_export
    g = nir.read(path)  # type_check=True
    assert isinstance(g.nodes["maxpool1"], nir.AvgPool2d) and isinstance(g.nodes["pool1"], nir.LIF)
    assert all(trace.counts()[..., list(trace.populations).index(p)].sum() >= 20 for p in _HIDDEN)


def test_exported_mnist_model_runs_in_snntorch_with_our_spikes(mnist_export):
    graph, trace, x, path = mnist_export
    with contextlib.redirect_stdout(io.StringIO()):
        net = import_from_nir(nir.read(path))
    ref = _snntorch_spikes(net, x, per_sample=True)
    for name in _HIDDEN:
        np.testing.assert_array_equal(ref[name], _ours(graph, trace, name), err_msg=name)


def test_exported_mnist_model_runs_in_spikingjelly_nir_exchange_with_our_spikes(mnist_export):
    from spikingjelly.activation_based.nir_exchange import import_from_nir as sj_import
    graph, trace, x, path = mnist_export
    gm = sj_import(path, dt=1e-4, step_mode="s")
    rec = {n: [] for n in _HIDDEN}
    hooks = [gm.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: rec[n].append(o[0].clone()))
             for n in _HIDDEN]
    with torch.no_grad():
        state, outs = None, []
        for t in range(x.shape[0]):
            out, state = gm(x[t], state)
            outs.append(out)
    for h in hooks:
        h.remove()
    for name in _HIDDEN:
        np.testing.assert_array_equal(torch.stack(rec[name]).numpy(), _ours(graph, trace, name), err_msg=name)
