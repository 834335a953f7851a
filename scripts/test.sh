#!/usr/bin/env bash
# Set everything up, then run the whole test suite against real gearmand processes.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The type check (mypy.ini) first: the public API is typed, and a type error fails the run.
.venv/bin/mypy
# The docs site builds with no warning (a link to a page or anchor that is not there fails).
site="$(mktemp -d)"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
rm -rf "$site"
exec .venv/bin/python -m pytest "$@"
