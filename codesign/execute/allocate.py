"""Hardware-aware per-layer pruning ratios, compared with uniform ratios at the same parameter budget.

1. Probe: prune each conv layer alone at a few ratios (no fine-tuning), lower the real test spikes and simulate
   them: the changes in energy and latency per inference (simulator), parameters and accuracy give each layer's
   hardware-saving and accuracy-sensitivity curves.
2. Candidates: for each trade-off weight lambda, greedily raise (in `step` increments) the ratio of the layer with the
   best (hardware saving - lambda x accuracy lost) per parameter removed, until the network has no more parameters
   than the uniform-ratio network (lambda 0: hardware only; large lambda: accuracy first); also with one layer held
   at each probe ratio (the greedy then fills the budget with the others). Uniform is a candidate.
3. Select on the simulator: compress every candidate with the method's fine-tuning, measure accuracy, energy and
   latency (analytic model, probe samples) and keep the one with the lowest weighted energy + latency whose
   accuracy is within `accuracy_tolerance` of the uniform network's.
4. Compare: the selected and the uniform network on the configured simulator and samples (results.csv, with the
   bootstrap intervals of SimResult.as_row seeded by the run seed; each point's per-sample and hardware tables
   under points/<point_id>/).

Every measurement lowers and simulates through the path a run takes (codesign.execute.evaluate.lower_model and
hardware_row on the chip built once by load_chip), so the allocator optimises the chip the run reports: every
hardware key of the config (placement, semantics, multicast, weight bits and fit ...) is honoured; probes and
candidates change only hardware.latency_model (analytic) and hardware.n_samples (probe_samples). The uniform network's
row equals a `codesign run` row of the same config at the same ratio.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import hwmodels
from codesign.store.cache import StageCache, check_cache_dir, config_key
from codesign.config.run import ConfigError, RunConfig, dump_config
from codesign.execute.evaluate import dense_stage, hardware_row, load_chip, lower_model, stage_keys
from codesign.reporting.hwfigures import PointDetails
from codesign.execute.run import RunResult, default_name, run_folder
from codesign.store.provenance import write_provenance
from codesign.reporting.report import write_report
from codesign.store.runfolder import own_run_folder, resume_hint
from codesign.store.results import atomic_write
from codesign.execute.stages import (check_data_fits, check_fits, check_n_samples, check_names, make_dataset,
                                     make_model, method_config, resolve_device, train_config)
from workloads import checkpoint, compression, models, train
from workloads.compression.base import find_conv_units

EPS_ACCURACY = 1e-3


@dataclass(frozen=True)
class AllocatorConfig:
    """Allocator settings: weights of the energy and latency fractions in the hardware saving, probe ratios,
    trade-off weights lambda of the candidate allocations, accuracy tolerance of the selection (fraction, 0.005 =
    half a point), ratio step, largest per-layer ratio, and samples simulated per probe and candidate."""

    energy_weight: float = 1.0
    latency_weight: float = 1.0
    probe_ratios: tuple[float, ...] = (0.25, 0.5, 0.75)
    lambdas: tuple[float, ...] = (0.0, 1.0, 3.0, 10.0, 30.0)
    accuracy_tolerance: float = 0.005
    max_candidates: int = 10
    step: float = 0.05
    max_ratio: float = 0.9
    probe_samples: int = 50

    def __post_init__(self):
        for name in ("energy_weight", "latency_weight"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"--{name.replace('_', '-')}: {value!r} must be a finite number >= 0")
        if self.energy_weight == 0 and self.latency_weight == 0:
            raise ConfigError("--energy-weight, --latency-weight: at least one must be > 0")


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


#: candidates.csv columns taken from a candidate's row (then its energy by component)
CANDIDATE_COLUMNS = ("accuracy", "params", "energy_j", "latency_s", "cores_used", "synops", "spikes")


def measure(model, info, dataset, cfg: RunConfig, chip: hwmodels.ChipSpec, device) -> dict:
    """Accuracy, parameters, model bits and the hardware row of one (compressed) model: lowered on
    cfg.hardware.n_samples test samples (codesign.execute.evaluate.lower_model) and mapped and simulated on `chip`
    (load_chip(cfg)) by codesign.execute.evaluate.hardware_row, as a run does; "sim" holds the SimResult. Raises
    hwmodels.MappingError when the model does not fit the chip."""
    acc = train.evaluate(model, dataset.x_test, dataset.y_test, train_config(cfg), device=device, seed=cfg.seed)
    graph, trace = lower_model(model, dataset, cfg, device, dataclasses.asdict(info))
    row, sim = hardware_row(cfg, graph, trace, chip)
    if sim is None:
        raise hwmodels.MappingError(row["error"])
    return {"accuracy": acc, "params": info.params_after,
            "model_bits": info.size_bits or 32 * models.count_parameters(model), **row, "sim": sim}


def probe_config(cfg: RunConfig, acfg: AllocatorConfig) -> RunConfig:
    """The config probes and candidates are measured with: the run's, with the analytic model on probe_samples."""
    hw = cfg.hardware.model_copy(update={"latency_model": "analytic", "n_samples": acfg.probe_samples})
    return cfg.model_copy(update={"hardware": hw})


