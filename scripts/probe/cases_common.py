"""Helpers to declare simple cases: files + one command + expectation."""
from __future__ import annotations

from typing import Callable, Iterable

from harness import Case, Ctx

Args = list[str] | Callable[[Ctx], list[str]]


def one(id: str, category: str, what: str, args: Args, expect=2, names: Iterable[str] = (),
        files: dict | None = None, setup: Callable[[Ctx], None] | None = None, cache: bool = False,
        show: Iterable[str] = (), allowed: Iterable[str] = (), check: Callable[[Ctx, object], None] | None = None,
        slow: bool | None = None, restricted: bool = False, stdin: str | None = None) -> Case:
    """A case that writes `files` (rel -> text/bytes/tree), runs `setup`, then one `codesign *args` expected to
    exit `expect` (an error naming one of `names`), then `check(ctx, cmd)`."""
    def body(ctx: Ctx) -> None:
        if cache:
            ctx.copy_cache()
        for rel, content in (files or {}).items():
            ctx.write(rel, content)
        if setup is not None:
            setup(ctx)
        ctx.allowed += list(allowed)
        if restricted:
            ctx.restrict()
        cmd = ctx.cli(*(args(ctx) if callable(args) else args), expect=expect, names=names, show=show, stdin=stdin)
        if check is not None:
            check(ctx, cmd)
    is_run = expect == 0 or (not isinstance(expect, int) and 0 in expect)
    return Case(id, category, what, body, slow=is_run if slow is None else slow)


def bad_run_config(id: str, category: str, what: str, content, names: Iterable[str] = ("c.yaml",),
                   expect=2, sets: Iterable[str] = (), **kw) -> Case:
    """`codesign run c.yaml` with c.yaml = content (a tree or raw text/bytes)."""
    return one(id, category, what, ["run", "c.yaml", *[x for s in sets for x in ("--set", s)]], expect=expect,
               names=names, files={"c.yaml": content}, cache=expect != 2, **kw)


def sets(*items: str) -> list[str]:
    return [x for s in items for x in ("--set", s)]


def slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "-" for ch in str(text).lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")[:40]


CHEAP_SETS_ARGS = sets(*__import__("harness").CHEAP_SETS)
_USED: set[str] = set()


def unique(id: str) -> str:
    """`id`, or `id-2`, `id-3` ... when it was handed out before."""
    n, out = 1, id
    while out in _USED:
        n += 1
        out = f"{id}-{n}"
    _USED.add(out)
    return out
