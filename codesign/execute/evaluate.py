"""Evaluate one design point with cached stages: dense model -> compressed model -> lowered trace -> simulation.

Each stage's output is cached under the hash of the config fields that produce it and of the code version
(codesign.store.cache), so a hardware-only sweep reuses trained models and traces, and a resumed sweep never retrains a
finished stage. A cached entry is verified against its file hashes and loaded (checkpoints load without running
code); one that fails either is discarded with a warning and made again.

One evaluation path: every command lowers with lower_model, builds the chip once per point with load_chip and
maps and simulates with hardware_row, so every hardware key of the config means the same in all of them.
"""
from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Callable

import numpy as np

import hwmodels
from codesign.store.cache import StageCache, code_version, config_key
from codesign.config.run import NON_RESULT_FIELDS, ConfigError, RunConfig
from codesign.reporting.hwfigures import PointDetails
from codesign.execute.stages import (encoded_test_inputs, make_dataset, make_model, method_config, resolve_device,
                             train_config)
from hwmodels.chip.presets import chip_file_digest
from hwmodels.trace_check import check_trace
from workloads import checkpoint, compression, lowering, models, train
from workloads.data import data_source
from workloads.exchange.recurrent import load_graph

#: fields added after run folders existed: left out of the point id while they hold their default, so the ids of
#: existing run folders (and `--resume` of them) are unchanged
LATER_FIELDS = {"model": {"options": {}, "neuron_options": {}}}
#: version of the lowered stage's output, part of its key: 2 = traces of format 2 (neuron activity, predictions),
#: lowered under hardware.weight_fit; 3 = the class-balanced test samples of stages.hardware_samples (the first
#: n before); entries of older versions are never reused
LOWERED_VERSION = 3


@dataclasses.dataclass(frozen=True)
class StageKeys:
    """Cache keys of the stages of one design point, and the point's own id."""

    dense: str
    compressed: str
    lowered: str
    point: str


def ratio_of(cfg: RunConfig) -> float:
    """The single compression ratio of a design point (its `compression.ratios` has one entry)."""
    if len(cfg.compression.ratios) != 1:
        raise ValueError(f"compression.ratios: a design point needs exactly one ratio, got {cfg.compression.ratios}")
    return cfg.compression.ratios[0]


def stage_keys(cfg: RunConfig) -> StageKeys:
    """Hashes of exactly the fields each stage depends on. The dense key holds the code version
    (codesign.store.cache.code_version: package version + hash of the sources that make the entries) and every later
    stage key holds the dense key, so no entry made by other code is ever reused. The point id does not. For a
    dataset read from local files the dense key also holds the folder it resolves to (workloads.data.data_source:
    $CODESIGN_DATA_DIR or the working directory may change it while the config stays the same)."""
    source = data_source(cfg.data.dataset, cfg.data.root)  # None (shipped sets): keys as before
    dense = config_key("dense", code_version(), cfg.seed, cfg.data.model_dump(), cfg.model.model_dump(),
                       cfg.train.model_dump(), *([{"data_source": source}] if source else []))
    comp = config_key("compressed", dense, cfg.compression.method, ratio_of(cfg), cfg.compression.params)
    low = config_key("lowered", LOWERED_VERSION, comp, cfg.hardware.n_samples, cfg.hardware.weight_bits,
                     cfg.hardware.weight_fit)
    point = config_key("point", point_tree(cfg), *chip_file_part(cfg))
    return StageKeys(dense, comp, low, point)


def point_tree(cfg: RunConfig) -> dict:
    """What a point id hashes: the config without NON_RESULT_FIELDS and without LATER_FIELDS at their defaults."""
    tree = cfg.model_dump(mode="json", exclude=NON_RESULT_FIELDS)
    # {core: {neurons_per_core: 256}} and {core.neurons_per_core: 256} make the same chip: one point id
    tree["hardware"]["overrides"] = dotted_overrides(tree["hardware"].get("overrides") or {})
    for section, fields in LATER_FIELDS.items():
        for name, default in fields.items():
            if tree[section].get(name) == default:
                del tree[section][name]
    return tree


def dotted_overrides(overrides: dict, prefix: str = "") -> dict:
    """hardware.overrides with nested chip sections written as dotted keys ({"core": {"neurons_per_core": 256}}
    -> {"core.neurons_per_core": 256}, as hwmodels.load_preset reads both); an empty mapping stays a value."""
    out = {}
    for key, value in overrides.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(dotted_overrides(value, f"{name}."))
        else:
            out[name] = value
    return out


