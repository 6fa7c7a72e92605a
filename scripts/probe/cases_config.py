"""Run config files: bad YAML, non-mappings, unknown keys, wrong types, out-of-range, NaN/inf, huge ints, run names,
alias bombs, big files, encodings, odd paths, YAML payload tags."""
from __future__ import annotations

import os

from cases_common import CHEAP_SETS_ARGS, bad_run_config, one, slug, unique
from harness import CHEAP, CHEAP_SETS, Ctx, deep_merge, dump, nest

CASES = []
N = float("nan")
INF = float("inf")


def tree(dotted: str, value) -> dict:
    return deep_merge(CHEAP, nest(dotted, value))


def field_case(prefix: str, dotted: str, value, what: str, names=None, expect=2, **kw):
    CASES.append(bad_run_config(unique(f"{prefix}-{slug(dotted)}-{slug(repr(value)) or 'x'}"), "config", what,
                                tree(dotted, value), names=names or [dotted, "." + dotted.split(".")[-1]],
                                expect=expect, **kw))


# --- YAML syntax and shape -------------------------------------------------------------------------------------
SYNTAX = {"unclosed-flow": "data: {dataset: digits\n", "tab-indent": "data:\n\tdataset: digits\n",
          "unclosed-list": "compression:\n  ratios: [0.0, 0.5\n", "colons": ": : :\n",
          "unterminated-quote": 'run_name: "abc\n', "nested-colon": "a: b: c\n", "list-then-map": "- a\nb: c\n",
          "bad-directive": "%YAML 9.9\n---\na: 1\n", "unknown-tag": "data: !include /etc/passwd\n",
          "two-documents": "train: {epochs: 1}\n---\ntrain: {epochs: 2}\n", "nul-byte": "run_name: a\x00b\n",
          "bad-anchor": "data: *nothere\n"}
for key, text in SYNTAX.items():
    CASES.append(bad_run_config(f"yaml-{key}", "config", f"config with YAML error: {key}", text))
for key, text in {"list": "- 1\n- 2\n", "scalar": "hello\n", "int": "42\n", "bool": "true\n",
                  "string-with-colon": "'a: b'\n"}.items():
    CASES.append(bad_run_config(f"config-nonmapping-{key}", "config", f"config that is a {key}, not a mapping",
                                text))
for key, text in {"empty-file": "", "comments-only": "# nothing here\n", "null": "~\n"}.items():
    CASES.append(bad_run_config(f"config-{key}", "config", f"{key} config means the defaults (cheap --set on top)",
                                text, expect=0, sets=CHEAP_SETS))
CASES.append(bad_run_config("config-utf8-bom", "config", "valid config with a UTF-8 byte-order mark",
                            b"\xef\xbb\xbf" + dump(CHEAP).encode(), expect=(0, 2)))

# --- unknown keys ------------------------------------------------------------------------------------------------
for dotted in ("bogus", "data.bogus", "model.bogus", "train.bogus", "compression.bogus", "hardware.bogus",
               "hardware.modle", "compresion", "compression.params.bogus", "data.options.bogus"):
    field_case("unknown-key", dotted, 1, f"unknown key {dotted}", names=[dotted.split(".")[-1]])

# --- wrong types -------------------------------------------------------------------------------------------------
INT_FIELDS = ("seed", "train.epochs", "train.batch_size", "data.n_timesteps", "hardware.n_samples",
              "hardware.weight_bits")
for dotted in INT_FIELDS:
    for value in ("abc", [1], {"a": 1}, 1.5):
        field_case("type", dotted, value, f"{dotted} given {type(value).__name__} {value!r}")
for dotted in ("train.lr", "model.tau", "model.v_threshold", "train.momentum", "train.weight_decay"):
    for value in ("fast", [0.1]):
        field_case("type", dotted, value, f"{dotted} given {value!r}")
for dotted in ("data.dataset", "data.encoding", "model.name", "model.neuron", "compression.method",
               "hardware.preset", "hardware.placement", "run_name", "output_dir", "cache_dir"):
    for value in ([1], {"a": 1}):
        field_case("type", dotted, value, f"string field {dotted} given {value!r}")
