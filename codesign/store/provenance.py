"""Provenance of a run: seed, package versions, git revision, machine and time, written beside the results."""
from __future__ import annotations

import json
import platform
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

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


def provenance(seed: int | None) -> dict:
    """Everything needed to say where a result came from."""
    return {"seed": seed, "git_revision": git_revision(), "packages": package_versions(),
            "python": platform.python_version(), "machine": f"{platform.system()} {platform.machine()}",
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_provenance(run_dir: Path, seed: int | None) -> dict:
    """Write run_dir/provenance.json atomically (kept from the first write when it exists, e.g. on --resume)."""
    path = Path(run_dir) / "provenance.json"
    if path.exists():
        return json.loads(path.read_text())
    from codesign.store.results import atomic_write
    info = provenance(seed)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(info, indent=1)))
    return info
