"""Provenance of a run: seed, package versions, git revision, machine and time, written beside the results."""
from __future__ import annotations

import functools
import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

#: the sources a result row depends on (lowering, chip model, simulator, presets, evaluation and configs): their
#: digest is the run's code version, which --resume compares (a row of other code never joins a run's rows)
RESULT_SOURCES = (("workloads", "**/*.py"), ("hwmodels", "**/*.py"), ("hwmodels", "**/*.yaml"),
                  ("codesign", "execute/*.py"), ("codesign", "config/*.py"))
PACKAGES = ("snn-codesign", "torch", "spikingjelly", "numpy", "scipy", "simpy", "pandas", "pydantic", "optuna",
            "dask", "distributed", "nir", "brian2")


def git_revision(start: Path | None = None) -> str:
    """`git rev-parse HEAD` of the project checkout (plus "-dirty" with local changes), or "unknown"."""
    here = Path(start or Path(__file__).parent)
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """Installed versions of the packages results depend on ("absent" when not installed)."""
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


@functools.cache
def results_code_version() -> str:
    """'<package version>+<12 hex chars>' of the sources in RESULT_SOURCES (codesign.store.cache.source_digest):
    changes with any edit or upgrade of the code that makes a result row, and with nothing else (reports, CLI,
    plots). Computed once per process."""
    from codesign.store.cache import package_version, source_digest, source_files
    return f"{package_version()}+{source_digest(source_files(RESULT_SOURCES))[:12]}"


def provenance(seed: int | None) -> dict:
    """Everything needed to say where a result came from (code_version: results_code_version())."""
    return {"seed": seed, "code_version": results_code_version(), "git_revision": git_revision(),
            "packages": package_versions(),
            "python": platform.python_version(), "machine": f"{platform.system()} {platform.machine()}",
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_provenance(run_dir: Path, seed: int | None) -> dict:
    """Write run_dir/provenance.json atomically (kept from the first write when it exists, e.g. on --resume).
    Raises ValueError (one line naming the file) when an existing one is not a JSON object."""
    from codesign.store.results import atomic_write
    path = Path(run_dir) / "provenance.json"
    if path.exists():
        return read_provenance(path)
    info = provenance(seed)
    text = json.dumps(info, indent=1)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return info


def read_provenance(path: Path) -> dict:
    """The JSON object of a provenance.json. Raises ValueError naming the file when it is not one."""
    try:
        info = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        info = exc
    if not isinstance(info, dict):
        raise ValueError(f"provenance.json: '{str(path)[-120:]}' is not a JSON object written by codesign; restore "
                         "it, or remove it to record this run's provenance anew")
    return info