def chip_file_part(cfg: RunConfig) -> tuple[dict, ...]:
    """What a point id holds beyond the config when `hardware.preset` is a chip file (or `sanafe:PATH`): the
    sha256 of the file's bytes, so an edited file is a new point and never resumes or reuses a row made with the
    old content; () for a shipped preset (whose content is versioned with the code, point ids unchanged). Raises
    ValueError naming the file when it cannot be read."""
    digest = chip_file_digest(cfg.hardware.preset)
    return () if digest is None else ({"chip_sha256": digest},)


def _lazy_dataset(cfg: RunConfig) -> Callable[[], object]:
    """A function returning make_dataset(cfg), built on its first call only (cached entries need no dataset)."""
    return functools.cache(lambda: make_dataset(cfg))


def _model_file(folder: Path) -> dict:
    """The checkpoint payload of a model entry (workloads.checkpoint.load of model.pt; ValueError when unusable)."""
    return checkpoint.load(folder / "model.pt")


def _dense(cfg: RunConfig, cache: StageCache, key: str, data: Callable, device, progress: bool) -> tuple[Path, dict]:
    """(folder, checkpoint payload) of the trained dense model of `cfg`, training it if not cached or unusable."""
    def make(folder: Path) -> None:
        dataset = data()
        model = make_model(cfg, dataset)
        tcfg = train_config(cfg)
        history = train.train(model, dataset, tcfg, seed=cfg.seed, device=device, progress=progress)
        acc = train.evaluate(model, dataset.x_test, dataset.y_test, tcfg, device=device, seed=cfg.seed)
        checkpoint.save(model, folder / "model.pt", config=cfg.model_dump(mode="json"),
                        extra={"accuracy": acc, "history": history})
    return cache.load_or_make("dense", key, make, _model_file, meta={"stage": "dense", "seed": cfg.seed})


def dense_stage(cfg: RunConfig, cache: StageCache, key: str, dataset, device, progress: bool) -> Path:
    """Folder of the trained dense model of `cfg` (model.pt with its test accuracy), training it on `dataset` if
    not cached (or if the cached entry fails to verify or load: it is made again)."""
    return _dense(cfg, cache, key, lambda: dataset, device, progress)[0]


def _compressed(cfg: RunConfig, cache: StageCache, keys: StageKeys, data: Callable, device,
                progress: bool) -> tuple[Path, dict]:
    """(folder, checkpoint payload) of the compressed model of `cfg` (model.pt, result.json)."""
    def make(folder: Path) -> None:
        dataset = data()
        dense = _dense(cfg, cache, keys.dense, data, device, progress)[1]["model"]
        small, info = compression.compress(cfg.compression.method, dense, dataset, ratio_of(cfg),
                                           cfg=method_config(cfg), seed=cfg.seed, train_cfg=train_config(cfg),
                                           device=device, progress=progress)
        acc = train.evaluate(small, dataset.x_test, dataset.y_test, train_config(cfg), device=device, seed=cfg.seed)
        checkpoint.save(small, folder / "model.pt", extra={"accuracy": acc})
        (folder / "result.json").write_text(json.dumps(dataclasses.asdict(info), default=str))

    return cache.load_or_make("compressed", keys.compressed, make, _compressed_file, meta={"stage": "compressed"})


def _compressed_file(folder: Path) -> dict:
    """The checkpoint payload of a compressed entry with its "result" (result.json). Raises ValueError (one line)
    when model.pt does not load (workloads.checkpoint.load), result.json is not JSON, or either lacks a value
    model_row reads (_row_numbers), so the cache discards the entry and makes it again instead of failing later."""
    payload = {**_model_file(folder), "result": json.loads((folder / "result.json").read_text())}
    _row_numbers(payload)
    return payload


def _row_numbers(payload: dict) -> tuple[float, int, int | None]:
    """(accuracy, params_after, size_bits or None) of a compressed payload, as model_row reads them. Raises
    ValueError naming the file when one is missing or not a number."""
    try:
        accuracy = float(payload["extra"]["accuracy"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"model.pt: the checkpoint's extra holds no numeric 'accuracy' ({type(exc).__name__})") \
            from None
    try:
        info = payload["result"]
        size_bits = info.get("size_bits")
        return accuracy, int(info["params_after"]), None if not size_bits else int(size_bits)
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"result.json: not an object with an integer 'params_after' and 'size_bits' "
                         f"({type(exc).__name__})") from None