for dotted, value in (("train.optimizer", "adamw"), ("train.lr_schedule", "step"), ("hardware.model", "spice"),
                      ("hardware.semantics", "async"), ("hardware.weight_fit", "round"), ("device", "tpu"),
                      ("hardware.multicast", "maybe")):
    field_case("choice", dotted, value, f"{dotted}: {value!r} is not an accepted value")
for section, value in (("data", 5), ("model", "x"), ("train", [1]), ("compression", True), ("hardware", 3)):
    CASES.append(bad_run_config(f"type-section-{section}", "config", f"section {section} given {value!r}",
                                {**CHEAP, section: value}, names=[section]))
for value in ("0.5", {"a": 1}, [[0.5]], []):
    field_case("type", "compression.ratios", value, f"compression.ratios given {value!r}")
for dotted, value in (("hardware.overrides", [1, 2]), ("hardware.overrides", "x"), ("compression.params", [1]),
                      ("data.options", 5)):
    field_case("type", dotted, value, f"mapping {dotted} given {value!r}")

# --- out of range ------------------------------------------------------------------------------------------------
for dotted, value in (("train.epochs", -1), ("train.epochs", 10001), ("train.batch_size", 0),
                      ("data.n_timesteps", 0), ("data.n_timesteps", 1001), ("model.tau", 0.5),
                      ("model.v_threshold", 0), ("train.momentum", 1.0), ("train.weight_decay", -1),
                      ("hardware.weight_bits", 0), ("hardware.weight_bits", 33), ("hardware.n_samples", 0),
                      ("hardware.n_samples", -5), ("seed", -1), ("compression.ratios", [1.0]),
                      ("compression.ratios", [-0.1]), ("compression.ratios", [0.5, 1.5]),
                      ("hardware.n_samples", 100000), ("compression.params.q", -3),
                      ("hardware.overrides", {"core.neurons_per_core": 0}),
                      ("hardware.overrides", {"core.neurons_per_core": -4})):
    field_case("range", dotted, value, f"{dotted} = {value!r} is out of range",
               names=[dotted, "." + dotted.split(".")[-1], *(value.keys() if isinstance(value, dict) else [])])

# --- unknown names -----------------------------------------------------------------------------------------------
for dotted in ("data.dataset", "data.encoding", "model.name", "model.neuron", "compression.method",
               "hardware.preset", "hardware.placement"):
    field_case("name", dotted, "nope", f"unknown registry name in {dotted}")
CASES.append(bad_run_config("name-cifar10-no-files", "config", "cifar10 without its files names the path",
                            tree("data.dataset", "cifar10"), names=["cifar"]))
CASES.append(bad_run_config("name-cifar10-bad-root", "config", "cifar10 with data.root that does not exist",
                            deep_merge(CHEAP, {"data": {"dataset": "cifar10", "root": "/nonexistent/x"}}),
                            names=["/nonexistent/x", "data.root"]))
field_case("name", "device", "cuda", "device cuda on a machine without a GPU")
field_case("name", "hardware.overrides", {"bogus.key": 1}, "unknown chip override key", names=["bogus"])

# --- NaN / inf ---------------------------------------------------------------------------------------------------
for dotted, value in (("model.tau", N), ("model.tau", INF), ("train.lr", N), ("train.lr", -INF),
                      ("model.v_threshold", N), ("train.weight_decay", INF), ("train.momentum", N),
                      ("compression.ratios", [N]), ("compression.params.lr", N), ("compression.params.q", INF),
                      ("compression.params.l1_lambda", N)):
    field_case("nonfinite", dotted, value, f"{dotted} = {value!r}")
for key, value in (("core.neurons_per_core", N), ("core.static_power_w", INF),
                   ("core.synop_energy_j.dense", N), ("router.hop_energy_ew_j", -INF)):
    field_case("nonfinite", "hardware.overrides", {key: value}, f"chip override {key} = {value!r}", names=[key])

# --- huge integers -----------------------------------------------------------------------------------------------
BIG = 10 ** 30
for dotted, expect in (("seed", 2), ("train.epochs", 2), ("train.batch_size", (0, 2)), ("data.n_timesteps", 2),
                       ("hardware.n_samples", 2), ("hardware.weight_bits", 2), ("compression.params.epochs", 2),
                       ("model.tau", (0, 2))):
    field_case("huge", dotted, BIG, f"{dotted} = 10**30", expect=expect)
