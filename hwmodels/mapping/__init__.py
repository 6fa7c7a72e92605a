"""Mapping a NetworkGraph onto cores: connectivity (fan-in/fan-out), storage formats and memory per core, partition
into cores, placement on the mesh, the Mapping and its checks."""
