"""Checkpoints round-trip weights and config, and refuse a mismatched architecture."""
import pytest
import torch

from workloads import checkpoint
from workloads.models import build_model


def test_round_trip_and_mismatch(tmp_path):
    model = build_model("mnist_conv", (1, 8, 8), 10, seed=3)
    path = tmp_path / "m.pt"
    checkpoint.save(model, path, config={"seed": 3}, extra={"accuracy": 0.5})
    other = build_model("mnist_conv", (1, 8, 8), 10, seed=4)
    assert not torch.equal(other[0].weight, model[0].weight)
    payload = checkpoint.load_into(other, path)
    assert torch.equal(other[0].weight, model[0].weight)
    assert payload["config"] == {"seed": 3} and payload["extra"]["accuracy"] == 0.5
    assert payload["versions"]["torch"] == torch.__version__
    reloaded = checkpoint.load(path)["model"]
    assert checkpoint.signature(reloaded) == checkpoint.signature(model)
    wrong = build_model("mnist_conv", (1, 28, 28), 10, seed=3)  # FC input 32*7*7 instead of 32*2*2
    with pytest.raises(ValueError, match="architecture mismatch at '.*weight'"):
        checkpoint.load_into(wrong, path)
    assert not list(tmp_path.glob("*.tmp"))
