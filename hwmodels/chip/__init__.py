"""The chip: ChipSpec and its parts, presets and chip files (YAML, SANA-FE architectures), derived chips, and the
signatures of the fields each later stage depends on."""
