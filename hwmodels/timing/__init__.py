"""Latency: the core pipeline (per-core work times, core_times.py), the analytic model and the discrete-event network engines
(vector, simpy reference, density)."""
