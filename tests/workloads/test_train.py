"""Models, training and evaluation: shapes, parameter count by hand, exact accuracy, learning and reproducibility."""
import dataclasses

import pytest
import torch
from spikingjelly.activation_based import layer

from workloads.models import build_model, count_parameters
from workloads.train import TrainConfig, epoch_batches, evaluate, predict_logits, steps_per_epoch, train


@pytest.mark.parametrize("hw", [28, 8])
def test_model_output_shape(hw):
    model = build_model("mnist_conv", (1, hw, hw), 10, seed=0)
    assert model(torch.rand(4, 3, 1, hw, hw)).shape == (4, 3, 10)


def test_count_parameters_by_hand():
    # conv1 1*16*3*3 = 144; bn1 gamma+beta 2*16 = 32; conv2 16*32*3*3 = 4608; bn2 2*32 = 64;
    # fc (32*7*7)*10 + 10 = 15680 + 10 = 15690 at 28x28  -> 144 + 32 + 4608 + 64 + 15690 = 20538
    assert count_parameters(build_model("mnist_conv", (1, 28, 28), 10)) == 20538
    # at 8x8 the fc is (32*2*2)*10 + 10 = 1290 -> 144 + 32 + 4608 + 64 + 1290 = 6138
    assert count_parameters(build_model("mnist_conv", (1, 8, 8), 10, neuron="IF")) == 6138


def test_model_layer_sequence():
    model = build_model("mnist_conv", (1, 28, 28), 10)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Conv2d", "BatchNorm2d", "LIFNode", "MaxPool2d"] * 2 + ["Flatten", "Linear"]
    assert all(getattr(m, "step_mode", "m") == "m" for m in model)
    assert model[0].bias is None and model[0].padding == (1, 1) and model[9].in_features == 1568


def test_seeded_build_is_reproducible_and_leaves_global_rng():
    state = torch.random.get_rng_state()
    a, b = build_model("mnist_conv", (1, 8, 8), 10, seed=5), build_model("mnist_conv", (1, 8, 8), 10, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_bad_model_arguments():
    with pytest.raises(ValueError, match="model"):
        build_model("resnet", (1, 28, 28), 10)
    with pytest.raises(ValueError, match="neuron"):
        build_model("mnist_conv", (1, 28, 28), 10, neuron="Izhikevich")
    with pytest.raises(ValueError, match="in_shape"):
        build_model("mnist_conv", (1, 30, 30), 10)
    with pytest.raises(ValueError, match="neuron_options: unknown key 'reset_mode'; accepted keys: ternary, reset, "
                                         "bits, shape"):  # was make_neuron's TypeError
        build_model("mnist_conv", (1, 8, 8), 10, neuron_options={"reset_mode": "soft"})
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2, got 2.5"):
        build_model("mnist_conv", (1, 8, 8), 2.5)
    with pytest.raises(ValueError, match="in_shape must hold integers"):
        build_model("mnist_conv", (1, 8.0, 8), 10)
    with pytest.raises(ValueError, match="neuron_options: shape fixes one threshold shape for every layer"):
        build_model("mnist_conv", (1, 8, 8), 10, neuron="sLIF", neuron_options={"shape": (16, 8, 8)})
    with pytest.raises(ValueError, match="mlp_ratio 0.01 leaves the MLP of dim 16 no hidden unit"):
        build_model("spikformer", (3, 8, 8), 10, depth=1, dim=16, heads=2, mlp_ratio=0.01)


def test_train_config_validation():
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    for field, bad in (("epochs", 1.5), ("batch_size", 32.0), ("n_timesteps", True), ("num_threads", "2")):
        with pytest.raises(ValueError, match=f"TrainConfig.{field} must be an integer, got {bad!r}"):
            TrainConfig(**{field: bad})  # floats failed deep inside training
    with pytest.raises(ValueError, match="TrainConfig.lr must be a finite number, got inf"):
        TrainConfig(lr=float("inf"))  # trained to NaN weights
    with pytest.raises(ValueError, match="lr"):
        TrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="encoding"):
        TrainConfig(encoding="latency")