field_case("huge", "hardware.overrides", {"core.neurons_per_core": BIG}, "chip override = 10**30",
           names=["core.neurons_per_core"], expect=(0, 2))
CASES.append(bad_run_config("huge-5000-digit-int", "config", "an integer of 5000 digits (Python's int limit)",
                            "seed: " + "9" * 5000 + "\n"))
CASES.append(bad_run_config("huge-float-overflow", "config", "a float literal beyond double range",
                            dump(CHEAP) + "model: {tau: 1.0e+999}\n", names=["c.yaml", "model.tau"]))

# --- run names ---------------------------------------------------------------------------------------------------
NAMES = {"300-chars": "a" * 300, "121-chars": "b" * 121, "dotdot-x": "../x", "slash": "a/b", "dot": ".",
         "dotdot": "..", "hidden": ".hidden", "newline": "x\ny", "dash-rf": "-rf", "unicode": "ünïcödé",
         "space": "a b", "nul": "a\x00b", "tilde": "~root", "dollar": "$HOME", "star": "*",
         "backslash": "a\\..\\b", "int": 123, "list": ["a"]}
for key, name in NAMES.items():
    CASES.append(bad_run_config(f"run-name-{key}", "config", f"run_name {name!r}"[:80],
                                {**CHEAP, "run_name": name}, names=["run_name"]))


def _abs_name(ctx: Ctx) -> None:
    ctx.write("c.yaml", {**CHEAP, "run_name": str(ctx.outside / "abs")})


def _inject_name(ctx: Ctx) -> None:
    ctx.write("c.yaml", {**CHEAP, "run_name": f"a;{ctx.payload_cmd()}"})


def _dotdot_outside(ctx: Ctx) -> None:
    ctx.write("c.yaml", {**CHEAP, "run_name": "../../outside/x"})


CASES += [one("run-name-absolute", "config", "run_name is an absolute path (into the sentinel)", ["run", "c.yaml"],
              names=["run_name"], setup=_abs_name),
          one("run-name-shell-injection", "config", "run_name with '; touch PWNED'", ["run", "c.yaml"],
              names=["run_name"], setup=_inject_name),
          one("run-name-dotdot-outside", "config", "run_name ../../outside/x", ["run", "c.yaml"],
              names=["run_name"], setup=_dotdot_outside),
          bad_run_config("run-name-empty", "config", "run_name '' (falls back to the default name)",
                         {**CHEAP, "run_name": ""}, expect=(0, 2), names=["run_name"])]

# --- output / cache dirs that are files --------------------------------------------------------------------------
CASES += [one("output-dir-is-file", "config", "output_dir names a regular file", ["run", "c.yaml"],
              names=["output_dir", "reports"], files={"c.yaml": CHEAP, "reports": "not a folder\n"}),
          one("cache-dir-is-file", "config", "cache_dir names a regular file", ["run", "c.yaml"],
              names=["cache_dir", "cache"], files={"c.yaml": CHEAP, "cache": "not a folder\n"})]

# --- alias bombs, nesting, size ----------------------------------------------------------------------------------
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
CASES += [bad_run_config("yaml-billion-laughs", "config", "alias bomb: 9 levels of 9 aliases", LAUGHS),
          bad_run_config("yaml-alias-bomb-in-section", "config", "alias bomb inside compression.params",
                         dump(CHEAP).replace("params:", "params_unused:") + "x0: &x0 [1,1,1,1,1,1,1,1,1,1]\n" +
                         "".join(f"x{i}: &x{i} [*x{i-1},*x{i-1},*x{i-1},*x{i-1},*x{i-1},*x{i-1},*x{i-1},*x{i-1},"
                                 f"*x{i-1},*x{i-1}]\n" for i in range(1, 7))),
          bad_run_config("yaml-deep-nesting", "config", "100,000 nested lists", "a: " + "[" * 100000 +
                         "]" * 100000 + "\n"),
          bad_run_config("yaml-deep-mapping", "config", "5,000 nested flow mappings",
                         "a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n"),
          bad_run_config("yaml-5mb", "config", "5 MB config (valid YAML, padded with comments)",
                         dump(CHEAP) + ("# " + "x" * 98 + "\n") * 50_000, names=["c.yaml", "bytes"]),
          bad_run_config("yaml-1mb-plus-1", "config", "config of 1,000,001 bytes",
                         (lambda t: t + "#" * (1_000_000 - len(t)) + "\n")(dump(CHEAP)), names=["c.yaml", "bytes"]),
          bad_run_config("yaml-100k-keys", "config", "100,000 top-level keys",
                         "".join(f"k{i}: {i}\n" for i in range(100_000)), names=["c.yaml", "k"])]

