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
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
FIND=()
[ -d /opt/wheels ] && FIND=(--find-links /opt/wheels)   # local CPU torch wheel (DEVELOPERS.md)
C=(-c requirements/constraints.txt)
$PIP install "${FIND[@]}" "${C[@]}" "torch==2.13.0"
$PIP install --no-deps "spikingjelly==2.0.0"
$PIP install "${FIND[@]}" "${C[@]}" -e ".[dev]"
echo "$want" > "$STAMP"
echo "setup: done" >&2
