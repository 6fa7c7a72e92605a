"""Stage cache poisoning and damage: planted model.pt / .npz payloads (hashes fixed as an attacker would), truncated
and incomplete entries, symlinks, temp leftovers, read-only caches; `codesign cache list/clear`."""
from __future__ import annotations

import os
import pickle
import re
import shutil
import socket

from cases_common import one
from fixtures import Payload, edit_npz, entries, fix_meta_hashes, object_array, torch_payload
from harness import CHEAP, Case, Ctx

CASES = []
RUN = ["run", "c.yaml"]


def _poison(id: str, what: str, stage: str, edit, expect=0, restricted=False, category="cache", check_gone=True):
    """Run with a copy of the warm cache whose `stage` entries were edited by edit(ctx, entry). Dense entries are
    only read to make a compressed one, so those are dropped when the dense stage is poisoned."""
    def body(ctx: Ctx) -> None:
        cache = ctx.copy_cache()
        ctx.config()
        if stage == "dense":
            shutil.rmtree(cache / "compressed", ignore_errors=True)
        targets = entries(cache, stage)
        if not targets:
            ctx.note(f"no {stage} entry in the warm cache to poison")
        sums = {}
        for entry in targets:
            edit(ctx, entry)
            sums[entry] = _digest(entry)
        if restricted:
            ctx.restrict()
            ctx.give_away(cache)
        cmd = ctx.cli(*RUN, expect=expect, names=["cache"])
        if cmd.rc == 0:
            ctx.run_folder_ok(ctx.path("reports/p"), 2)
            if check_gone and any(_digest(e) == s for e, s in sums.items()):
                ctx.note("a poisoned entry is unchanged after the run: it was not used (another code version?) "
                         "or it was accepted")
    CASES.append(Case(id, category, what, body, slow=True))


def _digest(entry) -> str:
    if not os.path.lexists(entry):
        return "gone"
    if not entry.is_dir():
        return "file"
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in sorted(entry.rglob("*"))
                    if p.is_file() and not p.is_symlink())


def _torch(ctx, entry):
    torch_payload(entry / "model.pt", ctx.payload_cmd())
    fix_meta_hashes(entry)


def _raw_pickle(ctx, entry):
    (entry / "model.pt").write_bytes(pickle.dumps(Payload(ctx.payload_cmd()), protocol=2))
    fix_meta_hashes(entry)


def _npz_object(member: str, key: str):
    """Replace array `key` of the entry's `member` .npz by a pickled object array (hashes fixed)."""
    def edit(ctx, entry):
        path = entry / member
        edit_npz(path, path, lambda a, m: a.__setitem__(key, object_array(ctx.payload_cmd())))
        fix_meta_hashes(entry)
    return edit


