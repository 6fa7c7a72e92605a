"""Bootstrap confidence intervals (hwmodels.stats) and the per-sample results they are computed from."""
import numpy as np
import pytest

from hwmodels import load_preset, simulate
from hwmodels.stats import mean_ci, quantile, ratio_ci


def test_mean_ci_covers_the_mean_and_shrinks_with_more_samples():
    rng = np.random.default_rng(0)
    small, large = rng.normal(10, 2, 20), rng.normal(10, 2, 2000)
    lo_s, hi_s = mean_ci(small, seed=1)
    lo_l, hi_l = mean_ci(large, seed=1)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    # percentile bootstrap of a mean: about 2 x 1.96 x sd / sqrt(n) wide
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * large.std() / np.sqrt(2000), rel=0.1)
    assert (hi_l - lo_l) < (hi_s - lo_s) / 5


def test_intervals_are_seeded_and_degenerate_cases_are_explicit():
    v = np.random.default_rng(3).random(30)
    assert mean_ci(v, seed=4) == mean_ci(v, seed=4) != mean_ci(v, seed=5)
    assert mean_ci(np.full(5, 2.5)) == (2.5, 2.5)
    assert all(np.isnan(mean_ci(np.array([1.0]))))
    with pytest.raises(ValueError, match="level: 1.5 must be in"):
        mean_ci(v, level=1.5)


def test_pairing_removes_the_spread_two_measurements_share():
    """b = 2 a on the same inputs: the paired ratio is exactly 0.5 in every resample; independent resampling
    of the same numbers gives a wide interval around 0.5."""
    a = np.random.default_rng(1).lognormal(0, 1, 50)
    r, lo, hi = ratio_ci(a, 2 * a, paired=True)
    assert r == lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    r, lo, hi = ratio_ci(a, 2 * a, paired=False)
    assert r == pytest.approx(0.5) and lo < 0.4 and hi > 0.6
    assert ratio_ci(np.array([3.0]), np.array([6.0]), paired=False) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match="paired groups need equal lengths"):
        ratio_ci(a, a[:10], paired=True)


def test_simresult_reports_per_sample_values_percentiles_and_intervals(rng, nets):
    g = nets.mixed_graph(rng)
    tr = nets.random_trace(g, rng, n_samples=12, n_timesteps=3, rate=0.3)
    r = simulate(g, tr, load_preset("loihi", {"core.neurons_per_core": 16}))
    s = r.samples
    assert len(s) == 12 and s["energy_j"].mean() == pytest.approx(r.energy_j, rel=1e-12)
    assert s["latency_s"].mean() == pytest.approx(r.latency_s, rel=1e-12)
    assert s["spikes"].sum() == tr.counts().sum()
    row = r.as_row(seed=0)
    assert row["energy_j_ci_low"] <= r.energy_j <= row["energy_j_ci_high"]
    assert row["latency_p50_s"] == pytest.approx(np.median(s["latency_s"]))
    assert row["latency_p99_s"] <= s["latency_s"].max()
    for q in (50, 95, 99):  # each the value of its own np.percentile call
        assert row[f"latency_p{q}_s"] == float(np.percentile(s["latency_s"].to_numpy(), q))
    assert (row["energy_j_ci_low"], row["energy_j_ci_high"]) == mean_ci(s["energy_j"].to_numpy(), seed=0)


@pytest.mark.parametrize("n", [100, 128, 129, 300])
def test_mean_cis_equal_scipy_bootstrap_intervals_for_short_and_long_columns(n):
    """mean_cis (shared draws, compiled resampled means up to 128 values, numpy's above) gives mean_ci's
    scipy.stats.bootstrap intervals bit for bit."""
    from hwmodels.stats import mean_cis
    rng = np.random.default_rng(n)
    cols = {"a": rng.lognormal(size=n), "b": rng.normal(size=n) * 1e-9, "flat": np.full(n, 2.5)}
    got = mean_cis(cols, seed=3, n_resamples=500)
    assert got == {k: mean_ci(v, seed=3, n_resamples=500) for k, v in cols.items()}


