#!/usr/bin/env bash
# Create .venv and install the pinned environment. Idempotent: a second run with
# unchanged pins only checks a stamp file and returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
VENV=.venv
STAMP=$VENV/.setup-stamp
want=$(cat requirements/constraints.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$VENV/bin/codesign" ]; then
    exit 0
fi
echo "setup: creating $VENV and installing pinned packages (first run takes a few minutes)" >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# pip warns about local index folders named in this machine's pip config that do not exist: noise, filtered
pipq() {
    "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" \
        2> >(grep -vE "^WARNING: Location 'file:|^spikingjelly 2.0.0 requires|dependency resolver does not" >&2)
}
FIND=()
[ -d /opt/wheels ] && FIND=(--find-links /opt/wheels)   # local CPU torch wheel (DEVELOPERS.md)
C=(-c requirements/constraints.txt)
pipq install "${FIND[@]}" "${C[@]}" "torch==2.13.0"
pipq install --no-deps "spikingjelly==2.0.0"
pipq install "${FIND[@]}" "${C[@]}" -e ".[dev]"
# Peers for cross-check tests and benchmarks (optional extras, never imported by the packages):
# SANA-FE (GPL-3.0, run only), NeuroBench metrics and snntorch, whose declared deps are not needed here, and
# nirtorch (snnTorch's and SpikingJelly's NIR exchange), whose deps torch and nir are pinned above.
pipq install --no-deps "${C[@]}" sanafe neurobench snntorch nirtorch
# sinabs (SynSense's Speck/DYNAP-CNN toolchain: the Speck mapping oracle) and its pbr; not its samna, whose PyPI
# package pip-installs the real one from another index when imported (tests/crosscheck/test_speck_sinabs.py).
pipq install --no-deps "${C[@]}" sinabs pbr
echo "$want" > "$STAMP"
echo "setup: done" >&2