def probe(dense, dataset, cfg: RunConfig, chip, acfg: AllocatorConfig, device) -> pd.DataFrame:
    """Per conv layer and probe ratio: the fractions of accuracy (points), parameters, energy and latency per
    inference that pruning only that layer removes (no fine-tuning; real test spikes on the simulator)."""
    info = compression.CompressionResult("dense", 0.0, 0, _n_params(dense))
    pcfg = probe_config(cfg, acfg)
    base = measure(dense, info, dataset, pcfg, chip, device)
    units = prunable_convs(dense, cfg.compression.method)
    rows = []
    for layer in units:
        for ratio in acfg.probe_ratios:
            only = {u: (ratio if u == layer else 0.0) for u in units}
            small, s_info = _compress(dense, dataset, cfg, ratio, only, False, device)
            m = measure(small, s_info, dataset, pcfg, chip, device)
            rows.append({"layer": layer, "probe_ratio": ratio,
                         "d_accuracy": base["accuracy"] - m["accuracy"],
                         "d_params_frac": 1 - m["params"] / base["params"],
                         "d_energy_frac": 1 - m["energy_j"] / base["energy_j"],
                         "d_latency_frac": 1 - m["latency_s"] / base["latency_s"]})
    return pd.DataFrame(rows)


def prunable_convs(model, method: str) -> list[str]:
    """The convs `method` prunes in `model` (all of them, but the last for compression.SPARES_LAST_CONV)."""
    units = [u.conv for u in find_conv_units(model)]
    return units[:-1] if method in compression.SPARES_LAST_CONV else units


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def ratio_curve(table: pd.DataFrame, layer: str, column: str, ratio: float) -> float:
    """Probe curve of `layer` at `ratio`: piecewise linear through (0, 0) and the probe points, extended with the
    last segment's slope."""
    part = table[table["layer"] == layer].sort_values("probe_ratio")
    xs = np.concatenate([[0.0], part["probe_ratio"].to_numpy()])
    ys = np.concatenate([[0.0], part[column].to_numpy()])
    if ratio <= xs[-1]:
        return float(np.interp(ratio, xs, ys))
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return float(ys[-1] + slope * (ratio - xs[-1]))


def layer_score(table: pd.DataFrame, layer: str, r: float, acfg: AllocatorConfig, lam: float) -> float:
    """Marginal (hardware saving - lam x accuracy lost) per fraction of parameters removed when `layer` goes from
    ratio r to r + step, from the probe curves; saving = energy_weight dE + latency_weight dL (fractions)."""
    def delta(col: str) -> float:
        return ratio_curve(table, layer, col, r + acfg.step) - ratio_curve(table, layer, col, r)
    saving = acfg.energy_weight * delta("d_energy_frac") + acfg.latency_weight * delta("d_latency_frac")
    return (saving - lam * max(delta("d_accuracy"), 0.0)) / max(delta("d_params_frac"), 1e-9)


def allocate(table: pd.DataFrame, budget_params: int, params_of, acfg: AllocatorConfig,
             lam: float = 0.0, fixed: dict[str, float] | None = None) -> dict[str, float]:
    """Greedy per-layer ratios: raise the layer with the best marginal score (layer_score with `lam`) by `step`
    until params_of(ratios) <= budget_params (params_of(ratios) -> parameters after pruning). Layers in `fixed`
    keep the given ratio.

    Raises ValueError when even max_ratio everywhere does not reach the budget.
    """
    fixed = fixed or {}
    ratios = {layer: fixed.get(layer, 0.0) for layer in table["layer"].unique()}
    while params_of(ratios) > budget_params:
        open_layers = [layer for layer in ratios
                       if layer not in fixed and ratios[layer] + acfg.step <= acfg.max_ratio + 1e-9]
        if not open_layers:
            raise ValueError(f"allocator: {budget_params:,} parameters cannot be reached with ratios <= "
                             f"{acfg.max_ratio}")
        best = max(open_layers, key=lambda layer: layer_score(table, layer, ratios[layer], acfg, lam))
        ratios[best] = round(ratios[best] + acfg.step, 6)
    return ratios


