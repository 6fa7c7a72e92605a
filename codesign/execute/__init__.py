"""Execution: one design point (evaluate: dense -> compressed -> lowered -> mapped -> simulated), a run over ratios,
grid sweeps, optuna searches, the per-layer allocator, serial or dask executors."""
