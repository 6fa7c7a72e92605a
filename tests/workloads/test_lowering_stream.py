"""lower(..., out=folder) streams the trace batch by batch into a trace folder: the same trace as in memory,
complete or absent."""
import numpy as np
import pytest
import torch

from hwmodels import load_preset, simulate
from workloads import lower
from workloads.models import build_model

T, N = 2, 7


def _net_and_inputs():
    net = build_model("mnist_conv", (1, 28, 28), 10, seed=3)
    x = torch.rand((T, N, 1, 28, 28), generator=torch.Generator().manual_seed(5))
    return net, x


def test_streamed_trace_equals_the_in_memory_trace(tmp_path):
    net, x = _net_and_inputs()
    labels = np.arange(N) % 10
    graph, mem = lower(net, x, labels=labels, batch_size=3)
    graph2, disk = lower(net, x, labels=labels, batch_size=3, out=tmp_path / "trace")
    assert graph2.fingerprint() == graph.fingerprint()
    assert (disk.populations, disk.n_samples, disk.n_timesteps) == (mem.populations, N, T)
    for attr in ("offsets", "indices", "values", "labels", "predictions"):
        np.testing.assert_array_equal(getattr(disk, attr), getattr(mem, attr))
    assert disk.activity.keys() == mem.activity.keys()
    for name in mem.activity:
        np.testing.assert_array_equal(np.asarray(disk.activity[name]), mem.activity[name])
    assert (disk.sizes, disk.graph_fingerprint) == (mem.sizes, mem.graph_fingerprint)
    chip = load_preset("loihi")
    a, b = simulate(graph, mem, chip, model="analytic"), simulate(graph, disk, chip, model="analytic")
    assert a.energy_j == b.energy_j and a.latency_s == b.latency_s
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace"]


def test_out_is_checked_before_any_work(tmp_path):
    net, x = _net_and_inputs()
    (tmp_path / "taken").mkdir()
    with pytest.raises(ValueError, match="out: .*taken.* exists already"):
        lower(net, x, out=tmp_path / "taken")
    with pytest.raises(ValueError, match="out: the parent folder of .* does not exist"):
        lower(net, x, out=tmp_path / "no" / "trace")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")  # failed at the final rename, after the recording
    with pytest.raises(ValueError, match="out: .*dangling.* exists already"):
        lower(net, x, out=tmp_path / "dangling")
    with pytest.raises(ValueError, match=r"out: the name 'bbbb.*is too long \(240 bytes; at most 237 here\)"):
        lower(net, x, out=tmp_path / ("b" * 240))  # a plain mkdir takes it; the temporary name did not fit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "taken"]


def test_a_failed_recording_leaves_no_folder(tmp_path):
    """An error in the second batch's forward pass: no `out`, no temporary folder."""
    net, x = _net_and_inputs()
    calls = []

    def fail_second(module, args, output):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")

    handle = net[0].register_forward_hook(fail_second)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            lower(net, x, batch_size=4, out=tmp_path / "trace")
    finally:
        handle.remove()
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("policy", ["widen", "quantize"])
def test_fit_and_fingerprint_start_once_the_last_batch_is_recorded(monkeypatch, policy):
    """weight_fit "widen" / "quantize" never refuse: their fit and the graph fingerprint run after the last
    batch's forward pass (beside its trace write, never beside a forward), once; "error" fits before any
    recording."""
    from workloads.lowering import engine, recorder
    net, x = _net_and_inputs()
    order, recorded = [], []
    fit, record = engine.fit_graph, recorder._record_batch
    # order: ("fit", batches recorded when the fit starts; the fit runs on a worker)
    monkeypatch.setattr(engine, "fit_graph", lambda *a, **k: order.append(("fit", len(recorded))) or fit(*a, **k))
    monkeypatch.setattr(recorder, "_record_batch", lambda *a, **k: (record(*a, **k), recorded.append(1))[0])
    graph, trace = lower(net, x, batch_size=3, weight_fit=policy)
    assert order == [("fit", 3)] and len(recorded) == 3
    assert graph.metadata["weight_fit"]["conv1"]["policy"] == policy
    assert trace.graph_fingerprint == graph.fingerprint()
    order.clear()
    recorded.clear()
    with pytest.raises(ValueError, match="weight_fit: projection 'conv1'"):
        lower(net, x, batch_size=3, weight_fit="error")
    assert order == [("fit", 0)]


@pytest.mark.parametrize("part", ["fit_graph", "projection_fit"])
def test_a_failed_late_fit_leaves_no_folder(tmp_path, monkeypatch, part):
    """The fit of "widen" runs beside the trace write (a job per projection, then the report); if either part
    fails, the folder is removed, not renamed to out."""
    from workloads.lowering import engine

    def boom(*args, **kwargs):
        raise RuntimeError("fit failed")

    monkeypatch.setattr(engine, part, boom)
    net, x = _net_and_inputs()
    with pytest.raises(RuntimeError, match="fit failed"):
        lower(net, x, batch_size=4, out=tmp_path / "trace")
    assert list(tmp_path.iterdir()) == []


def test_a_link_planted_at_the_temporary_name_is_never_written_through(tmp_path):
    """The temporary folder had a predictable name (.<out>.partial-<pid>): a link planted there made the trace
    land in the link's target and `out` become that link."""
    import os
    net, x = _net_and_inputs()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / f".trace.partial-{os.getpid()}").symlink_to(elsewhere)
    _, disk = lower(net, x, out=shared / "trace")
    assert list(elsewhere.iterdir()) == [] and not (shared / "trace").is_symlink()
    assert (shared / "trace" / "meta.json").is_file() and disk.n_samples == N
    mode = (shared / "trace").stat().st_mode & 0o777
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == 0o777 & ~umask
