"""Shared fixtures, built once on first use: a warm stage cache, a reference run / sweep / search folder, lowered
graphs and traces; plus builders of hostile files (pickle payloads, crafted .npz)."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import threading
import zipfile
from pathlib import Path

import numpy as np

from harness import CHEAP, CODESIGN, PYTHON, RUN_TIMEOUT, VENV_BIN, SetupError, dump

SWEEP = {"base": "c.yaml", "run_name": "refsweep", "cache_dir": "cache", "execution": {"workers": 0},
         "axes": {"hardware.overrides.core.neurons_per_core": [512, 1024]}}
SEARCH = {"base": "c.yaml", "run_name": "refsearch", "cache_dir": "cache", "execution": {"workers": 0},
          "search": {"n_trials": 2, "sampler": "tpe", "seed": 0,
                     "space": {"compression.ratio": [0.0, 0.5],
                               "hardware.overrides.core.neurons_per_core": [512, 1024]}}}
#: points of the reference folders (ratios x axis values; search: n_trials)
POINTS = {"ref": 2, "refsweep": 4, "refsearch": 2}


class Shared:
    """Fixtures under `<work>/_shared`, each built once (thread-safe) by `get(name)`."""

    def __init__(self, work: Path):
        self.dir = work / "_shared"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "mpl").mkdir(exist_ok=True)
        os.chmod(self.dir / "mpl", 0o777)
        for name, tree in (("c.yaml", CHEAP), ("sweep.yaml", SWEEP), ("search.yaml", SEARCH)):
            (self.dir / name).write_text(dump(tree))
        self._locks = {n: threading.Lock() for n in ("ref", "refsweep", "refsearch", "tracedir")}
        self._done: dict[str, Path] = {}
        self.log: list[str] = []

    def mpl_dir(self) -> Path:
        return self.dir / "mpl"

    def get(self, name: str) -> Path:
        if name == "cache":
            self.get("ref")
            return self.dir / "cache"
        if name in ("g0", "t0", "g5", "t5"):
            art = self.get("ref") / "artifacts"
            return art / f"sca-r{'0' if name[1] == '0' else '0.5'}.{'graph' if name[0] == 'g' else 'trace'}.npz"
        with self._locks[name]:
            if name not in self._done:
                try:
                    self._done[name] = getattr(self, f"_build_{name}")()
                except SetupError as exc:
                    self._done[name] = exc
            if isinstance(self._done[name], SetupError):
                raise self._done[name]
            return self._done[name]

    def _codesign(self, *args: str) -> None:
        env = {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(self.dir), "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(self.mpl_dir())}
        try:
            res = subprocess.run([CODESIGN, *args], cwd=self.dir, env=env, capture_output=True, text=True,
                                 timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise SetupError(f"`codesign {' '.join(args)}` (fixture) timed out") from None
        self.log.append(f"codesign {' '.join(args)}: exit {res.returncode}")
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["?"])[-1]
            raise SetupError(f"`codesign {' '.join(args)}` (fixture) exit {res.returncode}: {tail[:200]}")

    def _reference(self, name: str, *args: str) -> Path:
        """reports/<name> made by `codesign *args` (reused when a finished one is there from an earlier probe)."""
        out = self.dir / "reports" / name
        if (out / "report.html").exists() and not (out / ".incomplete").exists():
            self.log.append(f"reused {out}")
            return out
        shutil.rmtree(out, ignore_errors=True)
        self._codesign(*args)
        return out

    def _build_ref(self) -> Path:
        return self._reference("ref", "run", "c.yaml", "--set", "run_name=ref", "--no-progress")

    def _build_refsweep(self) -> Path:
        self.get("ref")
        return self._reference("refsweep", "sweep", "sweep.yaml")

    def _build_refsearch(self) -> Path:
        self.get("ref")
        return self._reference("refsearch", "search", "search.yaml")

    def _build_tracedir(self) -> Path:
        """The r0 trace written as a streamed trace folder (hwmodels.stream.write_trace)."""
        src, dst = self.get("t0"), self.dir / "tracedir"
        shutil.rmtree(dst, ignore_errors=True)
        code = ("import sys, hwmodels; from hwmodels.stream import write_trace; "
                "write_trace(sys.argv[2], hwmodels.EventTrace.load(sys.argv[1]), batch_samples=4)")
        res = subprocess.run([PYTHON, "-c", code, str(src), str(dst)], capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise SetupError(f"write_trace failed: {(res.stderr.strip().splitlines() or ['?'])[-1][:200]}")
        return dst


# ------------------------------------------------------------------------------------------------ hostile files

class Payload:
    """Unpickling this runs `cmd` in a shell (os.system): a planted payload must never fire."""

    def __init__(self, cmd: str):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """(arrays without meta, meta as a dict) of a saved graph/trace .npz."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes().decode()) if "meta" in arrays else {}
    return arrays, meta


def write_npz(path: Path, arrays: dict, meta) -> Path:
    """Save arrays plus `meta` (any JSON value, or raw bytes) as the uint8 'meta' member (object arrays pickled)."""
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    np.savez(path, **arrays, meta=np.frombuffer(raw, dtype=np.uint8))
    return path


def edit_npz(src: Path, dst: Path, change) -> Path:
    """Copy a .npz with change(arrays, meta) applied in place (it may return a replacement meta)."""
    arrays, meta = read_npz(src)
    new = change(arrays, meta)
    return write_npz(dst, arrays, meta if new is None else new)


def object_array(cmd: str) -> np.ndarray:
    arr = np.empty(1, dtype=object)
    arr[0] = Payload(cmd)
    return arr


def zip_bomb_npz(src: Path, dst: Path, member: str, gib: float = 2.5) -> Path:
    """`src` with `member` replaced by a float32 array of `gib` GiB of zeros (deflated to a few MB)."""
    arrays, meta = read_npz(src)
    n = int(gib * 2 ** 30 // 4)
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(f"{member}.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (n,)})
            chunk = bytes(64 * 2 ** 20)
            left = n * 4
            while left > 0:
                fh.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
        for k, v in {**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}.items():
            if k != member:
                buf = io.BytesIO()
                np.lib.format.write_array(buf, v)
                zf.writestr(f"{k}.npy", buf.getvalue())
    return dst


def torch_payload(path: Path, cmd: str) -> None:
    """A model.pt whose unpickling runs `cmd` (torch.save of a Payload)."""
    import torch
    torch.save({"format": "snn-codesign-checkpoint", "version": 2, "model": Payload(cmd)}, path)


def fix_meta_hashes(entry: Path) -> None:
    """Rewrite the entry's meta.json file hashes to match its files (what an attacker with cache access does)."""
    import hashlib
    meta_path = entry / "meta.json"
    meta = json.loads(meta_path.read_text())
    files = {}
    for p in sorted(entry.rglob("*")):
        if p.is_file() and p.name != "meta.json":
            files[p.relative_to(entry).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    meta["files"] = files
    meta_path.write_text(json.dumps(meta, indent=1, sort_keys=True))


def entries(cache: Path, stage: str) -> list[Path]:
    """Complete entries of one stage of a cache folder."""
    folder = cache / stage
    return sorted(p for p in folder.iterdir() if (p / "meta.json").is_file()) if folder.is_dir() else []


def remove_last_point(run: Path) -> None:
    """Make a finished run folder look killed after its first point: drop the last results.jsonl line and the
    report, mark it .incomplete."""
    log = run / "results.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]))
    for f in ("report.html", "report.md"):
        (run / f).unlink(missing_ok=True)
    (run / ".incomplete").touch()


def rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