def candidates(table: pd.DataFrame, ratio: float, budget: int, params_of, acfg: AllocatorConfig) -> list[dict]:
    """Distinct candidate allocations (at most max_candidates): uniform first, one greedy allocation per lambda,
    then, for each layer held at 0 or a probe ratio, the greedy (lambda 1) allocation of the other layers."""
    layers = list(table["layer"].unique())
    out = [{layer: ratio for layer in layers}]
    tries = [(lam, None) for lam in acfg.lambdas]
    tries += [(1.0, {layer: r}) for layer in layers for r in (0.0, *acfg.probe_ratios)]
    for lam, fixed in tries:
        try:
            r = allocate(table, budget, params_of, acfg, lam, fixed)
        except ValueError:
            continue
        if r not in out:
            out.append(r)
    return out[:acfg.max_candidates]


def select(rows: pd.DataFrame, acfg: AllocatorConfig) -> int:
    """Index of the candidate with the lowest weighted energy + latency (relative to uniform, row 0) among those
    whose accuracy is within the tolerance of uniform's; 0 (uniform) when none is better."""
    base = rows.iloc[0]
    cost = (acfg.energy_weight * rows["energy_j"] / base["energy_j"]
            + acfg.latency_weight * rows["latency_s"] / base["latency_s"])
    ok = rows["accuracy"] >= base["accuracy"] - acfg.accuracy_tolerance
    return int(cost[ok].idxmin())


def _label(ratios: dict[str, float]) -> str:
    return ", ".join(f"{k}:{v:g}" for k, v in ratios.items())


def point_id(cfg: RunConfig, ratio: float, series: str, layer_ratios: dict[str, float]) -> str:
    """Id of one compared network: hash of the run's design point at `ratio`, its series and its layer ratios."""
    point = cfg.model_copy(update={"compression": cfg.compression.model_copy(update={"ratios": [ratio]})})
    return config_key("allocated", stage_keys(point).point, series, _label(layer_ratios))


def compare(dense, dataset, cfg: RunConfig, chip, ratio: float, acfg: AllocatorConfig, device):
    """Probe, build candidates, select on the simulator and compare with uniform.

    Returns (comparison rows: uniform and hardware-aware on the configured simulator, candidates table, probe
    table, {point_id: SimResult} of the two compared networks).
    """
    check_method(cfg)
    table = probe(dense, dataset, cfg, chip, acfg, device)
    budget = _compress(dense, dataset, cfg, ratio, None, False, device)[1].params_after

    def params_of(ratios: dict[str, float]) -> int:
        if not any(ratios.values()):
            return _n_params(dense)
        return _compress(dense, dataset, cfg, max(ratios.values()), ratios, False, device)[1].params_after

    cands = candidates(table, ratio, budget, params_of, acfg)
    nets, cand_rows = [], []
    for i, ratios in enumerate(cands):
        model, info = _compress(dense, dataset, cfg, max(ratios.values()), None if i == 0 else ratios, True, device)
        m = measure(model, info, dataset, probe_config(cfg, acfg), chip, device)
        nets.append((model, info))
        cand_rows.append({"candidate": "uniform" if i == 0 else f"greedy #{i}", "layer_ratios": _label(ratios),
                          **{k: m[k] for k in CANDIDATE_COLUMNS},
                          **{f"energy_{k}_j": m[f"energy_{k}_j"] for k in m["sim"].energy_breakdown_j}})
    cand_df = pd.DataFrame(cand_rows)
    best = select(cand_df, acfg)
    cand_df["selected"] = cand_df.index == best
    rows, sims = [], {}
    for name, i in (("uniform", 0), ("hardware-aware", best)):
        model, info = nets[i]
        m = measure(model, info, dataset, cfg, chip, device)
        pid = point_id(cfg, ratio, name, cands[i])
        sims[pid] = m.pop("sim")
        rows.append({"point_id": pid, "method": cfg.compression.method, "series": name, "ratio": ratio,
                     "layer_ratios": _label(cands[i]), **m})
    return pd.DataFrame(rows), cand_df, table, sims


