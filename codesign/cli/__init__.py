"""The `codesign` command line (typer + rich): main.py holds the app and run/sweep/search/allocate/validate/report;
one module per further command group (simulate, presets, cache) and the console helpers."""
from codesign.cli.main import app, main

__all__ = ["app", "main"]
