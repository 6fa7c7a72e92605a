"""The recording's max pooling (workloads.lowering.fused_pool, pool_kernel) against torch's max_pool2d: values bit
for bit (NaN, infinities and signed zeros included), the fallback to the module's own forward, the module given
back its forward after the recording, and lower() with and without it."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from workloads import lower
from workloads.lowering import recorder
from workloads.lowering.fused_pool import FusedPool, FusedPools, fusable_pool
from workloads.lowering.jobs import Jobs
from workloads.lowering.pool_kernel import max_pool_planes, pool_shape


def _input(seed: int, shape) -> torch.Tensor:
    """Seeded float32 values with ties, exact zeros of both signs, NaNs and infinities."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-3, 4, shape, generator=g).float() * 0.5  # many ties
    x[torch.rand(shape, generator=g) < 0.3] = 0.0
    x[torch.rand(shape, generator=g) < 0.2] = -0.0
    flat = x.view(-1)
    flat[:6] = torch.tensor([float("nan"), -0.0, 0.0, float("inf"), -float("inf"), float("nan")])
    nans = torch.rand(shape, generator=g) < 0.02
    flat[nans.view(-1)] = torch.tensor(float("nan"))
    return x


def _bits(t: torch.Tensor) -> np.ndarray:
    return t.contiguous().numpy().view(np.uint32)


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1), (2, 1, 0), (3, 3, 0), (3, 1, 1),
                                                   ((2, 3), (1, 2), (1, 0)), (4, 2, 2), (1, 1, 0)])
@pytest.mark.parametrize("hw", [(7, 9), (8, 8), (5, 3), (2, 1), (1, 2), (3, 4)])
def test_pool_kernel_equals_torch_bit_for_bit(kernel, stride, padding, hw):
    x = _input(sum(hw), (2, 3) + hw)
    k, s, p = ((v, v) if isinstance(v, int) else v for v in (kernel, stride, padding))
    if min(pool_shape(n, *a) for n, a in zip(hw, zip(k, s, p))) < 1:  # no output: torch refuses, FusedPool defers
        with pytest.raises(RuntimeError, match="too small"):
            F.max_pool2d(x, kernel, stride, padding)
        return
    want = F.max_pool2d(x, kernel, stride, padding)
    got = max_pool_planes(x.numpy().reshape(6, *hw), k, s, p)
    assert got.shape == (6,) + tuple(want.shape[2:])
    assert np.array_equal(got.view(np.uint32), _bits(want).reshape(got.shape))


def test_pool_kernel_keeps_torch_choice_among_equal_and_nan_values():
    # a window (-0.0, 0.0, 0.0, -0.0): the first (greater-than never replaces an equal); NaNs with different
    # payloads: the last one of the window, as torch's `val > max || isnan(val)`
    x = np.array([[[-0.0, 0.0], [0.0, -0.0]]], np.float32)
    assert np.signbit(max_pool_planes(x, (2, 2), (2, 2), (0, 0))[0, 0, 0])
    a, b = np.array([0x7FC00001, 0x7FC00002], np.uint32).view(np.float32)
    y = np.array([[[a, 1.0], [b, 2.0]]], np.float32)
    got = max_pool_planes(y, (2, 2), (2, 2), (0, 0)).view(np.uint32)[0, 0, 0]
    want = _bits(F.max_pool2d(torch.from_numpy(y), 2))[0, 0, 0]
    assert got == want == 0x7FC00002


@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((2, 3), (1, 2), (1, 0))])
def test_pool_kernel_takes_equal_values_and_nans_in_torch_order(kernel, stride, padding):
    # only zeros of random sign and NaNs of distinct payloads: which one a window keeps depends on the order in
    # which its values are compared (torch: rows then columns)
    g = np.random.default_rng(3)
    x = np.where(g.random((4, 9, 11)) < 0.5, np.float32(-0.0), np.float32(0.0)).astype(np.float32)
    payloads = (0x7FC00000 + g.integers(1, 1 << 20, size=x.shape)).astype(np.uint32).view(np.float32)
    x = np.where(g.random(x.shape) < 0.15, payloads, x)
    k, s, p = ((v, v) if isinstance(v, int) else v for v in (kernel, stride, padding))
    want = _bits(F.max_pool2d(torch.from_numpy(x), kernel, stride, padding))
    assert np.array_equal(max_pool_planes(x, k, s, p).view(np.uint32), want)


def test_pool_shape_is_torch_floor_mode():
    for size, k, s, p in [(28, 2, 2, 0), (7, 3, 2, 1), (5, 2, 2, 0), (2, 3, 2, 1), (9, 4, 3, 2)]:
        assert pool_shape(size, k, s, p) == F.max_pool1d(torch.zeros(1, 1, size), k, s, p).shape[-1]


def test_split_planes_give_the_same_values():
    x = _input(5, (40, 6, 10, 12))
    with Jobs(2) as jobs:
        for k, s, p in [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1))]:
            one = max_pool_planes(x.numpy().reshape(240, 10, 12), k, s, p)
            split = max_pool_planes(x.numpy().reshape(240, 10, 12), k, s, p, parts=3, run=jobs.map)
            assert np.array_equal(one.view(np.uint32), split.view(np.uint32))