def run_allocator(cfg: RunConfig, ratio: float, acfg: AllocatorConfig, log=print, resume: bool = False):
    """`codesign allocate`: probe, allocate and compare on the configured model and chip; writes the run folder
    (results.csv: uniform vs hardware-aware; points/<point_id>/: their per-sample and hardware tables;
    allocation.csv: the probe and the ratios; report.md/html).

    Raises ConfigError for a bad ratio, names or settings (a cache_dir that cannot be used included:
    codesign.store.cache.check_cache_dir) and hwmodels.MappingError when the dense network does not fit the chip,
    before the run folder is created."""
    start = time.perf_counter()
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"--ratio: {ratio} must be in (0, 1)")
    check_names(cfg)
    check_method(cfg)
    chip = load_chip(cfg)
    check_cache_dir(cfg.cache_dir)
    name = cfg.run_name or default_name(f"allocate-{cfg.compression.method}-r{ratio:g}")
    config_yaml = dump_config(cfg.model_copy(update={"run_name": name}))
    out = run_folder(cfg.output_dir, name, resume, "config.resolved.yaml", yaml.safe_load(config_yaml))
    device = resolve_device(cfg.device)
    dataset = make_dataset(cfg)
    check_n_samples(dataset, cfg, max(cfg.hardware.n_samples, acfg.probe_samples))
    check_data_fits(dataset, cfg)
    check_fits(make_model(cfg, dataset), dataset, cfg, chip, device)  # the dense network must fit the chip
    with own_run_folder(out, resume, "config.resolved.yaml", config_yaml):
        log(f"allocation {resume_hint(out)}")
        result, table = _allocate_into(out, cfg, ratio, acfg, chip, dataset, device, log, start, config_yaml)
    return result, table


def _allocate_into(out: Path, cfg: RunConfig, ratio: float, acfg: AllocatorConfig, chip, dataset, device, log,
                   start: float, config_yaml: str):
    """The body of run_allocator, writing into the owned run folder `out`."""
    point = cfg.model_copy(update={"compression": cfg.compression.model_copy(update={"ratios": [0.0]})})
    dense_dir = dense_stage(point, StageCache(cfg.cache_dir), stage_keys(point).dense, dataset, device, False)
    dense = checkpoint.load(dense_dir / "model.pt")["model"]
    probed = prunable_convs(dense, cfg.compression.method)
    log(f"probing {len(probed)} conv layers at ratio {ratio:g} on {chip.name}")
    df, cand_df, table, sims = compare(dense, dataset, cfg, chip, ratio, acfg, device)
    for pid, sim in sims.items():
        PointDetails.from_sim(sim, chip).save(out / "points" / pid)
    write_provenance(out, cfg.seed)
    for fname, frame in (("results.csv", df), ("allocation.csv", table), ("candidates.csv", cand_df)):
        atomic_write(out / fname, lambda p, f=frame: f.to_csv(p, index=False))
    u, a = df.iloc[0], df.iloc[1]
    summary = [f"{cfg.compression.method} on {cfg.model.name}/{cfg.data.dataset}, chip {chip.name}; uniform ratio "
               f"{ratio:g} vs hardware-aware per-layer ratios ({a['layer_ratios']}) at <= {int(u['params']):,} params",
               f"hardware-aware vs uniform: energy x{a['energy_j'] / u['energy_j']:.3f}, latency "
               f"x{a['latency_s'] / u['latency_s']:.3f}, accuracy {100 * (a['accuracy'] - u['accuracy']):+.2f} points, "
               f"params {int(a['params']):,} vs {int(u['params']):,}",
               f"{len(cand_df)} distinct candidates (uniform, greedy per lambda in {list(acfg.lambdas)}, greedy with one "
               f"layer held at a probe ratio), "
               f"selected: {cand_df.loc[cand_df['selected'], 'candidate'].iloc[0]} (lowest weighted energy + latency "
               f"with accuracy within {100 * acfg.accuracy_tolerance:g} points of uniform); lowest-energy candidate "
               f"overall: energy x{cand_df['energy_j'].min() / cand_df['energy_j'].iloc[0]:.3f} at accuracy "
               f"{100 * (cand_df.loc[cand_df['energy_j'].idxmin(), 'accuracy'] - cand_df['accuracy'].iloc[0]):+.2f} "
               f"points"]
    write_report(out, df, config_yaml, summary, title=f"Hardware-aware allocation: {out.name}",
                 tables={"Candidates (fine-tuned, analytic model on the probe samples)": cand_df.round(6),
                         "Per-layer probe (each conv pruned alone, no fine-tuning)": table.round(4)})
    return RunResult(df, out, time.perf_counter() - start, summary), table
