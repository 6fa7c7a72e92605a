"""The lowering's fast paths give the bytes of the plain computations they replace: numpy's comparisons for neuron
activity, the event mask split from its CSR events, packing before the transpose, the compiled float64
quantization, the quantized Parameters handed to the model copy, and the worker (Jobs) that runs the numpy work,
the weight fit and the fingerprint beside the forward passes."""
import threading

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from hwmodels.activity import pack
from hwmodels.trace import NeuronModel, Population
from workloads import lower
from workloads.lowering import fit
from workloads.lowering.activity import (node_activity_torch, node_activity, packed, packed_rows, population_activity,
                                         value_activity)
from workloads.lowering.events import event_mask, mask_events, population_events
from workloads.lowering.fit import quantize_model, quantize_rows, quantized_model
from workloads.lowering import activity, events
from workloads.lowering.activity_kernel import activity_rows
from workloads.lowering.jobs import Jobs
from workloads.models import build_model


def _rng_tensor(seed: int, shape, density: float = 0.3, dtype=torch.float32) -> torch.Tensor:
    """Seeded values with exact zeros, a -0.0 and a NaN mixed in."""
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64)
    t[torch.rand(shape, generator=g, dtype=torch.float64) > density] = 0.0
    flat = t.view(-1)
    flat[0], flat[1] = -0.0, float("nan")
    return t.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("v_reset", [None, 0.0, 0.1])
@pytest.mark.parametrize("v0", ["float", "tensor", "stale"])
def test_node_activity_numpy_equals_torch(dtype, v_reset, v0):
    x, spikes = _rng_tensor(1, (3, 4, 5, 6), dtype=dtype), (_rng_tensor(2, (3, 4, 5, 6), dtype=dtype) > 0).to(dtype)
    v_seq = _rng_tensor(3, (3, 4, 5, 6), dtype=dtype)
    v_seq[1, 0] = 0.1  # equal to the rest of v_reset 0.1 in the tensor's dtype
    start = {"float": 0.1, "tensor": _rng_tensor(4, (4, 5, 6), dtype=dtype), "stale": torch.ones(2)}[v0]
    rest = 0.0 if v_reset is None else v_reset
    got = node_activity(x, start, v_seq, spikes, v_reset)
    want = node_activity_torch(x, start, v_seq, spikes, rest)
    assert got.dtype == torch.bool and got.shape == (4, 4, 5, 6)
    assert torch.equal(got, want)
    assert bool(got[0].reshape(-1)[1]) and bool(got[1].reshape(-1)[1])  # a NaN input, a NaN potential: active


def test_node_activity_other_dtypes_take_torch():
    x = _rng_tensor(5, (2, 3, 4), dtype=torch.float16)
    v_seq, spikes = _rng_tensor(6, (2, 3, 4), dtype=torch.float16), (x > 0).half()
    assert torch.equal(node_activity(x, 0.0, v_seq, spikes, 0.0), node_activity_torch(x, 0.0, v_seq, spikes, 0.0))


@pytest.mark.parametrize("graded", [False, True])
def test_event_mask_and_events_equal_the_plain_rule(graded):
    n_t, n_b = 3, 4
    pop = Population("p", (2, 5), NeuronModel("relay" if graded else "IF"), graded=graded)
    values = _rng_tensor(7, (n_t, n_b, 2, 5))
    mask, vals = event_mask(values, pop, n_t, n_b, True)
    ev = mask_events(mask, vals, True)
    rows = values.reshape(n_t * n_b, -1).numpy()
    counts = np.count_nonzero(rows != 0, axis=1)
    np.testing.assert_array_equal(ev.counts, counts)
    assert ev.counts.dtype == np.int64 and ev.indices.dtype == np.int32 and ev.values.dtype == np.float32
    np.testing.assert_array_equal(ev.indices, np.concatenate([np.flatnonzero(r != 0) for r in rows]))
    want = np.concatenate([r[r != 0] for r in rows]) if graded else np.ones(counts.sum(), np.float32)
    np.testing.assert_array_equal(ev.values, want)  # NaN in the same place
    again = population_events(values, pop, n_t, n_b, True)
    for a, b in zip((again.counts, again.indices, again.values), (ev.counts, ev.indices, ev.values)):
        np.testing.assert_array_equal(a, b)
    assert mask_events(mask, None, False).values is None
    values.zero_()  # the mask and the values taken are copies: changing the tensor later changes nothing
    np.testing.assert_array_equal(mask_events(mask, vals, True).indices, ev.indices)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("graded", [False, True])