# --- encodings ---------------------------------------------------------------------------------------------------
CASES += [bad_run_config("enc-latin1-comment", "config", "latin-1 byte in a comment (not UTF-8)",
                         dump(CHEAP).encode() + b"# caf\xe9\n"),
          bad_run_config("enc-invalid-utf8-value", "config", "invalid UTF-8 bytes in run_name",
                         dump({**CHEAP, "run_name": "X"}).encode().replace(b"run_name: X", b"run_name: \xff\xfe")),
          bad_run_config("enc-utf16", "config", "config saved as UTF-16", dump(CHEAP).encode("utf-16")),
          bad_run_config("enc-binary", "config", "random binary bytes", bytes(range(256)) * 40)]

# --- the config path itself --------------------------------------------------------------------------------------


def _fifo(ctx: Ctx) -> None:
    os.mkfifo(ctx.path("fifo.yaml"))


def _loop(ctx: Ctx) -> None:
    os.symlink("loop.yaml", ctx.path("loop.yaml"))


CASES += [one("path-directory", "config", "a directory given as the config", ["run", "confdir"],
              names=["confdir"], setup=lambda ctx: ctx.path("confdir").mkdir()),
          one("path-missing", "config", "config file that does not exist", ["run", "missing.yaml"],
              names=["missing.yaml"]),
          one("path-dev-zero", "config", "/dev/zero as the config (must not read forever)", ["run", "/dev/zero"],
              names=["/dev/zero"]),
          one("path-dev-null", "config", "/dev/null as the config", ["run", "/dev/null", *CHEAP_SETS_ARGS],
              expect=(0, 2), names=["/dev/null"], cache=True),
          one("path-fifo", "config", "a FIFO as the config (nobody writes to it)", ["run", "fifo.yaml"],
              names=["fifo.yaml"], setup=_fifo),
          one("path-symlink-loop", "config", "a symlink loop as the config", ["run", "loop.yaml"],
              names=["loop.yaml"], setup=_loop),
          one("path-markup-name", "config", "bad config whose file name holds Rich markup",
              ["run", "[red]c[red].yaml"], names=["[red]c[red].yaml"], files={"[red]c[red].yaml": "- 1\n"},
              show=["[red]c[red].yaml"]),
          one("path-closing-tag-name", "config", "missing config named [/x].yaml", ["run", "[/x].yaml"],
              names=["[/x].yaml"], show=["[/x].yaml"])]

# --- YAML payload tags (safe_load must refuse them) --------------------------------------------------------------
TAGS = {"object-apply": "!!python/object/apply:os.system [{cmd!r}]",
        "object-new": "!!python/object/new:os.system [{cmd!r}]",
        "name": "!!python/name:os.system",
        "module": "!!python/module:os",
        "object": "!!python/object:subprocess.Popen {{args: [{cmd!r}], shell: true}}"}
for key, tag in TAGS.items():
    def _setup(ctx: Ctx, tag=tag) -> None:
        ctx.write("c.yaml", dump(CHEAP) + f"seed: {tag.format(cmd=ctx.payload_cmd())}\n")
    CASES.append(one(f"payload-yaml-{key}", "payload", f"config with a YAML {tag.split()[0]} tag", ["run", "c.yaml"],
                     names=["c.yaml"], setup=_setup))


def _payload_doc(ctx: Ctx) -> None:
    ctx.write("c.yaml", f"!!python/object/apply:os.system [{ctx.payload_cmd()!r}]\n")


CASES.append(one("payload-yaml-whole-doc", "payload", "the whole config is a !!python/object/apply tag",
                 ["run", "c.yaml"], names=["c.yaml"], setup=_payload_doc))
