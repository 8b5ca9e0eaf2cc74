#!/usr/bin/env bash
# Create .venv (if missing) and install tfdldl with its test extras into it.
# Used by .ci/run and scripts/quickstart.sh; safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[dev]"
