"""Probe harness: a Case runs in its own folder tree with per-command and per-case checks (see probe.py).

Folder tree of a case `<work>/<id>/`:
  case/     the working directory of every command (configs, `cache/`, `reports/`)
  outside/  a sentinel sibling: must not change (absolute paths in hostile inputs point here)
  home/ tmp/  HOME and TMPDIR of the commands (not checked)
  io/       stdout/stderr of each command
"""
from __future__ import annotations

import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import psutil
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
CODESIGN = str(VENV_BIN / "codesign")
PYTHON = str(VENV_BIN / "python")
TRACEBACK = "Traceback (most recent call last)"
MEM_LIMIT = 2 * 1024 ** 3
BAD_TIMEOUT = 120.0      # bad input must be refused within this
RUN_TIMEOUT = 480.0      # a cheap run/sweep/search on a busy 2-core machine
NOBODY = 65534
#: top-level entries of a case root (anything else appearing there is an escape)
ROOT_ENTRIES = {"case", "outside", "home", "tmp", "io"}

#: the cheap run config every case starts from (digits, 1 epoch, 2 ratios, 10 analytic samples)
CHEAP = {"run_name": "p", "cache_dir": "cache",
         "data": {"dataset": "digits"}, "train": {"epochs": 1},
         "compression": {"method": "sca", "ratios": [0.0, 0.5], "params": {"epochs": 1, "finetune_epochs": 0}},
         "hardware": {"n_samples": 10, "latency_model": "analytic"}}
#: CHEAP as --set items (for configs that cannot hold it: empty files, /dev/null ...)
CHEAP_SETS = ["run_name=p", "cache_dir=cache", "data.dataset=digits", "train.epochs=1",
              "compression.ratios=[0.0,0.5]", "compression.params={epochs: 1, finetune_epochs: 0}",
              "hardware.n_samples=10", "hardware.latency_model=analytic"]


