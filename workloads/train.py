"""Surrogate-gradient training and evaluation of multi-step SpikingJelly classifiers on a `Dataset`.

Loss: cross-entropy on the readout, the mean over T of the model output (T, N, n_classes). Neuron state is reset
with `functional.reset_net` after every batch; shuffling and Poisson encoding draw from explicit torch.Generators.
Static datasets (x (N, C, H, W)) go through a static encoder; event datasets (x (N, T, C, H, W)) through "events".
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch
from spikingjelly.activation_based import functional
from torch import nn
from tqdm.auto import tqdm

from workloads.data import Dataset
from workloads.encoding import ENCODERS, TEMPORAL_ENCODERS, encode
from workloads.train_config import TrainConfig

#: objective(model, encoded inputs (T, N, ...), labels (N,)) -> (scalar loss to minimise, logits (N, n_classes))
Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

#: optimizer name (workloads.train_config.OPTIMIZER_NAMES) -> fn(params, lr, weight decay, momentum)
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": lambda params, lr, wd, momentum: torch.optim.Adam(params, lr=lr, weight_decay=wd),
    "sgd": lambda params, lr, wd, momentum: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd),
}


def default_device() -> torch.device:
    """CUDA device when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def torch_threads(n: Optional[int]) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count to n (None: leave it); restores the previous value."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Optimizer cfg.optimizer over params with cfg.lr, cfg.weight_decay (and cfg.momentum for SGD)."""
    return OPTIMIZERS[cfg.optimizer](params, cfg.lr, cfg.weight_decay, cfg.momentum)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    """Per-step LR schedule: cosine annealing to 0 over total_steps, or constant (LambdaLR of 1)."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def check_dataset(dataset: Dataset, cfg: TrainConfig) -> None:
    """Event datasets need a temporal encoding ("events") with n_timesteps equal to their frame count; static
    datasets a static one. Raises ValueError naming TrainConfig.encoding or TrainConfig.n_timesteps."""
    if dataset.temporal != (cfg.encoding in TEMPORAL_ENCODERS):
        kind = "event frames need" if dataset.temporal else "static images need one of"
        need = sorted(TEMPORAL_ENCODERS) if dataset.temporal else sorted(set(ENCODERS) - TEMPORAL_ENCODERS)
        raise ValueError(f"TrainConfig.encoding {cfg.encoding!r} does not fit dataset {dataset.name!r}: {kind} {need}")
    if dataset.temporal and cfg.n_timesteps != dataset.n_frames:
        raise ValueError(f"TrainConfig.n_timesteps must equal the {dataset.n_frames} frames of dataset "
                         f"{dataset.name!r}, got {cfg.n_timesteps}")


def _readout(model: nn.Module, x: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Encode x (N, C, H, W), or event frames (N, T, C, H, W), run the model, return the mean over T of its
    output, (N, n_classes)."""
    return model(encode(x, cfg.n_timesteps, cfg.encoding, generator)).mean(0)