def _truncate(name: str, fix: bool):
    def edit(ctx, entry):
        data = (entry / name).read_bytes()
        (entry / name).write_bytes(data[: len(data) // 2])
        if fix:
            fix_meta_hashes(entry)
    return edit


def _meta(content: str | None):
    def edit(ctx, entry):
        if content is None:
            (entry / "meta.json").unlink()
        else:
            (entry / "meta.json").write_text(content)
    return edit


def _extra_file(ctx, entry):
    (entry / "evil.txt").write_text("planted\n")


def _symlink(ctx, entry):
    (entry / "model.pt").unlink()
    os.symlink("/etc/passwd", entry / "model.pt")
    fix_meta_hashes(entry)


def _entry_file(ctx, entry):
    shutil.rmtree(entry)
    entry.write_text("not an entry\n")


_poison("cache-dense-torch-payload", "cached dense model.pt is a torch.save of an os.system payload (hashes fixed)",
        "dense", _torch, category="payload")
_poison("cache-compressed-torch-payload", "cached compressed model.pt is a torch.save payload (hashes fixed)",
        "compressed", _torch, category="payload")
_poison("cache-dense-raw-pickle", "cached dense model.pt is a plain pickle payload (hashes fixed)", "dense",
        _raw_pickle, category="payload")
_poison("cache-lowered-graph-object", "cached graph.npz w0 is a pickled object array (hashes fixed)", "lowered",
        _npz_object("graph.npz", "w0"), expect=(0, 2), category="payload")
_poison("cache-lowered-trace-object", "cached trace.npz offsets is a pickled object array (hashes fixed)", "lowered",
        _npz_object("trace.npz", "offsets"), expect=(0, 2), category="payload")
_poison("cache-dense-truncated", "cached dense model.pt truncated", "dense", _truncate("model.pt", False))
_poison("cache-dense-truncated-hash-fixed", "cached dense model.pt truncated, hashes fixed", "dense",
        _truncate("model.pt", True))
_poison("cache-lowered-truncated-hash-fixed", "cached trace.npz truncated, hashes fixed", "lowered",
        _truncate("trace.npz", True))
_poison("cache-meta-garbage", "meta.json of every dense entry is not JSON", "dense", _meta("{garbage"))
_poison("cache-meta-list", "meta.json of every compressed entry is a JSON list", "compressed", _meta("[1]"))
_poison("cache-meta-missing", "meta.json of every dense entry deleted (incomplete entries)", "dense", _meta(None))
_poison("cache-extra-file", "a planted extra file in every lowered entry", "lowered", _extra_file)
_poison("cache-symlink-model", "cached model.pt is a symlink to /etc/passwd (hashes fixed)", "dense", _symlink)
_poison("cache-entry-is-file", "a dense entry replaced by a regular file", "dense", _entry_file)
_poison("cache-read-only-valid", "cache of another user (read-only to us) with valid entries", "lowered",
        lambda ctx, e: None, expect=(0, 2), restricted=True, check_gone=False)
_poison("cache-read-only-truncated", "cache of another user with a truncated compressed model.pt", "compressed",
        _truncate("model.pt", False), expect=(0, 2), restricted=True, check_gone=False)


def _stage_file(ctx: Ctx) -> None:
    cache = ctx.copy_cache()
    shutil.rmtree(cache / "dense")
    (cache / "dense").write_text("x\n")


def _tmp_leftovers(ctx: Ctx) -> None:
    cache = ctx.copy_cache()
    ctx.config()
    host = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())
    dead = cache / "dense" / f".0123456789abcdef.tmp-{host}-999999-abcd"
    live = cache / "dense" / f".0123456789abcdef.tmp-{host}-{os.getpid()}-efgh"
    for d in (dead, live):
        d.mkdir()
        (d / "model.pt").write_bytes(b"half")
    ctx.cli(*RUN, expect=0)
    if dead.exists():
        ctx.defect("a temp folder of a dead process was left in the cache")
    if not live.exists():
        ctx.defect("a temp folder of a live process was removed from the cache")


def _cold(ctx: Ctx) -> None:
    ctx.config()
    ctx.cli(*RUN, expect=0)
    ctx.run_folder_ok(ctx.path("reports/p"), 2)


def _loop(ctx: Ctx) -> None:
    os.symlink("cache", ctx.path("cache"))


CASES += [one("cache-stage-is-file", "cache", "cache/dense is a regular file", RUN, expect=(0, 2),
              names=["cache", "dense"], files={"c.yaml": CHEAP}, setup=_stage_file),
          Case("cache-tmp-leftovers", "cache", "temp folders of a dead and of a live process in the cache",
               _tmp_leftovers, slow=True),
          Case("cache-cold", "cache", "a run with an empty cache (trains everything)", _cold, slow=True),
          one("cache-dir-symlink-loop", "cache", "cache_dir is a symlink to itself", RUN, names=["cache"],
              files={"c.yaml": CHEAP}, setup=_loop)]


def _read_only_empty(ctx: Ctx) -> None:
    ctx.config()
    ctx.path("cache").mkdir()
    ctx.restrict()
    ctx.give_away(ctx.path("cache"))
    ctx.cli(*RUN, expect=(0, 2), names=["cache"])


CASES.append(Case("cache-read-only-empty", "cache", "empty cache folder another user owns",
                  _read_only_empty, slow=True))


# --- codesign cache list / clear -------------------------------------------------------------------------------------------
def _cache_cli(id: str, what: str, args, expect=0, names=(), stdin=None, setup=None, show=(), check=None):
    def _setup(ctx: Ctx) -> None:
        ctx.copy_cache()
        if setup is not None:
            setup(ctx)
    CASES.append(one(id, "cache", what, args, expect=expect, names=names, stdin=stdin, setup=_setup, show=show,
                     check=check, slow=False))


def _markup_meta(ctx: Ctx) -> None:
    import json
    for entry in entries(ctx.path("cache"), "dense"):
        meta = json.loads((entry / "meta.json").read_text())
        meta["meta"] = {"stage": "dense", "seed": "[red]x[/red] [/y]"}
        (entry / "meta.json").write_text(json.dumps(meta))


def _cleared(ctx: Ctx, cmd) -> None:
    if cmd.rc == 0 and any(entries(ctx.path("cache"), s) for s in ("dense", "compressed", "lowered")):
        ctx.defect("cache clear --yes exited 0 but entries are left")


_cache_cli("cache-list", "cache list of the warm cache", ["cache", "list", "--cache-dir", "cache"])
_cache_cli("cache-list-unknown-stage", "cache list --stage nope", ["cache", "list", "--cache-dir", "cache",
                                                                    "--stage", "nope"], 2, ["--stage", "nope"])
_cache_cli("cache-list-dir-is-file", "cache list --cache-dir of a regular file",
           ["cache", "list", "--cache-dir", "c.yaml"], 2, ["--cache-dir", "c.yaml"],
           setup=lambda ctx: ctx.config())
_cache_cli("cache-list-missing-dir", "cache list of a folder that does not exist",
           ["cache", "list", "--cache-dir", "nope"], (0, 2), ["nope"])
_cache_cli("cache-list-markup-meta", "cache list when meta.json holds Rich markup",
           ["cache", "list", "--cache-dir", "cache"], 0, setup=_markup_meta, show=["[red]x[/red] [/y]"])
_cache_cli("cache-list-garbage-meta", "cache list when a meta.json is garbage",
           ["cache", "list", "--cache-dir", "cache"], 0,
           setup=lambda ctx: [(e / "meta.json").write_bytes(os.urandom(64)) for e in entries(ctx.path("cache"),
                                                                                              "lowered")])
_cache_cli("cache-clear-yes", "cache clear --yes removes every entry", ["cache", "clear", "--cache-dir", "cache",
                                                                        "--yes"], check=_cleared)
_cache_cli("cache-clear-declined", "cache clear answered 'n' exits 1 and removes nothing",
           ["cache", "clear", "--cache-dir", "cache"], 1, stdin="n\n")
_cache_cli("cache-clear-unknown-stage", "cache clear --stage nope --yes",
           ["cache", "clear", "--cache-dir", "cache", "--stage", "nope", "--yes"], 2, ["--stage", "nope"])
