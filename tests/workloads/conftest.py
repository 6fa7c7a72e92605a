"""Shared small fixtures for the workloads tests: the bundled digits split and a fast training config."""
import pytest

from workloads.data import load_dataset
from workloads.train import TrainConfig


@pytest.fixture(scope="session")
def digits_ds():
    """sklearn digits (8x8), seed-0 split: 1437 train / 360 test."""
    return load_dataset("digits", seed=0)


@pytest.fixture
def fast_train_cfg():
    """T=4 direct encoding, Adam 5e-3, batch 64, 3 epochs: trains mnist_conv on digits in a few seconds."""
    return TrainConfig(epochs=3, batch_size=64, lr=5e-3, n_timesteps=4, encoding="direct")
