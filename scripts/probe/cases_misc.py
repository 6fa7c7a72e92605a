"""The rest of the command line: --version, presets, click usage errors, allocate options, Rich markup in run
names, output folders and labels."""
from __future__ import annotations

import re

from cases_common import one, sets
from harness import CHEAP, Case, Ctx, deep_merge

CASES = []
PRESETS = ("generic-45nm", "lemaire-45nm", "loihi", "loihi-sanafe", "speck", "spinnaker2", "truenorth")


def _version(ctx: Ctx, cmd) -> None:
    if cmd.rc == 0 and not re.fullmatch(r"codesign \(snn-codesign\) \S+\s*", cmd.out):
        ctx.defect(f"--version printed {cmd.out.strip()[:80]!r}")


CASES += [one("cli-version", "cli", "codesign --version", ["--version"], expect=0, check=_version, slow=False),
          one("cli-unknown-command", "cli", "a mistyped command", ["rnu"], names=["rnu"]),
          one("cli-unknown-option", "cli", "run --bogus", ["run", "--bogus"], names=["--bogus"]),
          one("cli-missing-argument", "cli", "simulate without files", ["simulate"], names=["graph", "GRAPH"]),
          one("cli-presets-list", "presets", "presets list", ["presets", "list"], expect=0, slow=False),
          one("cli-help-run", "cli", "run --help", ["run", "--help"], expect=0, slow=False)]
for name in PRESETS:
    CASES.append(one(f"presets-show-{name}", "presets", f"presets show {name}", ["presets", "show", name], expect=0,
                     slow=False))
for key, name in (("unknown", "nope"), ("empty", ""), ("traversal", "../../etc/passwd"), ("markup", "[red]x[/red]"),
                  ("closing-tag", "[/x]"), ("upper-case", "LOIHI"), ("yaml-suffix", "loihi.yaml"),
                  ("300-chars", "p" * 300), ("absolute", "/etc/hostname")):
    CASES.append(one(f"presets-show-{key}", "presets", f"presets show {name!r}"[:60], ["presets", "show", name],
                     expect=2 if key != "upper-case" else (0, 2), names=["preset", name[:40]] if name else ["preset"],
                     show=[name] if "[" in name else ()))

# --- allocate: options are checked before any work ----------------------------------------------------------------------
ALLOC = ["allocate", "c.yaml", *sets("compression.method=magnitude_channel", "compression.params={}")]
for key, extra, names in (("energy-weight-nan", ["--energy-weight", "nan"], ["energy"]),
                          ("energy-weight-inf", ["--energy-weight", "inf"], ["energy"]),
                          ("energy-weight-negative", ["--energy-weight", "-1"], ["energy"]),
                          ("latency-weight-nan", ["--latency-weight", "nan"], ["latency"]),
                          ("weights-both-zero", ["--energy-weight", "0", "--latency-weight", "0"], ["weight"]),
                          ("ratio-1.5", ["--ratio", "1.5"], ["ratio"]), ("ratio-nan", ["--ratio", "nan"], ["ratio"]),
                          ("ratio-negative", ["--ratio", "-0.1"], ["ratio"]),
                          ("ratio-text", ["--ratio", "half"], ["ratio", "half"])):
    CASES.append(one(f"allocate-{key}", "allocate", f"allocate {' '.join(extra)}", [*ALLOC, *extra], names=names,
                     files={"c.yaml": CHEAP}))
CASES += [one("allocate-method-without-layers", "allocate", "allocate with sca (no per-layer ratios)",
              ["allocate", "c.yaml"], names=["compression.method", "sca"], files={"c.yaml": CHEAP}),
          one("allocate-config-missing", "allocate", "allocate with a missing config", ["allocate", "nope.yaml"],
              names=["nope.yaml"]),
          one("allocate-unknown-key", "allocate", "allocate with an unknown config key",
              [*ALLOC, *sets("bogus=1")], names=["bogus"], files={"c.yaml": CHEAP})]


# --- Rich markup in names, folders and labels (successful runs) -------------------------------------------------------------
def _markup_run(id: str, what: str, over: dict, literal: str, allowed=()):
    CASES.append(one(id, "markup", what, ["run", "c.yaml"], expect=0, files={"c.yaml": deep_merge(CHEAP, over)},
                     cache=True, show=[literal], allowed=allowed,
                     check=lambda ctx, cmd: cmd.rc == 0 and ctx.run_folder_ok(
                         ctx.path(f"{over.get('output_dir', 'reports')}/{over.get('run_name', 'p')}"), 2)))


_markup_run("markup-run-name", "run_name a[red]b with a Rich tag", {"run_name": "a[red]b"}, "a[red]b")
_markup_run("markup-run-name-bold", "run_name x[bold]y[b]", {"run_name": "x[bold]y[b]"}, "x[bold]y[b]")
_markup_run("markup-output-dir", "output_dir [bold]out", {"output_dir": "[bold]out"}, "[bold]out",
            allowed=["[bold]out"])


def _markup_sweep(ctx: Ctx) -> None:
    ctx.copy_cache()
    ctx.config()
    ctx.write("s.yaml", {"base": "c.yaml", "run_name": "m[red]s", "cache_dir": "cache", "execution": {"workers": 0},
                         "axes": {"hardware.overrides.core.neurons_per_core": [512]}})
    ctx.cli("sweep", "s.yaml", expect=0, show=["m[red]s"])
    ctx.run_folder_ok(ctx.path("reports/m[red]s"), 2)


CASES.append(Case("markup-sweep-name", "markup", "sweep whose run_name holds a Rich tag", _markup_sweep, slow=True))
