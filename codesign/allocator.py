"""Hardware-aware per-layer pruning ratios, compared with uniform ratios at the same parameter budget.

1. Probe: prune each conv layer alone at the probe ratio (no fine-tuning), lower the real test spikes and simulate
   them: the change in energy and latency per inference (simulator) and in accuracy is that layer's sensitivity.
2. Allocate: greedily raise, in `step` increments, the ratio of the layer with the largest hardware saving
   (weighted energy + latency fractions) per point of accuracy lost, until the network has no more parameters
   than the uniform-ratio network.
3. Compare: compress with the uniform ratio and with the allocated ratios (same method, same fine-tuning), then
   accuracy, parameters, energy and latency of both on the simulator.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

import hwmodels
from codesign.cache import StageCache
from codesign.config import ConfigError, RunConfig, dump_config
from codesign.evaluate import dense_stage, stage_keys
from codesign.pipeline import RunResult, load_chip, run_folder
from codesign.provenance import write_provenance
from codesign.report import write_report
from codesign.stages import (check_names, encoded_test_inputs, make_dataset, method_config, resolve_device,
                             train_config)
from workloads import checkpoint, compression, lowering, train
from workloads.compression.base import find_conv_units

EPS_ACCURACY = 1e-3


@dataclass(frozen=True)
class AllocatorConfig:
    """Probe and greedy-allocation settings: weights of the energy, latency and parameter fractions in the saving
    score, the probe ratios, the ratio step, the largest per-layer ratio, and the samples simulated per probe."""

    energy_weight: float = 1.0
    latency_weight: float = 1.0
    params_weight: float = 1.0
    probe_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    step: float = 0.05
    max_ratio: float = 0.9
    probe_samples: int = 50


def check_method(cfg: RunConfig) -> None:
    """The method must accept per-layer ratios. Raises ConfigError naming the methods that do."""
    ok = [m for m, c in compression.CONFIGS.items() if "layer_ratios" in {f.name for f in dataclasses.fields(c)}]
    if cfg.compression.method not in ok:
        raise ConfigError(f"compression.method: '{cfg.compression.method}' has no per-layer ratios; use one of "
                          f"{', '.join(ok)}")


def _compress(model, dataset, cfg: RunConfig, ratio: float, layer_ratios: dict | None, finetune: bool, device):
    params = dict(cfg.compression.params, layer_ratios=layer_ratios)
    if not finetune:
        params["finetune_epochs"] = 0
    mcfg = method_config(cfg.model_copy(update={"compression": cfg.compression.model_copy(update={"params": params})}))
    return compression.compress(cfg.compression.method, model, dataset, ratio, cfg=mcfg, seed=cfg.seed,
                                train_cfg=train_config(cfg), device=device, progress=False)


def measure(model, info, dataset, cfg: RunConfig, chip, n_samples: int, device, sim_model: str) -> dict:
    """Accuracy, parameters, energy and latency per inference of one (compressed) model on `chip`."""
    acc = train.evaluate(model, dataset.x_test, dataset.y_test, train_config(cfg), device=device, seed=cfg.seed)
    x, y = encoded_test_inputs(dataset, cfg, n_samples)
    graph, trace = lowering.lower(model, x, labels=y, weight_bits=cfg.hardware.weight_bits, device=device,
                                  compression=dataclasses.asdict(info))
    mapping = hwmodels.map_network(graph, chip, placement=cfg.hardware.placement, traffic=trace)
    sim = hwmodels.simulate(graph, trace, chip, mapping=mapping, model=sim_model)
    return {"accuracy": acc, "params": info.params_after, "energy_j": sim.energy_j, "latency_s": sim.latency_s,
            "cores_used": sim.cores_used, "synops": sim.synops, "spikes": sim.spikes,
            **{f"energy_{k}_j": v for k, v in sim.energy_breakdown_j.items()}, "sim": sim}


def probe(dense, dataset, cfg: RunConfig, chip, acfg: AllocatorConfig, device) -> pd.DataFrame:
    """Per conv layer and probe ratio: the fractions of accuracy (points), parameters, energy and latency per
    inference that pruning only that layer removes (no fine-tuning; real test spikes on the simulator)."""
    info = compression.CompressionResult("dense", 0.0, 0, _n_params(dense))
    base = measure(dense, info, dataset, cfg, chip, acfg.probe_samples, device, "analytic")
    units = [u.conv for u in find_conv_units(dense)]
    rows = []
    for layer in units:
        for ratio in acfg.probe_ratios:
            only = {u: (ratio if u == layer else 0.0) for u in units}
            small, s_info = _compress(dense, dataset, cfg, ratio, only, False, device)
            m = measure(small, s_info, dataset, cfg, chip, acfg.probe_samples, device, "analytic")
            rows.append({"layer": layer, "probe_ratio": ratio,
                         "d_accuracy": base["accuracy"] - m["accuracy"],
                         "d_params_frac": 1 - m["params"] / base["params"],
                         "d_energy_frac": 1 - m["energy_j"] / base["energy_j"],
                         "d_latency_frac": 1 - m["latency_s"] / base["latency_s"]})
    return pd.DataFrame(rows)


def _curve(table: pd.DataFrame, layer: str, column: str, ratio: float) -> float:
    """Probe curve of `layer` at `ratio`: piecewise linear through (0, 0) and the probe points, extended with the
    last segment's slope."""
    part = table[table["layer"] == layer].sort_values("probe_ratio")
    xs = np.concatenate([[0.0], part["probe_ratio"].to_numpy()])
    ys = np.concatenate([[0.0], part[column].to_numpy()])
    if ratio <= xs[-1]:
        return float(np.interp(ratio, xs, ys))
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return float(ys[-1] + slope * (ratio - xs[-1]))


