"""Compiled (numba) kernels of the hardware models' inner loops."""
