"""The vectorised per-channel grid search (workloads.lowering.grid.row_intervals) equals the one-channel search
(grid_intervals) value for value, on float32 and float64 weights: float channels, quantized channels (BatchNorm-like
per-channel scale, after folding in float32), channels with few distinct values, constant channels, mixtures."""
import numpy as np
import pytest

from workloads.lowering.grid import grid_intervals, row_intervals


def _rows(kind: str, n_rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """float64 (n_rows, n) channels of one kind."""
    if kind == "float":
        return rng.normal(size=(n_rows, n))
    if kind == "constant":
        return np.repeat(rng.normal(size=(n_rows, 1)), n, axis=1)
    bits = {"q2": 2, "q4": 4, "q8": 8}[kind]
    levels = 2 ** (bits - 1) - 1
    k = rng.integers(-levels, levels + 1, size=(n_rows, n))
    scale = rng.uniform(0.01, 3.0, size=(n_rows, 1)) / levels
    return (k * scale).astype(np.float32).astype(np.float64) * rng.uniform(0.5, 2.0, size=(n_rows, 1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 9, 64, 384, 700, 1536])
@pytest.mark.parametrize("limit", [3, 255, 5000])
def test_row_intervals_equal_grid_intervals_row_by_row(dtype, n, limit):
    rng = np.random.default_rng(n * 7 + limit)
    kinds = ["float", "constant", "q2", "q4", "q8"]
    rows = np.concatenate([_rows(kind, 6, n, rng) for kind in kinds] + [_rows("q8", 3, n, rng)[:, ::-1]])
    rows = rows[rng.permutation(len(rows))].astype(dtype)
    assert row_intervals(rows, limit) == [grid_intervals(r, limit) for r in rows]