def test_event_mask_of_a_token_view_equals_that_of_its_copy(dtype, graded):
    """Token populations come as the view (T, B, D, L) of a (T, B, L, D) tensor (values.layout_fn): read without
    a copy, the mask is the copy's, NaN and -0.0 included; a graded population's values take the copy."""
    n_t, n_b, n_l, n_d = 2, 3, 5, 4
    pop = Population("tok", (n_d, 1, n_l), NeuronModel("relay" if graded else "LIF"), graded=graded)
    tokens = _rng_tensor(9, (n_t, n_b, n_l, n_d), dtype=dtype)
    tokens[0, 0, 0, :3] = torch.tensor([float("nan"), -0.0, 0.0], dtype=dtype)
    view = tokens.transpose(-1, -2)
    assert events._swapped_view(view, n_t, n_b) is not None and events._swapped_view(tokens, n_t, n_b) is None
    mask, vals = event_mask(view, pop, n_t, n_b, True)
    want_mask, want_vals = event_mask(view.contiguous().reshape(n_t, n_b, -1), pop, n_t, n_b, True)
    assert mask.dtype == bool and mask.flags.c_contiguous and np.array_equal(mask, want_mask)
    assert (vals is None) == (not graded) and (want_vals is None) == (not graded)
    if graded:
        np.testing.assert_array_equal(vals, want_vals)
    with pytest.raises(ValueError, match="population 'tok': recorded 20 neurons per step, expected 24"):
        event_mask(view, Population("tok", (4, 2, 3), NeuronModel("LIF")), n_t, n_b, False)


def test_event_mask_names_a_wrong_size():
    pop = Population("p", (2, 5), NeuronModel("IF"))
    with pytest.raises(ValueError, match="population 'p': recorded 9 neurons per step, expected 10"):
        event_mask(torch.zeros(2, 3, 9), pop, 2, 3, False)