def deep_merge(base: dict, over: dict) -> dict:
    """base updated by over, recursively for mappings (a None value removes the key)."""
    out = dict(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def nest(dotted: str, value) -> dict:
    """{'a': {'b': value}} for 'a.b'."""
    for part in reversed(dotted.split(".")):
        value = {part: value}
    return value


def dump(tree) -> str:
    return yaml.safe_dump(tree, sort_keys=False, width=10_000)


class SetupError(Exception):
    """The harness could not prepare a case (not a defect of the tool)."""


@dataclass
class Cmd:
    """Outcome of one command."""
    shown: str
    rc: int | None
    out: str
    err: str
    seconds: float
    peak_mb: float
    timed_out: bool = False
    killed: bool = False
    cpu: float = 0.0

    @property
    def text(self) -> str:
        return self.out + self.err

    def error_line(self) -> str:
        """The `error: ...` line, else the text of click's usage box, else the last stderr line."""
        lines = [ln for ln in self.err.splitlines() if ln.strip()]
        hits = [ln for ln in lines if ln.startswith("error:")] or _click_box(lines) or lines[-1:]
        return hits[0] if hits else ""


def _exception_line(text: str) -> str:
    """The 'SomeError: message' line of the last traceback in `text`."""
    tail = text[text.rfind(TRACEBACK):].splitlines()
    hits = [ln for ln in tail if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", ln)]
    return (hits or [ln for ln in tail if ln.strip()] or [""])[-1].strip()


def _click_box(lines: list[str]) -> list[str]:
    """The text lines inside click's '╭─ Error ─╮ ... ╰─╯' usage-error box (empty when there is none)."""
    inside, box = False, []
    for ln in lines:
        if ln.startswith("╭─ Error"):
            inside = True
        elif ln.startswith("╰"):
            inside = False
        elif inside:
            box.append(ln.strip("│ ").strip())
    return [b for b in box if b]


@dataclass
class Case:
    """A probe case: `body(ctx)` prepares files and runs commands through ctx (which checks them)."""
    id: str
    category: str
    what: str
    body: Callable[["Ctx"], None]
    slow: bool = False


@dataclass
class Outcome:
    id: str
    category: str
    what: str
    commands: list[dict] = field(default_factory=list)
    verdict: str = "ok"
    cpu: float = 0.0
    defects: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _snapshot(root: Path) -> dict[str, tuple]:
    """relative path -> (kind, mode, size, mtime_ns) of everything under root (symlinks not followed)."""
    snap = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(top) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            kind = "l" if p.is_symlink() else ("d" if p.is_dir() else "f")
            snap[str(p.relative_to(root))] = (kind, st.st_mode & 0o7777, st.st_size, st.st_mtime_ns)
    return snap


class Ctx:
    """What a case body uses: its folders, file helpers, shared fixtures, and `cli` (run + check a command)."""

    def __init__(self, case: Case, work: Path, shared):
        self.case, self.shared = case, shared
        self.root = work / case.id
        if self.root.exists():
            shutil.rmtree(self.root)
        self.dir, self.outside = self.root / "case", self.root / "outside"
        for d in ("case", "outside", "home", "tmp", "io"):
            (self.root / d).mkdir(parents=True)
        self.allowed: list[str] = ["reports", "cache"]
        self.defects: list[str] = []
        self.notes: list[str] = []
        self.cmds: list[Cmd] = []
        self.before: dict | None = None
        self.restricted = False
        self.marker = self.outside / "PWNED"

    # ---------------------------------------------------------------- files
    def path(self, rel: str) -> Path:
        return self.dir / rel

    def write(self, rel: str, content: str | bytes | dict | list) -> Path:
        p = self.dir / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, (dict, list)):
            content = dump(content)
        if isinstance(content, str):
            content = content.encode()
        p.write_bytes(content)
        return p

    def config(self, over: dict | None = None, rel: str = "c.yaml", base: dict | None = None) -> str:
        """Write `base` (default CHEAP) merged with `over` (dotted keys: {'train.epochs': 2}); returns rel."""
        tree = CHEAP if base is None else base
        for key, value in (over or {}).items():
            tree = deep_merge(tree, nest(key, value))
        self.write(rel, tree)
        return rel

    def copy_cache(self, rel: str = "cache") -> Path:
        dst = self.dir / rel
        shutil.copytree(self.shared.get("cache"), dst, symlinks=True)
        return dst

    def copy_ref(self, kind: str = "ref", name: str | None = None) -> Path:
        """Copy a shared reference folder (ref: run, refsweep, refsearch) to case/reports/<name>, with the cache and
        the configs it was made with."""
        src = self.shared.get(kind)
        dst = self.dir / "reports" / (name or kind)
        shutil.copytree(src, dst, symlinks=True)
        if not (self.dir / "cache").exists():
            self.copy_cache()
        for f in ("c.yaml", "sweep.yaml", "search.yaml"):
            if not (self.dir / f).exists():
                shutil.copyfile(self.shared.dir / f, self.dir / f)
        return dst

    def artifact(self, name: str, rel: str | None = None) -> Path:
        """A shared artifact (g0/t0: graph/trace at ratio 0, g5/t5 at 0.5, tracedir: a streamed trace folder)
        copied into the case folder as `rel` (default g0.npz ...); returns its path."""
        src = self.shared.get(name)
        dst = self.dir / (rel or (name + (".npz" if src.is_file() else "")))
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)
        return dst

    def payload_cmd(self) -> str:
        return f"touch {shlex.quote(str(self.marker))}"

    def restrict(self) -> None:
        """Run every command without root's powers over file permissions (setpriv drops CAP_DAC_OVERRIDE,
        CAP_DAC_READ_SEARCH and CAP_FOWNER), so read-only folders and other users' folders refuse writes."""
        self.restricted = True

    def give_away(self, path: Path) -> None:
        """chown `path` and everything below it to user nobody (another user's folder, modes 0755/0644)."""
        for top, dirs, files in os.walk(path):
            for name in [top] + [os.path.join(top, n) for n in dirs + files]:
                os.lchown(name, NOBODY, NOBODY)

    # ---------------------------------------------------------------- checks
    def defect(self, msg: str) -> None:
        self.defects.append(msg)

    def note(self, msg: str) -> None:
        self.notes.append(msg)

    def start(self) -> None:
        """Take the 'before' snapshot (called before the first command)."""
        if self.before is None:
            self.before = _snapshot(self.root)

    def _reports_entries(self) -> set[str]:
        out = set()
        for d in self.allowed:
            p = self.dir / d
            if p.is_dir() and d != "cache":
                out |= {f"{d}/{c.name}" for c in p.iterdir()}
        return out

    def _env(self) -> dict:
        return {"PATH": f"{VENV_BIN}:/usr/bin:/bin", "HOME": str(self.root / "home"),
                "TMPDIR": str(self.root / "tmp"), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "MPLCONFIGDIR": str(self.shared.mpl_dir()), "TERM": "dumb"}

    def spawn(self, args: list[str], stdin: str | None = None) -> "Running":
        self.start()
        argv = [CODESIGN, *map(str, args)]
        n = len(self.cmds) + len(getattr(self, "_running", []))
        out, err = self.root / "io" / f"{n}.out", self.root / "io" / f"{n}.err"
        fo, fe = open(out, "wb"), open(err, "wb")
        fi = subprocess.DEVNULL
        if stdin is not None:
            (self.root / "io" / f"{n}.in").write_text(stdin)
            fi = open(self.root / "io" / f"{n}.in", "rb")
        if self.restricted:
            argv = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--", *argv]
        proc = subprocess.Popen(argv, cwd=self.dir, env=self._env(), stdin=fi, stdout=fo, stderr=fe,
                                start_new_session=True, umask=0o022)
        fo.close(), fe.close()
        return Running(self, proc, "codesign " + " ".join(self.show_arg(a) for a in args), out, err)

    def show_arg(self, a) -> str:
        s = str(a).replace(str(self.dir) + "/", "").replace(str(self.root), "$ROOT")
        s = s if len(s) <= 120 else s[:60] + f"...<{len(s)} chars>"
        return shlex.quote(s)

    def cli(self, *args, expect: int | Iterable[int] = 0, names: Iterable[str] = (), timeout: float | None = None,
            show: Iterable[str] = (), leftovers: bool = True, stdin: str | None = None,
            kill_when: Callable[[], bool] | None = None) -> Cmd:
        """Run `codesign *args` and check it (see check_cmd); returns the outcome."""
        before = self._reports_entries()
        run = self.spawn(list(args), stdin=stdin)
        cmd = run.wait(timeout=timeout or (RUN_TIMEOUT if _expects(expect, 0) else BAD_TIMEOUT),
                       kill_when=kill_when)
        if kill_when is None or not cmd.killed:
            self.check_cmd(cmd, expect, names, show)
        new = self._reports_entries() - before
        if leftovers and cmd.rc == 2 and new:
            left = sorted(new)[0]
            state = " (with .incomplete)" if (self.dir / left / ".incomplete").exists() else ""
            self.defect(f"bad input (exit 2) left {left}{state} behind, which blocks a plain retry of that run_name")
        return cmd

    def check_cmd(self, cmd: Cmd, expect, names: Iterable[str] = (), show: Iterable[str] = ()) -> None:
        """Per-command defects: traceback, exit code, error message (one line, naming one of `names`), hang, memory,
        literal text (`show`: user values with Rich markup must print as typed)."""
        exp = {expect} if isinstance(expect, int) else set(expect)
        tag = f"`{cmd.shown[:80]}`"
        if cmd.timed_out:
            self.defect(f"{tag} hung: killed after {cmd.seconds:.0f} s")
            return
        if cmd.peak_mb > MEM_LIMIT / 2 ** 20:
            self.defect(f"{tag} used {cmd.peak_mb:.0f} MB (> 2 GB; killed)")
            return
        if TRACEBACK in cmd.text:
            self.defect(f"{tag} printed a traceback: {_exception_line(cmd.text)[:200]}")
        if cmd.rc not in exp:
            words = [ln for ln in cmd.out.splitlines() if re.search(r"[A-Za-z]{3}", ln)]
            last = (cmd.error_line() if cmd.rc else "") or (words or [""])[-1]
            self.defect(f"{tag} exit {cmd.rc}, expected {'/'.join(map(str, sorted(exp)))}: {last[:200]}")
        if cmd.rc == 2 and 2 in exp and TRACEBACK not in cmd.text:
            self._check_error(cmd, tag, list(names))
        for lit in show:
            if lit not in cmd.text:
                self.defect(f"{tag}: user value {lit!r} does not appear as typed in the output (Rich markup?)")

    def _check_error(self, cmd: Cmd, tag: str, names: list[str]) -> None:
        lines = [ln for ln in cmd.err.splitlines() if ln.strip()]
        idx = next((i for i, ln in enumerate(lines) if ln.startswith("error:")), None)
        if idx is not None:
            msg = lines[idx:]
        else:
            msg = _click_box(lines)
            if not msg:
                self.defect(f"{tag} exit 2 without an error message: {' / '.join(lines)[-200:]!r}")
                return
        if len(msg) > 1:
            self.defect(f"{tag} error message has {len(msg)} lines: {' / '.join(msg)[:200]!r}")
        if names and not any(n.lower() in " ".join(msg).lower() for n in names):
            self.defect(f"{tag} error does not name {' or '.join(map(repr, names))}: {msg[0][:200]!r}")

    def finish(self) -> None:
        """Per-case defects: files outside the allowed output dirs or the case folder, executed payloads, modes."""
        if self.before is None:
            return
        after = _snapshot(self.root)
        for rel, info in sorted(after.items()):
            top = rel.split("/")[0]
            if "PWNED" in rel:
                self.defect(f"code from a file was executed: {rel} was created")
                continue
            if top not in ROOT_ENTRIES:
                self.defect(f"created outside the case folder: {rel}")
            elif top == "outside" and self.before.get(rel) != info and rel != "outside":
                self.defect(f"created or changed outside the case folder: {rel}")
            elif top == "case" and rel != "case" and self.before.get(rel) != info:
                inner = rel[len("case/"):]
                if rel not in self.before and not any(inner == a or inner.startswith(a + "/") for a in self.allowed):
                    self.defect(f"created outside the allowed output dirs ({', '.join(self.allowed)}): {inner}")
                    continue
                if info[0] == "f" and not inner.startswith("cache") and info[1] & 0o777 != 0o644:
                    self.defect(f"{inner} has mode {oct(info[1] & 0o777)}, not 0o644 (umask 022)")
        for rel in sorted(set(self.before) - set(after)):
            if rel.startswith("outside/"):
                self.defect(f"removed outside the case folder: {rel}")

    # ---------------------------------------------------------------- run-folder checks
    def run_folder_ok(self, run: Path, n_points: int | None = None, tag: str = "") -> None:
        """A finished run folder: results.csv complete (n_points unique point ids), report.html/md whole, no
        `.incomplete`, no temp files."""
        tag = tag or str(run.relative_to(self.dir))
        ids = self.results_ids(run, tag)
        if ids is not None:
            if len(ids) != len(set(ids)):
                self.defect(f"{tag}: a point is stored twice in results.csv ({len(ids)} rows, {len(set(ids))} ids)")
            if n_points is not None and len(set(ids)) != n_points:
                self.defect(f"{tag}: results.csv has {len(set(ids))} points, expected {n_points}")
        self.report_whole(run, tag, required=True)
        if (run / ".incomplete").exists():
            self.defect(f"{tag}: .incomplete is still there after a finished run")
        tmps = [p for p in run.rglob("*") if p.name.endswith(".tmp") or ".tmp-" in p.name]
        if tmps:
            self.defect(f"{tag}: temp files left: {', '.join(str(p.relative_to(run)) for p in tmps[:3])}")

    def study_trials(self, run: Path, n: int, tag: str = "") -> None:
        """The search study in run/study.db has exactly `n` complete trials (a search may revisit a point, so
        results.csv can hold fewer rows than trials)."""
        import sqlite3
        tag = tag or str(run.relative_to(self.dir))
        try:
            con = sqlite3.connect(f"file:{run / 'study.db'}?mode=ro", uri=True)
            try:
                done = con.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
            finally:
                con.close()
        except sqlite3.Error as exc:
            self.defect(f"{tag}: study.db is unreadable: {exc}")
            return
        if done != n:
            self.defect(f"{tag}: study.db has {done} complete trials, expected {n}")

    def results_ids(self, run: Path, tag: str, required: bool = True) -> list[str] | None:
        """point ids of results.csv, after checking that it is a whole CSV (None when missing/unreadable)."""
        import csv
        path = run / "results.csv"
        if not path.exists():
            if required:
                self.defect(f"{tag}: results.csv is missing")
            return None
        text = path.read_text(errors="replace")
        rows = list(csv.reader(text.splitlines()))
        if not rows or "point_id" not in rows[0] or not text.endswith("\n"):
            self.defect(f"{tag}: results.csv is half-written or has no point_id column ({len(text)} bytes)")
            return None
        width = len(rows[0])
        if any(len(r) != width for r in rows[1:]):
            self.defect(f"{tag}: results.csv is half-written (rows of unequal width)")
            return None
        col = rows[0].index("point_id")
        return [r[col] for r in rows[1:]]

    def report_whole(self, run: Path, tag: str, required: bool = False) -> None:
        html, md = run / "report.html", run / "report.md"
        if html.exists():
            if not html.read_text(errors="replace").rstrip().endswith("</html>"):
                self.defect(f"{tag}: report.html is half-written ({html.stat().st_size} bytes, no </html>)")
        elif required:
            self.defect(f"{tag}: report.html is missing")
        if md.exists():
            text = md.read_text(errors="replace")
            if "## Results" not in text or not text.endswith("\n"):
                self.defect(f"{tag}: report.md is half-written ({len(text)} bytes)")

    def hold_lock(self, run: Path) -> "HeldLock":
        return HeldLock(run)


