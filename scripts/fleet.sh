#!/usr/bin/env bash
# A demo fleet on this machine: 3 gearmand hosts, 4 worker hosts and a sender host, each
# a network namespace with its own address (gearman_frame/daemons/fleet.py makes them); prints the status
# and the per-host view, cuts one worker host off, and removes everything. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf var/fleet
exec .venv/bin/python -m gearman_frame.daemons.fleet var/fleet