@pytest.mark.parametrize("d, l", [(12, 5), (16, 8), (3, 7)])
def test_packed_rows_of_a_token_view_equal_packing_its_copy(d, l):
    # a token population's rows: neurons numbered (D, L), read through a transposed view of (L, D) memory
    mem = torch.rand((4, 3, l, d), generator=torch.Generator().manual_seed(d)) > 0.6
    view = mem.transpose(2, 3)
    assert not view.is_contiguous()
    pop = Population("lif", (d, l), NeuronModel("LIF"))
    got = packed_rows(pop, view, 3, 3)
    want = pack(view.contiguous().reshape(4, 3, d * l).transpose(0, 1).numpy())
    np.testing.assert_array_equal(got, want)
    assert got.flags.c_contiguous and got.shape == (3, 4, (d * l + 7) // 8)
    with pytest.raises(ValueError, match=f"recorded activity of {d * l} neurons, expected {d * l + 1}"):
        packed_rows(Population("lif", (d * l + 1,), NeuronModel("LIF")), view, 3, 3)


def test_packed_and_mask_activity_equal_packing_the_transposed_rows():
    act = torch.rand((5, 3, 13), generator=torch.Generator().manual_seed(8)) > 0.5
    np.testing.assert_array_equal(packed(act), pack(act.transpose(0, 1).numpy()))
    assert packed(act).flags.c_contiguous
    pop = Population("pool1", (13,), NeuronModel("IF"))
    values = torch.rand((4, 3, 13), generator=torch.Generator().manual_seed(9)).round()
    mask, _ = event_mask(values, pop, 4, 3, False)
    got = population_activity(pop, mask, None, 4, 3)
    np.testing.assert_array_equal(got, packed(value_activity(values)))
    assert got.shape == (3, 5, 2) and not got[:, 4].any()
    assert population_activity(Population("input", (13,), NeuronModel("input")), mask, None, 4, 3) is None


def _quantize_reference(w: torch.Tensor, bits: int, keep: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The whole-array torch computation quantize_rows replaced for b >= 2 (rows `keep` untouched)."""
    rows = w.reshape(len(w), -1).double()
    step = w.reshape(len(w), -1).abs().amax(1, keepdim=True).double() / (2 ** (bits - 1) - 1)
    q = rows / torch.where(step > 0, step, 1.0)
    q.round_()
    q.mul_(step)
    q[keep] = rows[keep]
    q = q.to(w.dtype)
    return q.reshape(w.shape), float((q.double() - rows).abs_().max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_quantize_rows_equals_the_whole_array_computation(dtype, bits):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn((9, 7, 3, 3), generator=g, dtype=dtype)
    w[2] = 0.0  # an all-zero channel (step 0)
    w[3] = torch.randint(-3, 4, (7, 3, 3), generator=g).to(dtype) * 0.25  # already on a 2-bit-or-finer grid
    w[4, 0, 0, 0] = 0.5 * w[4].abs().max() / (2 ** (bits - 1) - 1)  # a tie: rounded half to even
    q, err = quantize_rows(w, bits, False)
    keep = torch.tensor([c == 3 and bits >= 3 for c in range(9)]) | torch.tensor([c == 2 for c in range(9)])
    want, want_err = _quantize_reference(w, bits, keep)
    assert q.dtype == dtype and q.shape == w.shape
    assert torch.equal(q, want) and err == want_err and err > 0.0
    assert torch.equal(q[3], w[3]) == (bits >= 3)


def test_quantize_rows_empty_and_nan():
    q, err = quantize_rows(torch.zeros((2, 0)), 8, False)
    assert q.shape == (2, 0) and err == 0.0
    w = torch.tensor([[1.0, float("nan")], [0.5, -1.0]])
    q, err = quantize_rows(w, 8, False)
    assert np.isnan(err) and torch.equal(q[1], torch.tensor([0.5, -1.0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activity_kernel_equals_numpy_comparisons_and_strided_inputs_fall_back(dtype):
    rng = np.random.default_rng(4)
    x, v, s = (np.where(rng.random((3, 5, 7)) < 0.4, rng.standard_normal((3, 5, 7)), 0.0).astype(dtype)
               for _ in range(3))
    x[0, 0, 0], x[1, 0, 0], v[0, 1, 1], v[1, 2, 2] = np.nan, -0.0, dtype(0.1), np.nan
    rest = 0.1
    want = np.empty((4, 5, 7), bool)  # the rule, by plain numpy comparisons (rest compared in the arrays' dtype)
    want[:3] = (x != 0) | (s != 0)
    want[1:3] |= v[:-1] != rest
    want[3] = v[-1] != rest
    assert want[1, 1, 1] == ((x[1, 1, 1] != 0) | (s[1, 1, 1] != 0))  # a potential at rest (in float32 too)
    np.testing.assert_array_equal(activity_rows(x, v, s, rest), want)
    strided = [np.asfortranarray(a) for a in (x, v, s)]  # not C-contiguous: numpy's passes
    np.testing.assert_array_equal(activity._node_activity_numpy(*strided, rest), want)
    np.testing.assert_array_equal(activity._node_activity_numpy(x, v, s, rest), want)


def _seeded(*layers) -> nn.Sequential:
    """nn.Sequential of `layers` built under a fixed torch seed (the global generator restored after)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(*(make() for make in layers))


def test_quantize_model_hands_new_weights_to_the_copy_and_leaves_the_model():
    net = _seeded(lambda: nn.Linear(6, 5), lambda: nn.Linear(5, 5), lambda: nn.Linear(5, 4))
    with torch.no_grad():  # a pruning mask (a leaf weight, so the model deep-copies): quantized on the copy
        prune.l1_unstructured(net[2], "weight", amount=0.4)
    before = [p.detach().clone() for p in net.parameters()]
    work, errors = quantize_model(net, 4, None, {"1": 2}, {})
    assert list(errors) == ["0", "1", "2"] and all(e > 0 for e in errors.values())
    for p, b in zip(net.parameters(), before):
        assert torch.equal(p, b)
    for name, bits in (("0", 4), ("1", 2)):
        want, _ = quantize_rows(dict(net.named_modules())[name].weight, bits, False)
        got = dict(work.named_modules())[name].weight
        assert isinstance(got, nn.Parameter) and got.requires_grad and torch.equal(got, want)
        assert got.data_ptr() != dict(net.named_modules())[name].weight.data_ptr()
    masked = net[2].weight.detach()
    assert not hasattr(work[2], "weight_orig") and torch.equal(work[2].weight, quantize_rows(masked, 4, False)[0])


def test_quantize_model_tied_weight_is_quantized_once_on_the_copy():
    net = _seeded(lambda: nn.Linear(4, 4), lambda: nn.Linear(4, 4))
    net[1].weight = net[0].weight
    work, errors = quantize_model(net, 3, None, {}, {})
    assert work[0].weight is work[1].weight and errors["0"] > 0.0 and errors["1"] == 0.0
    assert torch.equal(work[0].weight, quantize_rows(net[0].weight, 3, False)[0])


def test_quantized_model_swaps_weights_in_and_puts_the_originals_back():
    net = _seeded(lambda: nn.Linear(6, 5), lambda: nn.Linear(5, 5), lambda: nn.Linear(5, 4))
    with torch.no_grad():  # layer 1 already on a 2-bit grid: left as it is (error 0, not swapped)
        net[1].weight.copy_(torch.tensor([-1.0, 0.0, 1.0, 0.0, 1.0]).repeat(5, 1))
    originals = [net[i]._parameters["weight"] for i in range(3)]
    before = [p.detach().clone() for p in originals]
    copy_net, copy_errors = quantize_model(net, 4, None, {"1": 2}, {})
    with Jobs(2) as jobs, quantized_model(net, 4, None, {"1": 2}, {}, jobs) as (work, errors):
        assert work is net and errors == copy_errors and errors["1"] == 0.0 and errors["0"] > 0.0
        assert net[1].weight is originals[1] and net[0].weight is not originals[0]
        for i in range(3):
            assert torch.equal(net[i].weight, copy_net[i].weight) and net[i].weight.requires_grad
    assert all(net[i]._parameters["weight"] is originals[i] for i in range(3))
    assert all(torch.equal(p, b) for p, b in zip(originals, before))
    with pytest.raises(RuntimeError, match="inside"):
        with quantized_model(net, 3, None, {}, {}) as (work, _):
            assert not torch.equal(work[2].weight, before[2])
            raise RuntimeError("inside")
    assert all(net[i]._parameters["weight"] is originals[i] for i in range(3))


def test_quantized_model_copies_a_model_with_a_pruned_weight():
    net = _seeded(lambda: nn.Linear(6, 5), lambda: nn.Linear(5, 4))
    with torch.no_grad():
        prune.l1_unstructured(net[1], "weight", amount=0.4)
    with quantized_model(net, 4, None, {}, {}) as (work, errors):
        assert work is not net and hasattr(net[1], "weight_orig") and not hasattr(work[1], "weight_orig")
        want, want_errors = quantize_model(net, 4, None, {}, {})
        assert errors == want_errors and all(torch.equal(a, b) for a, b in zip(work.parameters(), want.parameters()))


def test_lower_quantize_leaves_the_model_parameters_as_they_were():
    net = build_model("mnist_conv", (1, 28, 28), 10, seed=3)
    params = {name: (p, p.detach().clone()) for name, p in net.named_parameters()}
    x = torch.rand((2, 3, 1, 28, 28), generator=torch.Generator().manual_seed(1))
    graph, trace = lower(net, x, weight_fit="quantize", weight_bits=4)
    assert all(e["max_abs_error"] > 0 for e in graph.metadata["weight_fit"].values() if e["declared"] == 4)
    for name, p in net.named_parameters():
        assert p is params[name][0] and torch.equal(p, params[name][1])
    copy_net, _ = quantize_model(net, 4, None, {}, {})
    graph2, trace2 = lower(copy_net, x, weight_fit="widen", weight_bits=4)
    np.testing.assert_array_equal(trace.indices, trace2.indices)
    assert [p.weight.tobytes() for p in graph.projections] == [p.weight.tobytes() for p in graph2.projections]


def test_jobs_map_in_item_order_and_reraise():
    with Jobs(3) as jobs:
        assert jobs.workers == 3
        threads = jobs.map(lambda i: (i * i, threading.current_thread().name), range(40))
        assert [v for v, _ in threads] == [i * i for i in range(40)]
        assert all(t.startswith("lowering") for _, t in threads)
        assert jobs.map(lambda i: threading.current_thread().name, [0]) == [threading.current_thread().name]
        with pytest.raises(ZeroDivisionError):
            jobs.map(lambda i: 1 / (i - 5), range(10))
        assert jobs.submit(sum, [1, 2, 3]).result() == 6
    assert Jobs().workers == torch.get_num_threads()


def test_split_events_and_parallel_fit_equal_the_serial_ones(monkeypatch):
    monkeypatch.setattr(events, "_SPLIT_ELEMENTS", 10)
    mask = np.random.default_rng(0).random((13, 7)) < 0.3
    with Jobs(3) as jobs:
        split = mask_events(mask, None, True, jobs)
        serial = mask_events(mask, None, True)
        for a, b in zip((split.counts, split.indices, split.values), (serial.counts, serial.indices, serial.values)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        net = build_model("mnist_conv", (1, 28, 28), 10, seed=3)
        work, errors = quantize_model(net, 4, None, {"0": 3}, {}, jobs)
        work2, errors2 = quantize_model(net, 4, None, {"0": 3}, {})
        assert errors == errors2 and all(torch.equal(a, b) for a, b in zip(work.parameters(), work2.parameters()))
        graph, _ = lower(net, torch.rand((2, 3, 1, 28, 28), generator=torch.Generator().manual_seed(1)))
        assert fit.fit_graph(graph, "widen", None, jobs).metadata == fit.fit_graph(graph, "widen").metadata


def test_lower_fits_and_hashes_beside_the_recording(tmp_path):
    net = build_model("mnist_conv", (1, 28, 28), 10, seed=3)
    x = torch.rand((2, 5, 1, 28, 28), generator=torch.Generator().manual_seed(5))
    graph, trace = lower(net, x, weight_fit="quantize", batch_size=2, out=tmp_path / "t")
    assert graph.metadata["weight_fit"]["conv1"]["stored"] == 8 and graph.metadata["weight_fit"]["conv1"]["policy"] \
        == "quantize"
    assert trace.graph_fingerprint == graph.fingerprint()
    widened, _ = lower(net, x, batch_size=2)  # "widen": float weights stored at 32 bits
    assert widened.metadata["weight_fit"]["conv1"]["stored"] == 32 and widened.fingerprint() != graph.fingerprint()
    weights = ("conv1", "conv2", "fc1")
    assert [widened.metadata["weight_fit"][p]["needed"] for p in weights] == [32, 32, 32]
    assert [graph.metadata["weight_fit"][p]["needed"] for p in weights] == [8, 8, 8]
    with pytest.raises(ValueError, match="weight_fit: projection 'conv1' declares weight_bits 8"):
        lower(net, x, weight_fit="error", out=tmp_path / "e")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]
