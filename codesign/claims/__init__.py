"""Hardware-friendliness claims as data (the YAML files here) and their verdicts on a run's results."""
