#!/usr/bin/env bash
# Set everything up, then run the whole test suite against real gearmand processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The type check (mypy.ini) first: the public API is typed, and a type error fails the run.
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
