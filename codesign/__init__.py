"""Co-design loop: pipeline from config to results, sweeps, reports and the `codesign` CLI."""