def load_lowered(folder: Path) -> tuple[hwmodels.NetworkGraph, hwmodels.EventTrace]:
    """(graph, trace) of a lowered entry folder: graph.npz and trace.npz loaded (workloads.exchange.load_graph:
    a RecurrentGraph when its projections form a cycle, else NetworkGraph.load; EventTrace.load) and checked to
    belong together (hwmodels.trace_check.check_trace).

    Raises ValueError (one line naming the file) for content that does not load or does not match (an object
    array, a truncated archive, a zip bomb, a trace of another graph) and FileNotFoundError for a missing file;
    the cache then discards the entry with a warning and makes it again (StageCache.load_or_make).
    """
    graph = load_graph(folder / "graph.npz")
    trace = hwmodels.EventTrace.load(folder / "trace.npz")
    check_trace(graph, trace)
    return graph, trace


def lower_model(model, dataset, cfg: RunConfig, device, compression: dict,
                name: str = "network") -> tuple[hwmodels.NetworkGraph, hwmodels.EventTrace]:
    """Config -> lowered artifacts: hardware.n_samples class-balanced test samples of `dataset` (the classes in
    turn, codesign.execute.stages.hardware_samples) encoded as the config says
    (codesign.execute.stages.encoded_test_inputs) and `model` lowered on them with hardware.weight_bits and
    hardware.weight_fit (workloads.lowering.lower; `compression`: the method's CompressionResult as a dict).
    The hardware keys that shape the lowered artifacts are applied here and only here; hardware_row applies
    the rest."""
    x, y = encoded_test_inputs(dataset, cfg, cfg.hardware.n_samples)
    return lowering.lower(model, x, labels=y, weight_bits=cfg.hardware.weight_bits,
                          weight_fit=cfg.hardware.weight_fit, device=device, name=name, compression=compression)


def _lowered(cfg: RunConfig, cache: StageCache, keys: StageKeys, data: Callable, device, compressed: dict,
             load: Callable[[Path], object] = load_lowered) -> tuple[Path, object]:
    """(folder, load(folder)) of the lowered graph and trace of `cfg` (graph.npz, trace.npz) of the `compressed`
    payload; an entry that fails to verify or to load is discarded and made again."""
    def make(folder: Path) -> None:
        graph, trace = lower_model(compressed["model"], data(), cfg, device, compressed["result"],
                                   name=f"{cfg.compression.method}-r{ratio_of(cfg):g}")
        graph.save(folder / "graph.npz")
        trace.save(folder / "trace.npz")
    return cache.load_or_make("lowered", keys.lowered, make, load, meta={"stage": "lowered"})


def model_row(cfg: RunConfig, cache: StageCache, progress: bool = False) -> tuple[dict, Path]:
    """Accuracy/parameter part of a point's row and the folder of its lowered graph + trace (all cached; a cached
    entry that fails to verify or load (graph and trace included: load_lowered) is made again, the dataset is
    built only when something is made)."""
    row, low, _ = _model_row(cfg, cache, progress)
    return row, low


def _model_row(cfg: RunConfig, cache: StageCache, progress: bool = False,
               load: Callable[[Path], object] = load_lowered) -> tuple[dict, Path, object]:
    """model_row plus load(lowered folder), the value the lowered entry was checked with."""
    keys = stage_keys(cfg)
    device = resolve_device(cfg.device)
    data = _lazy_dataset(cfg)
    _, payload = _compressed(cfg, cache, keys, data, device, progress)
    accuracy, params, size_bits = _row_numbers(payload)
    row = {"point_id": keys.point, "method": cfg.compression.method, "ratio": ratio_of(cfg),
           "accuracy": accuracy, "params": params,
           "model_bits": size_bits or 32 * models.count_parameters(payload["model"])}
    low, loaded = _lowered(cfg, cache, keys, data, device, payload, load)
    return row, low, loaded


#: hardware keys that shape the lowered artifacts (lower_model, part of the lowered stage's key); every other
#: field of codesign.config.run.HardwareConfig is applied by load_chip or hardware_row
LOWERING_KEYS = ("n_samples", "weight_bits", "weight_fit")