def layer_score(table: pd.DataFrame, layer: str, r: float, acfg: AllocatorConfig) -> float:
    """Marginal saving per point of accuracy lost when `layer` goes from ratio r to r + step:
    (w_E dE + w_L dL + w_P dP) / (max(d accuracy, 0) + EPS), from the probe curves."""
    def delta(col: str) -> float:
        return _curve(table, layer, col, r + acfg.step) - _curve(table, layer, col, r)
    saving = (acfg.energy_weight * delta("d_energy_frac") + acfg.latency_weight * delta("d_latency_frac")
              + acfg.params_weight * delta("d_params_frac"))
    return saving / (max(delta("d_accuracy"), 0.0) + EPS_ACCURACY)


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def allocate(table: pd.DataFrame, budget_params: int, params_of, acfg: AllocatorConfig) -> dict[str, float]:
    """Greedy per-layer ratios: raise the layer with the best marginal score (layer_score) by `step` until
    params_of(ratios) <= budget_params (params_of(ratios) -> parameters after pruning).

    Raises ValueError when even max_ratio everywhere does not reach the budget.
    """
    ratios = {layer: 0.0 for layer in table["layer"].unique()}
    while params_of(ratios) > budget_params:
        open_layers = [layer for layer in ratios if ratios[layer] + acfg.step <= acfg.max_ratio + 1e-9]
        if not open_layers:
            raise ValueError(f"allocator: {budget_params:,} parameters cannot be reached with ratios <= "
                             f"{acfg.max_ratio}")
        best = max(open_layers, key=lambda layer: layer_score(table, layer, ratios[layer], acfg))
        ratios[best] = round(ratios[best] + acfg.step, 6)
    return ratios


def compare(dense, dataset, cfg: RunConfig, chip, ratio: float, acfg: AllocatorConfig, device):
    """Probe, allocate and compare: returns (comparison rows, probe table with the allocated ratios)."""
    check_method(cfg)
    table = probe(dense, dataset, cfg, chip, acfg, device)
    uniform, u_info = _compress(dense, dataset, cfg, ratio, None, True, device)

    def params_of(ratios: dict[str, float]) -> int:
        if not any(ratios.values()):
            return _n_params(dense)
        return _compress(dense, dataset, cfg, max(ratios.values()), ratios, False, device)[1].params_after

    ratios = allocate(table, u_info.params_after, params_of, acfg)
    table = table.assign(allocated_ratio=table["layer"].map(ratios))
    aware, a_info = _compress(dense, dataset, cfg, max(ratios.values()), ratios, True, device)
    rows = []
    for name, model, info in (("uniform", uniform, u_info), ("hardware-aware", aware, a_info)):
        m = measure(model, info, dataset, cfg, chip, cfg.hardware.n_samples, device, cfg.hardware.model)
        m.pop("sim")
        rows.append({"method": cfg.compression.method, "series": name, "ratio": ratio,
                     "layer_ratios": ", ".join(f"{k}:{v:g}" for k, v in
                                               (ratios if name != "uniform" else {k: ratio for k in ratios}).items()),
                     **m})
    return pd.DataFrame(rows), table


def run_allocator(cfg: RunConfig, ratio: float, acfg: AllocatorConfig, log=print, resume: bool = False):
    """`codesign allocate`: probe, allocate and compare on the configured model and chip; writes the run folder
    (results.csv: uniform vs hardware-aware; allocation.csv: the probe and the ratios; report.md/html)."""
    start = time.perf_counter()
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"--ratio: {ratio} must be in (0, 1)")
    check_names(cfg)
    check_method(cfg)
    chip = load_chip(cfg)
    out = run_folder(cfg.output_dir, cfg.run_name or f"allocate-{cfg.compression.method}-r{ratio:g}", resume)
    device = resolve_device(cfg.device)
    dataset = make_dataset(cfg)
    point = cfg.model_copy(update={"compression": cfg.compression.model_copy(update={"ratios": [0.0]})})
    dense_dir = dense_stage(point, StageCache(cfg.cache_dir), stage_keys(point).dense, dataset, device, False)
    dense = checkpoint.load(dense_dir / "model.pt")["model"]
    log(f"probing {len(find_conv_units(dense))} conv layers at ratio {ratio:g} on {chip.name}")
    df, table = compare(dense, dataset, cfg, chip, ratio, acfg, device)
    out.mkdir(parents=True, exist_ok=True)
    write_provenance(out, cfg.seed)
    df.to_csv(out / "results.csv", index=False)
    table.to_csv(out / "allocation.csv", index=False)
    u, a = df.iloc[0], df.iloc[1]
    summary = [f"{cfg.compression.method} on {cfg.model.name}/{cfg.data.dataset}, chip {chip.name}; uniform ratio "
               f"{ratio:g} vs hardware-aware per-layer ratios ({a['layer_ratios']}) at <= {int(u['params']):,} params",
               f"hardware-aware vs uniform: energy x{a['energy_j'] / u['energy_j']:.3f}, latency "
               f"x{a['latency_s'] / u['latency_s']:.3f}, accuracy {100 * (a['accuracy'] - u['accuracy']):+.2f} points, "
               f"params {int(a['params']):,} vs {int(u['params']):,}"]
    config_yaml = dump_config(cfg.model_copy(update={"run_name": out.name}))
    (out / "config.resolved.yaml").write_text(config_yaml)
    write_report(out, df, config_yaml, summary, title=f"Hardware-aware allocation: {out.name}",
                 tables={"Per-layer probe (each conv pruned alone, no fine-tuning) and allocated ratios": table.round(4)})
    return RunResult(df, out, time.perf_counter() - start, summary), table