@pytest.mark.parametrize("n", [1, 2, 7, 2000])
def test_linear_quantiles_equal_scipy_quantile_bit_for_bit(n):
    """hwmodels.stats.linear_quantiles against scipy.stats.quantile (method 'linear'), the levels mean_cis uses
    and the ends 0 and 1, with ties, infinities and a row holding a NaN."""
    from scipy import stats

    from hwmodels.stats import linear_quantiles
    rng = np.random.default_rng(n)
    x = np.round(rng.normal(size=(6, n)), 1)  # ties
    x[1] *= 1e-9
    x[2, 0] = np.inf
    x[3, -1] = np.nan
    for p in (np.array([0.025, 0.975]), np.array([0.0, 0.5, 1.0]), np.array([0.05, 0.95], np.float64)):
        got, want = linear_quantiles(x, p), stats.quantile(x, p, axis=-1)
        assert got.shape == want.shape and np.array_equal(got, want, equal_nan=True)
    assert np.isnan(linear_quantiles(x, np.array([0.5]))[3]).all()


def test_resamples_whose_b_mean_is_zero_give_an_infinite_bound_paired_or_not():
    # numpy's quantile interpolates inf - inf to NaN and scipy's percentile gives NaN once a resample is 0 / 0: a
    # decidable claim came out UNDECIDED unpaired and PASS paired on the same numbers
    a = np.array([4.0, 5, 6, 5, 4, 6, 5, 5, 4, 6])
    b = np.array([0.0, 0, 0, 0, 0, 0, 0, 0, 1, 2])
    for paired in (True, False):
        ratio, low, high = ratio_ci(a, b, paired=paired)
        assert ratio == pytest.approx(50 / 3) and 2 < low < ratio and high == np.inf, paired
    # 0 / 0 resamples (a and b both 0 on the drawn inputs) are left out, not turned into NaN bounds
    a0, b0 = np.array([0.0, 0, 0, 0, 3, 3]), np.array([0.0, 0, 0, 0, 0, 1])
    ratio, low, high = ratio_ci(a0, b0, paired=True)
    assert ratio == 6.0 and np.isfinite(low) and low > 0 and high == np.inf


def test_quantile_of_ratios_with_inf_and_nan_by_hand():
    inf, nan = np.inf, np.nan
    assert quantile(np.array([1.0, 2, inf, inf]), 0.5) == inf  # between 2 and inf
    assert quantile(np.array([1.0, 2, inf, inf]), 0.25) == 1.75  # 1 + 0.75 x (2 - 1), as numpy
    assert quantile(np.array([-inf, 1.0, 2]), 0.25) == -inf and quantile(np.array([-inf, 1.0, 2]), 0.5) == 1.0
    assert quantile(np.array([nan, 1.0, 2, 3]), 0.5) == 2.0 and np.isnan(quantile(np.array([nan, nan]), 0.5))
    x = np.random.default_rng(0).standard_normal(101)
    assert quantile(x, 0.975) == np.quantile(x, 0.975)  # finite ratios: numpy's value exactly


def test_the_energy_interval_holds_the_reported_energy_of_identical_samples():
    """3 silent samples on generic-45nm: each sample's total is the same value; energy_j (the sum of the
    components' means) lay 1 ulp outside the zero-width interval of the totals."""
    from hwmodels import load_preset, simulate
    from hwmodels.trace import EventTrace, NetworkGraph, NeuronModel, Population, Projection
    g = NetworkGraph([Population("in", (4,), NeuronModel(kind="input")), Population("h", (3,))],
                     [Projection("p", "in", "h", "dense", np.ones((3, 4)))])
    tr = EventTrace.from_dense({"in": np.zeros((3, 2, 4)), "h": np.zeros((3, 2, 3))})
    for model in ("analytic", "des"):
        r = simulate(g, tr, load_preset("generic-45nm"), model=model)
        lo, hi = r.confidence_intervals()["energy_j"]
        assert lo <= r.energy_j <= hi and hi - lo <= 1e-12 * r.energy_j
        row = r.as_row()
        assert row["energy_j_ci_low"] <= row["energy_j"] <= row["energy_j_ci_high"]
