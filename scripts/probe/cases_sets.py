"""`--set` overrides: no '=', bad YAML, lists where mappings are expected, nesting into scalars, NaN, payloads."""
from __future__ import annotations

from cases_common import one, sets, slug, unique
from harness import CHEAP, Ctx

CASES = []


def run_set(what: str, items: list[str], names, expect=2, show=(), id: str | None = None):
    CASES.append(one(unique(id or f"set-{slug(items[-1])}"), "set", what, ["run", "c.yaml", *sets(*items)],
                     expect=expect, names=names, files={"c.yaml": CHEAP}, cache=expect != 2, show=show))


run_set("--set without '='", ["train.epochs"], ["--set", "train.epochs"])
run_set("--set with an empty key", ["=5"], ["--set"], id="set-empty-key")
run_set("--set with a blank key", [" =5"], ["--set"], id="set-blank-key")
run_set("--set with only '='", ["="], ["--set"], id="set-only-equals")
run_set("--set value is bad YAML (unclosed list)", ["train.epochs=[1,"], ["--set", "train.epochs"])
run_set("--set value is bad YAML (unclosed mapping)", ["train={epochs: 1"], ["--set", "train"])
run_set("--set value is bad YAML (tab)", ["train.epochs=\t- 1\n\t- 2"], ["--set", "train.epochs"],
        id="set-yaml-tab")
run_set("list where a mapping (section) is expected", ["data=[1, 2]"], ["data"])
run_set("scalar where a section is expected", ["hardware=5"], ["hardware"])
run_set("nested into a scalar from the file", ["train.epochs.x=1"], ["train.epochs", "epochs"])
run_set("nested into a scalar set by an earlier --set", ["train=5", "train.epochs=1"], ["train"],
        id="set-nested-after-scalar")
run_set("nested into a list", ["compression.ratios.x=1"], ["compression.ratios", "ratios"])
run_set("hardware.overrides given a list", ["hardware.overrides=[1]"], ["hardware.overrides"])
run_set("compression.params given a list", ["compression.params=[1]"], ["compression.params"])
run_set("compression.ratios given a scalar", ["compression.ratios=0.5"], ["compression.ratios"])
run_set("compression.ratios empty", ["compression.ratios=[]"], ["compression.ratios"], id="set-ratios-empty")
run_set("ratio 1.0", ["compression.ratios=[1.0]"], ["compression.ratios"], id="set-ratio-1")
run_set("NaN learning rate", ["train.lr=.nan"], ["train.lr"])
run_set("NaN written as 'nan' (a string to YAML)", ["train.lr=nan"], ["train.lr"], id="set-lr-nan-word")
run_set("inf tau", ["model.tau=.inf"], ["model.tau"])
run_set("float overflow in seed", ["seed=1.0e+400"], ["seed"])
run_set("unknown key", ["train.foo=1"], ["train.foo", "foo"])
run_set("unknown deep key", ["a.b.c.d.e.f=1"], ["a"])
run_set("empty value (null) for a string field", ["data.dataset="], ["data.dataset"], id="set-dataset-null")
run_set("chip override 0 neurons per core", ["hardware.overrides.core.neurons_per_core=0"],
        ["core.neurons_per_core"], id="set-override-npc-0")
run_set("chip override NaN", ["hardware.overrides.core.neurons_per_core=.nan"], ["core.neurons_per_core"],
        id="set-override-npc-nan")
run_set("chip override text", ["hardware.overrides.core.neurons_per_core=abc"], ["core.neurons_per_core"],
        id="set-override-npc-text")
run_set("chip override of an unknown key", ["hardware.overrides.bogus.key=1"], ["bogus"],
        id="set-override-unknown")
run_set("chip override replacing a section with a number", ["hardware.overrides={core: 5}"], ["core"],
        id="set-override-section-scalar")
run_set("100,000-character run_name", ["run_name=" + "r" * 100_000], ["run_name"], id="set-run-name-100k")
run_set("run_name with Rich markup and '/'", ["run_name='[red]x[/red]'"], ["run_name"], show=["[red]x[/red]"],
        id="set-run-name-markup")
run_set("dataset with a closing Rich tag", ["data.dataset='[/x]'"], ["data.dataset"], show=["[/x]"],
        id="set-dataset-closing-tag")
run_set("alias bomb in a --set value", ["train.epochs=" + "{a: &a [1,1,1,1,1,1,1,1,1,1], " + ", ".join(
    f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]" for p, c in zip("abcdef", "bcdefg")) + "}"],
    ["--set", "train.epochs"], id="set-alias-bomb")


def _payload(ctx: Ctx) -> list[str]:
    return ["run", "c.yaml", "--set", f"data.dataset=!!python/object/apply:os.system [{ctx.payload_cmd()!r}]"]


CASES.append(one("set-payload-tag", "payload", "--set value with a !!python/object/apply tag", _payload,
                 names=["--set", "data.dataset"], files={"c.yaml": CHEAP}))
CASES.append(one("set-sweep-axes-list", "set", "sweep --set axes=[1]", ["sweep", "s.yaml", *sets("axes=[1]")],
                 names=["axes"], files={"c.yaml": CHEAP, "s.yaml": {"base": "c.yaml", "cache_dir": "cache"}}))
CASES.append(one("set-sweep-no-equals", "set", "sweep --set without '='", ["sweep", "s.yaml", *sets("axes")],
                 names=["--set", "axes"], files={"c.yaml": CHEAP, "s.yaml": {"base": "c.yaml"}}))
CASES.append(one("set-search-ntrials-text", "set", "search --set search.n_trials=many",
                 ["search", "q.yaml", *sets("search.n_trials=many")], names=["search.n_trials"],
                 files={"c.yaml": CHEAP, "q.yaml": {"base": "c.yaml"}}))
CASES.append(one("set-search-space-scalar", "set", "search --set search.space=5",
                 ["search", "q.yaml", *sets("search.space=5")], names=["search.space"],
                 files={"c.yaml": CHEAP, "q.yaml": {"base": "c.yaml"}}))