def load_chip(cfg: RunConfig) -> hwmodels.ChipSpec:
    """The chip of a design point: hardware.preset loaded with hardware.overrides applied (hwmodels.load_preset).
    Build it once per point (or once for points that share their hardware section, as a run's ratios do) and
    pass it down: hardware_row and the point's detail tables take it. Raises ConfigError naming `hardware`."""
    try:
        return hwmodels.load_preset(cfg.hardware.preset, cfg.hardware.overrides)
    except ValueError as exc:
        raise ConfigError(f"hardware: {exc}") from None


def hardware_row(cfg: RunConfig, graph: hwmodels.NetworkGraph, trace: hwmodels.EventTrace, chip: hwmodels.ChipSpec,
                 sim_cache: hwmodels.SimCache | None = None,
                 on_progress: Callable[[int, int], None] | None = None) -> tuple[dict, hwmodels.SimResult | None]:
    """Lowered artifacts -> mapping -> SimResult row: the one hardware evaluation that `run`, `sweep`, `search`,
    `allocate` and `codesign simulate` share. Maps `graph` onto `chip` (hardware.placement, with `trace` as the
    measured traffic) and simulates `trace` (hardware.latency_model, hardware.semantics, hardware.multicast); the
    lowering keys (LOWERING_KEYS) are already in `graph` and `trace` (lower_model).

    chip: load_chip(cfg), built once by the caller. Returns (row, SimResult); a network that does not fit gives
    fits=False, the reason and no SimResult. The row is SimResult.as_row with its bootstrap intervals seeded by
    cfg.seed, plus `preset` (hardware.preset as given: a preset name, or a chip file path as written in the
    config), fits, error and memory_bits. sim_cache: reuse mappings, action counts and timings of earlier points
    on the same graph and trace (hwmodels.SimCache; the row is the same with or without it). on_progress: passed
    to hwmodels.simulate (samples done, total)."""
    hw = cfg.hardware
    row = {"preset": hw.preset}
    mapper = hwmodels.map_network if sim_cache is None else sim_cache.mapping
    try:
        mapping = mapper(graph, chip, placement=hw.placement, traffic=trace)
    except hwmodels.MappingError as exc:
        return {**row, "fits": False, "error": str(exc), "energy_j": np.nan, "latency_s": np.nan}, None
    sim = hwmodels.simulate(graph, trace, chip, mapping=mapping, model=hw.latency_model, cache=sim_cache,
                            semantics=hw.semantics, multicast=hw.multicast, on_progress=on_progress)
    row.update(sim.as_row(seed=cfg.seed))
    row.update({"fits": True, "error": "", "memory_bits": int(mapping.core_synapse_bits.sum())})
    return row, sim


def evaluate_point(cfg: RunConfig, cache_dir: str | Path, progress: bool = False,
                   sim_cache: hwmodels.SimCache | None = None, details_root: str | Path | None = None,
                   chip: hwmodels.ChipSpec | None = None) -> dict:
    """One results row for the design point `cfg` (a RunConfig with one ratio), using and filling the cache:
    config -> lowered artifacts (cached stages) -> hardware_row.
    sim_cache: shared by the points of a serial sweep, it keeps each lowered graph + trace loaded and reuses
    their mappings, action counts and timings across hardware-only points (hwmodels.SimCache).
    details_root: when given, the point's per-sample, per-population, per-core, per-link and per-step tables are
    written to <details_root>/<point_id>/ (codesign.reporting.hwfigures.PointDetails) before the row is returned (a point
    that does not fit the chip has none).
    chip: load_chip(cfg) when the caller has built it already (a run's points share one); default: built here,
    once, for the row and the detail tables."""
    cache = StageCache(cache_dir)

    def load(folder: Path) -> tuple[hwmodels.NetworkGraph, hwmodels.EventTrace]:
        """The lowered entry's graph and trace (kept in sim_cache when given); a failure discards the entry."""
        if sim_cache is None:
            return load_lowered(folder)
        return sim_cache.keep(("lowered", str(folder)), lambda: load_lowered(folder))
    row, _, (graph, trace) = _model_row(cfg, cache, progress, load)
    chip = load_chip(cfg) if chip is None else chip
    hw, sim = hardware_row(cfg, graph, trace, chip, sim_cache)
    row.update(hw)
    if details_root is not None and sim is not None:
        PointDetails.from_sim(sim, chip).save(Path(details_root) / row["point_id"])
    return row
