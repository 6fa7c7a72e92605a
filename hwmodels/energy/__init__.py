"""Energy: action counts x the chip's energy table, by component."""
