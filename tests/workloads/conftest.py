"""Shared small fixtures for the workloads tests: the bundled digits split, a fast training config, a 320-sample
subset and a model trained on it."""
import dataclasses

import pytest

from workloads.data import load_dataset
from workloads.models import build_model
from workloads.train import TrainConfig, train


@pytest.fixture(scope="session")
def digits_ds():
    """sklearn digits (8x8), seed-0 split: 1437 train / 360 test."""
    return load_dataset("digits", seed=0)


@pytest.fixture
def fast_train_cfg():
    """T=4 direct encoding, Adam 5e-3, batch 64, 3 epochs: trains mnist_conv on digits in a few seconds."""
    return TrainConfig(epochs=3, batch_size=64, lr=5e-3, n_timesteps=4, encoding="direct")


@pytest.fixture(scope="module")
def small_ds(digits_ds):
    """The first 320 digits training samples (fast fine-tuning; the properties tested do not need accuracy)."""
    return dataclasses.replace(digits_ds, x_train=digits_ds.x_train[:320], y_train=digits_ds.y_train[:320])


@pytest.fixture(scope="module")
def trained(small_ds):
    """mnist_conv (16C3-MP-32C3-MP-FC) trained 2 epochs (T=4) on small_ds, once per test module."""
    model = build_model("mnist_conv", small_ds.in_shape, small_ds.n_classes, seed=0)
    train(model, small_ds, TrainConfig(epochs=2, n_timesteps=4), seed=0, progress=False)
    return model