def cross_entropy_objective(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The default training objective: logits = mean over T of model(inputs) (N, n_classes), loss = their
    sample-mean cross-entropy against labels (N,)."""
    logits = model(inputs).mean(0)
    return nn.functional.cross_entropy(logits, labels), logits


def progress_bar(iterable, desc: str, progress: bool, leave: bool = True) -> tqdm:
    """A tqdm bar over `iterable`, drawn only when `progress` is set and stderr is a terminal: in a log file or a
    pipe (a CI log, a dask worker) every redraw would be a new line, so the bar is off there."""
    return tqdm(iterable, desc=desc, leave=leave, disable=None if progress else True)  # None: off unless a TTY


def run_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig, optimizer: torch.optim.Optimizer,
              generator: torch.Generator, scheduler=None, after_backward: Optional[Callable[[], None]] = None,
              progress: bool = True, desc: str = "train", objective: Optional[Objective] = None) -> dict:
    """One shuffled pass over (x, y) already on the model's device; returns {"loss", "train_acc", "seconds"}.

    after_backward: called after loss.backward() and before optimizer.step() (gradient hooks such as SCA's L1
    term). `generator` (on x's device) draws the shuffle and any Poisson encoding. objective: the batch loss and
    logits from the encoded batch (None: `cross_entropy_objective`, the sample-mean CE; a distillation loss such as
    workloads.compression.bestformer's); "loss" is its sample-weighted mean, "train_acc" from its logits.
    """
    model.train()
    start, n, loss_sum, correct = time.perf_counter(), len(y), 0.0, 0
    order = torch.randperm(n, generator=generator, device=generator.device).to(x.device)
    batches = epoch_batches(order, cfg.batch_size)
    for idx in progress_bar(batches, desc, progress, leave=False):
        inputs = encode(x[idx], cfg.n_timesteps, cfg.encoding, generator)
        loss, logits = (objective or cross_entropy_objective)(model, inputs, y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        functional.reset_net(model)
        loss_sum += loss.item() * len(idx)
        correct += int((logits.argmax(1) == y[idx]).sum())
    return {"loss": loss_sum / n, "train_acc": correct / n, "seconds": time.perf_counter() - start}


def epoch_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """`order` split into batches of batch_size, a last batch of one sample joined to the one before (BatchNorm
    in training mode needs two values per channel: with T = 1 a batch of one has one)."""
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps of one epoch over n samples (run_epoch's batches: a last batch of one joins the one before)."""
    return len(epoch_batches(torch.arange(n), batch_size))


def check_model_fits(model: nn.Module, dataset: Dataset, cfg: TrainConfig, device: torch.device) -> None:
    """ValueError naming the dataset when `model` cannot run its inputs (one sample, in eval mode, no gradient;
    the model's mode is restored) or outputs another number of classes than it has."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = dataset.x_train[:1].to(device)
            logits = _readout(model, x, cfg, torch.Generator(device=device).manual_seed(0))  # global RNG untouched
    except (RuntimeError, IndexError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"model: cannot run dataset {dataset.name!r}'s inputs (per-sample shape "
                         f"{tuple(dataset.in_shape)}): {first}") from None
    finally:
        functional.reset_net(model)
        model.train(was_training)
    if logits.dim() != 2 or logits.shape[1] != dataset.n_classes:
        raise ValueError(f"model: outputs {tuple(logits.shape[1:])} per sample, dataset {dataset.name!r} has "
                         f"{dataset.n_classes} classes; build the model with n_classes={dataset.n_classes}")


def train(model: nn.Module, dataset: Dataset, cfg: TrainConfig, seed: int, device: Optional[torch.device] = None,
          progress: bool = True) -> list[dict]:
    """Train `model` in place on dataset's train split for cfg.epochs; returns per-epoch history dicts
    {"epoch", "loss", "train_acc", "seconds"}.

    Reproducible: the shuffle and Poisson spikes come from torch.Generator(seed) on the device; the weights are
    whatever the caller built (build_model(..., seed=...)). device: default_device() when None.
    Raises ValueError (`check_dataset`) when cfg's encoding or n_timesteps does not fit the dataset, for a seed
    that is not an integer or a dataset without training samples, and (`check_model_fits`) when the model cannot
    run its inputs or outputs another number of classes.
    """
    check_dataset(dataset, cfg)
    if isinstance(seed, bool) or not hasattr(seed, "__index__"):  # an int or a numpy integer
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if len(dataset.y_train) == 0:
        raise ValueError(f"dataset {dataset.name!r} has no training samples")
    device = device or default_device()
    model.to(device)
    check_model_fits(model, dataset, cfg, device)
    x, y = dataset.x_train.to(device), dataset.y_train.to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    optimizer = make_optimizer(model.parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps_per_epoch(len(y), cfg.batch_size))
    history = []
    with torch_threads(cfg.num_threads):
        bar = progress_bar(range(cfg.epochs), f"train {dataset.name}", progress)
        for epoch in bar:
            record = {"epoch": epoch, **run_epoch(model, x, y, cfg, optimizer, generator, scheduler,
                                                  progress=progress, desc=f"epoch {epoch}")}
            bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['train_acc']:.3f}")
            history.append(record)
    return history


@torch.no_grad()
def predict_logits(model: nn.Module, x: torch.Tensor, cfg: TrainConfig, device: Optional[torch.device] = None,
                   seed: int = 0) -> torch.Tensor:
    """Readout (mean over T of the model output) for images x (N, C, H, W), or event frames (N, T, C, H, W) with
    cfg.encoding "events", in eval mode: (N, n_classes) on CPU.

    Batches of cfg.eval_batch_size; Poisson encoding draws from torch.Generator(seed). Restores the model's
    train/eval mode and resets neuron state afterwards.
    """
    device = device or default_device()
    was_training = model.training
    model.to(device).eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    out = []
    with torch_threads(cfg.num_threads):
        for xb in x.split(cfg.eval_batch_size):
            out.append(_readout(model, xb.to(device), cfg, generator).cpu())
            functional.reset_net(model)
    model.train(was_training)
    return torch.cat(out)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
             device: Optional[torch.device] = None, seed: int = 0) -> float:
    """Top-1 accuracy in [0, 1] of `model` on images x (N, C, H, W) (or event frames (N, T, C, H, W) with
    cfg.encoding "events") with labels y (N,), eval mode."""
    return float((predict_logits(model, x, cfg, device, seed).argmax(1) == y.cpu()).float().mean())