@pytest.mark.parametrize("module,shape", [
    (nn.MaxPool2d(2), (4, 3, 8, 10)),
    (nn.MaxPool2d(3, 2, 1), (3, 8, 9)),
    (layer.MaxPool2d(2, step_mode="m"), (3, 2, 4, 6, 6)),
    (layer.MaxPool2d(3, 2, 1, step_mode="m"), (2, 2, 3, 9, 7)),
    (layer.MaxPool2d(2, step_mode="s"), (2, 4, 6, 6)),
])
def test_fused_pool_equals_the_module(module, shape):
    x = _input(len(shape), shape)
    want = module(x)
    fused = FusedPool(module, *(lambda f, r: list(map(f, r)), 2))
    fused.install()
    try:
        with torch.no_grad():
            got = module(x)
    finally:
        fused.remove()
    assert "forward" not in module.__dict__
    assert got.shape == want.shape and got.is_contiguous()
    assert np.array_equal(_bits(got), _bits(want))


@pytest.mark.parametrize("module,fuse", [
    (nn.MaxPool2d(2), True), (layer.MaxPool2d(3, 2, 1, step_mode="m"), True), (nn.MaxPool2d(2, ceil_mode=True), False),
    (nn.MaxPool2d(2, dilation=2), False), (nn.MaxPool2d(2, return_indices=True), False),
    (nn.MaxPool1d(2), False), (nn.AvgPool2d(2), False), (type("Sub", (nn.MaxPool2d,), {})(2), False),
])
def test_fusable_pool(module, fuse):
    assert fusable_pool(module) is fuse


def test_instance_with_own_forward_is_not_fused():
    m = nn.MaxPool2d(2)
    m.forward = lambda x: x
    assert not fusable_pool(m)


@pytest.mark.parametrize("make", [
    lambda x: x.double(),  # float64
    lambda x: x.transpose(-1, -2),  # not contiguous
    lambda x: x.to(memory_format=torch.channels_last),
])
def test_other_inputs_take_the_module_forward(make, monkeypatch):
    module = nn.MaxPool2d(2)
    x = make(_input(3, (2, 3, 6, 8)))
    fused = FusedPool(module)
    monkeypatch.setattr("workloads.lowering.fused_pool.max_pool_planes", _never)
    got = fused(x)
    assert torch.equal(got.isnan(), F.max_pool2d(x, 2).isnan())
    assert torch.equal(torch.nan_to_num(got), torch.nan_to_num(F.max_pool2d(x, 2)))


def test_input_needing_grad_takes_the_module_forward(monkeypatch):
    module = nn.MaxPool2d(2)
    x = torch.rand(1, 2, 4, 4, requires_grad=True)
    monkeypatch.setattr("workloads.lowering.fused_pool.max_pool_planes", _never)
    FusedPool(module)(x).sum().backward()
    assert x.grad is not None and float(x.grad.sum()) == 8.0


def _never(*args, **kwargs):
    raise AssertionError("the kernel ran on an input it does not cover")


def test_output_too_small_raises_as_torch():
    module = nn.MaxPool2d(3)
    with pytest.raises(RuntimeError):
        FusedPool(module)(torch.zeros(1, 1, 2, 2))


def test_pools_given_back_their_forward_after_an_error():
    net = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 1))
    with pytest.raises(RuntimeError):
        with FusedPools(net):
            assert "forward" in net[0].__dict__
            net(torch.zeros(1, 1, 4, 4))  # 4 features, Linear(4, 1): fine; then a bad shape
            net(torch.zeros(1, 1, 6, 6))
    assert "forward" not in net[0].__dict__


def _pooled_net() -> nn.Module:
    torch.manual_seed(0)
    m = {"step_mode": "m"}
    net = nn.Sequential(layer.Conv2d(1, 4, 3, padding=1, **m), neuron.LIFNode(tau=2.0, **m),
                        layer.MaxPool2d(2, **m), layer.Conv2d(4, 6, 3, padding=1, **m), neuron.IFNode(**m),
                        layer.MaxPool2d(3, 2, 1, **m), layer.Flatten(**m), layer.Linear(6 * 4 * 4, 5, **m))
    for p in net.parameters():
        p.data *= 3.0
    return net.eval()


def test_lower_with_and_without_fused_pools_is_identical(monkeypatch):
    net = _pooled_net()
    x = torch.rand((4, 3, 1, 14, 14), generator=torch.Generator().manual_seed(2))
    g1, t1 = lower(net, x, batch_size=2)
    calls = []
    original = max_pool_planes
    monkeypatch.setattr("workloads.lowering.fused_pool.max_pool_planes",
                        lambda *a, **k: calls.append(1) or original(*a, **k))
    g2, t2 = lower(net, x, batch_size=2)
    assert len(calls) == 4  # two pools, two batches
    monkeypatch.setattr(recorder, "FusedPools", lambda model, jobs: FusedPools(nn.Sequential(), jobs))
    g3, t3 = lower(net, x, batch_size=2)
    assert len(calls) == 4
    assert t1.activity["pool1"].any() and t1.activity["pool2"].any()  # spikes reach both pools
    for t in (t2, t3):
        assert np.array_equal(t.offsets, t1.offsets) and np.array_equal(t.indices, t1.indices)
        assert all(np.array_equal(t.activity[k], t1.activity[k]) for k in t1.activity)
        assert np.array_equal(t.predictions, t1.predictions)
    assert g1.fingerprint() == g2.fingerprint() == g3.fingerprint()
    assert all("forward" not in m.__dict__ for m in net.modules())
    functional.reset_net(net)
