"""The benchmark workloads: the default MNIST net (100 samples) and VGG-11 at 32x32 (T=4, 16 samples), untrained but
spiking (BatchNorm statistics calibrated on the samples), lowered to a graph + trace, with the chip each runs on."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchutil import calibrate_bn
from codesign.execute.stages import hardware_samples
from hwmodels import ChipSpec, EventTrace, NetworkGraph, load_preset
from workloads.data import load_dataset
from workloads.encoding import encode
from workloads.lowering import lower
from workloads.models import build_model


@dataclass
class Workload:
    """A model, its encoded input (T, N, ...), the lowered graph + trace, the chip and how it was made."""

    name: str
    model: nn.Module
    x: torch.Tensor
    graph: NetworkGraph
    trace: EventTrace
    chip: ChipSpec
    lower_s: float
    description: str


def _lowered(name: str, model: nn.Module, x: torch.Tensor, chip: ChipSpec, description: str) -> Workload:
    calibrate_bn(model, x)
    t0 = time.perf_counter()
    graph, trace = lower(model, x, name=name, device="cpu", weight_fit="quantize")  # 8-bit, as codesign runs
    return Workload(name, model, x, graph, trace, chip, time.perf_counter() - t0, description)


def mnist_default(n_samples: int = 100, n_timesteps: int = 4) -> Workload:
    """The default co-design net (mnist_conv 16C3-BN-LIF-MP2-32C3-BN-LIF-MP2-FC10, LIF tau 2) on the class-balanced
    mnist5k test digits a run simulates (codesign.execute.stages.hardware_samples), direct encoding, on the
    `loihi` preset (codesign/configs/default.yaml)."""
    ds = load_dataset("mnist5k", seed=0)
    model = build_model("mnist_conv", (1, 28, 28), 10, neuron="LIF", tau=2.0, seed=0)
    x = encode(ds.x_test[hardware_samples(ds.y_test, n_samples)], n_timesteps, "direct")  # as codesign runs
    return _lowered("mnist_conv", model, x, load_preset("loihi"),
                    f"mnist_conv (LIF), {n_samples} class-balanced mnist5k test digits, T={n_timesteps}, direct "
                    "encoding, untrained with BN statistics calibrated on the samples, preset loihi")


def vgg11_32(n_samples: int = 16, n_timesteps: int = 4) -> Workload:
    """VGG-11 (workloads.models 'vgg11', IF neurons) at 3x32x32 on seeded uniform-noise images (no CIFAR-10 on this
    offline machine), direct encoding, on `generic-45nm` with a 1 MB synapse SRAM per core (Horowitz's largest
    SRAM): VGG-11's ~185k neurons need ~185 cores, more than one Loihi (128) holds."""
    model = build_model("vgg11", (3, 32, 32), 10, neuron="IF", v_threshold=1.0, seed=0)
    images = torch.rand((n_samples, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    x = encode(images, n_timesteps, "direct")
    chip = load_preset("generic-45nm", {"core.synapse_memory_bits": 8 * 1024 * 1024})
    return _lowered("vgg11", model, x, chip,
                    f"vgg11 (IF), {n_samples} uniform-noise 3x32x32 images, T={n_timesteps}, direct encoding, "
                    "untrained with BN statistics calibrated on the samples, preset generic-45nm with "
                    "core.synapse_memory_bits = 8 Mbit")


#: chip-to-chip links of the multi-chip benchmark chips (benchmark assumption, not a preset value): 10x the
#: generic-45nm north-south hop energy and latency (an off-chip SerDes hop costs an order of magnitude more than an
#: on-chip hop; Loihi 2's chip-to-chip links are not characterised per message in public documents)
CHIP_LINKS = {"router.chip_link_energy_j": 4.0e-11, "router.chip_link_latency_s": 1.0e-8}


def multichip_45nm(n_chips: int) -> ChipSpec:
    """generic-45nm with a 1 MB synapse SRAM per core (as vgg11_32) on `n_chips` chips joined by CHIP_LINKS."""
    return load_preset("generic-45nm", {"core.synapse_memory_bits": 8 * 1024 * 1024, "n_chips": n_chips,
                                        **CHIP_LINKS})


def spikformer_32(n_samples: int = 4, n_timesteps: int = 4, n_chips: int = 8) -> Workload:
    """Spikformer-4-384 (workloads.models 'spikformer_4_384', LIF tau 2) at 3x32x32 on seeded uniform-noise images,
    direct encoding, on multichip_45nm(n_chips) (the net needs ~1,760 cores: 7 chips of 256)."""
    model = build_model("spikformer_4_384", (3, 32, 32), 10, neuron="LIF", tau=2.0, seed=0)
    images = torch.rand((n_samples, 3, 32, 32), generator=torch.Generator().manual_seed(0))
    x = encode(images, n_timesteps, "direct")
    return _lowered("spikformer_4_384", model, x, multichip_45nm(n_chips),
                    f"spikformer_4_384 (LIF tau 2), {n_samples} uniform-noise 3x32x32 images, T={n_timesteps}, "
                    f"direct encoding, untrained with BN statistics calibrated on the samples, generic-45nm with "
                    f"core.synapse_memory_bits = 8 Mbit on {n_chips} chips (chip links: CHIP_LINKS)")


def noise_images(start: int, stop: int, seed: int = 0) -> torch.Tensor:
    """Images start..stop-1, shape (stop - start, 3, 32, 32), of a seeded stream of uniform noise in [0, 1): image i
    is drawn by its own torch.Generator seeded with seed * 2**32 + i, so every chunking of the stream gives the
    same images (unlike one torch.rand call of the whole batch, as vgg11_32 and spikformer_32 draw)."""
    return torch.stack([torch.rand((3, 32, 32), generator=torch.Generator().manual_seed(seed * 2 ** 32 + i))
                        for i in range(start, stop)])


@dataclass
class StreamWorkload:
    """A workload lowered chunk by chunk (lower_to_folder): the BN-calibrated model, timesteps T, the chip and how
    it was made; its inputs are direct-encoded noise_images, samples [start, stop) at a time."""

    name: str
    model: nn.Module
    n_timesteps: int
    chip: ChipSpec
    description: str

    def inputs(self, start: int, stop: int) -> torch.Tensor:
        """Encoded inputs (T, stop - start, 3, 32, 32) of samples start..stop-1."""
        return encode(noise_images(start, stop), self.n_timesteps, "direct")


def _streamed(name: str, model: nn.Module, n_timesteps: int, chip: ChipSpec, calib_samples: int,
              description: str) -> StreamWorkload:
    """Calibrate `model`'s BatchNorms on the first `calib_samples` images of the stream (a fixed set, so the model
    is the same whatever number of samples is lowered later) and wrap it."""
    w = StreamWorkload(name, model, n_timesteps, chip, description)
    calibrate_bn(model, w.inputs(0, calib_samples))
    return w


def vgg16_32_stream(n_timesteps: int = 4, calib_samples: int = 32) -> StreamWorkload:
    """VGG-16 (workloads.models 'vgg16_sca': Simonyan & Zisserman configuration D, 13 conv-BN-IF + FC512-FC512-FC10,
    16 weight layers, IF neurons as vgg11_32) at 3x32x32 on noise_images, direct encoding, on multichip_45nm(2):
    its ~312k neurons need ~310 cores of 1,024 neurons, more than one 256-core generic-45nm chip holds."""
    model = build_model("vgg16_sca", (3, 32, 32), 10, neuron="IF", v_threshold=1.0, seed=0)
    return _streamed("vgg16", model, n_timesteps, multichip_45nm(2), calib_samples,
                     f"vgg16_sca (IF), uniform-noise 3x32x32 images (noise_images), T={n_timesteps}, direct encoding, "
                     f"untrained with BN statistics calibrated on the first {calib_samples} images, generic-45nm "
                     "with core.synapse_memory_bits = 8 Mbit on 2 chips (chip links: CHIP_LINKS)")


def spikformer_32_stream(n_timesteps: int = 4, calib_samples: int = 32, n_chips: int = 8) -> StreamWorkload:
    """The spikformer_32 recipe (Spikformer-4-384, LIF tau 2, multichip_45nm(n_chips)) on noise_images, BN
    calibrated on the first `calib_samples` images, for lower_to_folder."""
    model = build_model("spikformer_4_384", (3, 32, 32), 10, neuron="LIF", tau=2.0, seed=0)
    return _streamed("spikformer_4_384", model, n_timesteps, multichip_45nm(n_chips), calib_samples,
                     f"spikformer_4_384 (LIF tau 2), uniform-noise 3x32x32 images (noise_images), T={n_timesteps}, "
                     f"direct encoding, untrained with BN statistics calibrated on the first {calib_samples} images, "
                     f"generic-45nm with core.synapse_memory_bits = 8 Mbit on {n_chips} chips (chip links: "
                     "CHIP_LINKS)")


def lower_to_folder(w: StreamWorkload, folder: Path, n_samples: int, chunk: int) -> tuple[NetworkGraph, list[float]]:
    """Lower samples 0..n_samples-1 of `w` with one lower() call (weight_fit 'quantize', 8-bit, as codesign runs)
    streaming into the trace folder `folder` (lower(..., out=folder)), `chunk` samples per recording batch, so at
    most one batch's events are in memory (the encoded inputs of all samples are: 4 * T * n * C*H*W bytes).
    Returns (the graph, [the wall time of the call in s])."""
    t0 = time.perf_counter()
    graph, _ = lower(w.model, w.inputs(0, n_samples), name=w.name, device="cpu", weight_fit="quantize",
                     batch_size=chunk, out=folder)
    return graph, [time.perf_counter() - t0]