def test_evaluate_exact_accuracy_on_a_fixed_linear_readout():
    # Flatten + identity Linear: the readout is the 2 pixels themselves, so the prediction is the brighter pixel.
    model = torch.nn.Sequential(layer.Flatten(step_mode="m"), layer.Linear(2, 2, step_mode="m"))
    with torch.no_grad():
        model[1].weight.copy_(torch.eye(2))
        model[1].bias.zero_()
    x = torch.tensor([[0.9, 0.1], [0.2, 0.7], [0.6, 0.3], [0.4, 0.5]]).reshape(4, 1, 1, 2)
    y = torch.tensor([0, 1, 1, 1])  # predictions 0, 1, 0, 1 -> 3 of 4 correct
    cfg = TrainConfig(n_timesteps=3, eval_batch_size=3)
    assert evaluate(model, x, y, cfg) == 0.75
    torch.testing.assert_close(predict_logits(model, x, cfg), x.reshape(4, 2), rtol=0, atol=1e-7)


@pytest.mark.slow
def test_training_on_digits_learns(digits_ds, fast_train_cfg):
    model = build_model("mnist_conv", digits_ds.in_shape, digits_ds.n_classes, seed=0)
    history = train(model, digits_ds, fast_train_cfg, seed=0, device=torch.device("cpu"), progress=False)
    assert [h["epoch"] for h in history] == [0, 1, 2]
    assert history[-1]["loss"] < history[0]["loss"]
    assert evaluate(model, digits_ds.x_test, digits_ds.y_test, fast_train_cfg, torch.device("cpu")) > 0.8


def test_same_seed_same_weights(digits_ds):
    cfg = TrainConfig(epochs=1, batch_size=128, lr=5e-3, encoding="poisson")
    small = type(digits_ds)("digits", digits_ds.x_train[:512], digits_ds.y_train[:512], digits_ds.x_test,
                            digits_ds.y_test, 10, (1, 8, 8))
    runs = []
    for seed in (1, 1, 2):
        model = build_model("mnist_conv", small.in_shape, 10, seed=0)
        train(model, small, cfg, seed=seed, device=torch.device("cpu"), progress=False)
        runs.append(model.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert not all(torch.equal(runs[0][k], runs[2][k]) for k in runs[0])  # other shuffle and spikes


def test_train_refuses_a_model_that_does_not_fit_the_dataset_before_any_step(digits_ds, fast_train_cfg):
    wrong_classes = build_model("mnist_conv", digits_ds.in_shape, 3, seed=0)
    with pytest.raises(ValueError, match=r"model: outputs \(3,\) per sample, dataset 'digits' has 10 classes"):
        train(wrong_classes, digits_ds, fast_train_cfg, seed=0, progress=False)
    wrong_input = build_model("mnist_conv", (3, 8, 8), 10, seed=0)
    with pytest.raises(ValueError, match=r"model: cannot run dataset 'digits'.s inputs \(per-sample shape "
                                         r"\(1, 8, 8\)\)"):
        train(wrong_input, digits_ds, fast_train_cfg, seed=0, progress=False)


def test_train_names_a_seed_that_is_no_integer_and_an_empty_training_set(digits_ds, fast_train_cfg):
    model = build_model("mnist_conv", digits_ds.in_shape, 10, seed=0)
    with pytest.raises(ValueError, match="seed must be an integer, got None"):  # was torch's manual_seed error
        train(model, digits_ds, fast_train_cfg, seed=None, progress=False)
    empty = dataclasses.replace(digits_ds, x_train=digits_ds.x_train[:0], y_train=digits_ds.y_train[:0])
    with pytest.raises(ValueError, match="dataset 'digits' has no training samples"):  # was a ZeroDivisionError
        train(model, empty, fast_train_cfg, seed=0, progress=False)


def test_a_last_batch_of_one_sample_joins_the_batch_before():
    assert [len(b) for b in epoch_batches(torch.arange(33), 32)] == [33]  # BatchNorm at T=1 needs two values
    assert [len(b) for b in epoch_batches(torch.arange(34), 32)] == [32, 2]
    assert len(epoch_batches(torch.arange(1), 32)) == 1
    assert steps_per_epoch(33, 32) == 1 and steps_per_epoch(64, 32) == 2