def _expects(expect, code: int) -> bool:
    return expect == code if isinstance(expect, int) else code in set(expect)


class Running:
    """A spawned command: wait for it (optionally killing it with SIGKILL when a condition holds)."""

    def __init__(self, ctx: Ctx, proc: subprocess.Popen, shown: str, out: Path, err: Path):
        self.ctx, self.proc, self.shown, self.out, self.err = ctx, proc, shown, out, err
        self.t0 = time.monotonic()
        ctx.__dict__.setdefault("_running", []).append(self)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _rss(self) -> int:
        try:
            p = psutil.Process(self.proc.pid)
            procs = [p, *p.children(recursive=True)]
        except psutil.Error:
            return 0
        total = 0
        for q in procs:
            try:
                total += q.memory_info().rss
            except psutil.Error:
                pass
        return total

    def _killpg(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _reap(self, block: bool) -> bool:
        """waitpid the child (os.wait4, to get its CPU time); True once it has exited."""
        if self.proc.returncode is not None:
            return True
        pid, status, usage = os.wait4(self.proc.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return False
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.cpu = usage.ru_utime + usage.ru_stime
        return True

    def wait(self, timeout: float = BAD_TIMEOUT, kill_when: Callable[[], bool] | None = None) -> Cmd:
        peak, timed_out, killed, last_mem, self.cpu = 0, False, False, 0.0, 0.0
        while not self._reap(block=False):
            now = time.monotonic()
            if now - last_mem > 0.25:
                peak, last_mem = max(peak, self._rss()), now
                if peak > MEM_LIMIT:
                    break
            if kill_when is not None:
                try:
                    fire = kill_when()
                except OSError:
                    fire = False
                if fire:
                    killed = True
                    break
            if now - self.t0 > timeout:
                timed_out = True
                break
            time.sleep(0.01 if kill_when is not None else 0.05)
        self._killpg()
        self._reap(block=True)
        rc = self.proc.returncode
        seconds = self.elapsed()
        self._killpg()  # stray children of the group (dask workers)
        over = peak > MEM_LIMIT
        cmd = Cmd(self.shown, None if (timed_out or killed or over) else rc, self.out.read_text(errors="replace"),
                  self.err.read_text(errors="replace"), seconds, peak / 2 ** 20, timed_out, killed, self.cpu)
        if kill_when is not None and not killed:
            self.ctx.note(f"`{self.shown[:60]}` finished (exit {rc}) before the kill point")
        self.ctx.cmds.append(cmd)
        self.ctx._running.remove(self)
        return cmd


class HeldLock:
    """Hold the run folder's flock like a live owner would (pid of this probe, this host)."""

    def __init__(self, run: Path):
        self.path = run / ".codesign.lock"

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started_utc": "2026-01-01T00:00:00Z"}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(info).encode(), 0)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)


def run_case(case: Case, work: Path, shared) -> Outcome:
    """Run one case and collect its verdict."""
    t0 = time.monotonic()
    out = Outcome(case.id, case.category, case.what)
    ctx = None
    try:
        ctx = Ctx(case, work, shared)
        case.body(ctx)
        ctx.finish()
    except SetupError as exc:
        out.verdict = "error"
        out.notes.append(f"setup failed: {exc}")
    except Exception as exc:  # a bug in the case itself
        out.verdict = "error"
        out.notes.append(f"harness error: {type(exc).__name__}: {exc}")
    finally:
        for r in list(getattr(ctx, "_running", []) if ctx else []):
            r._killpg()
    if ctx is not None:
        out.defects, out.notes = ctx.defects, out.notes + ctx.notes
        out.cpu = round(sum(c.cpu for c in ctx.cmds), 1)
        out.commands = [{"command": c.shown, "exit": c.rc, "seconds": round(c.seconds, 1), "cpu": round(c.cpu, 1),
                         "peak_mb": round(c.peak_mb), "killed": c.killed, "timed_out": c.timed_out,
                         "stdout_tail": c.out[-600:], "stderr_tail": c.err[-600:]} for c in ctx.cmds]
        if ctx.defects:
            out.verdict = "DEFECT"
    out.seconds = time.monotonic() - t0
    return out
