#!/usr/bin/env bash
# The whole pipeline on this machine: set up, start a local gearmand (SQLite queue),
# and stop everything it started, leaving nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

# A port of our own, so a gearmand already on 4730 is left alone.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export GEARMAN_FRAME_CONFIG="$PWD/config.yaml" GEARMAN_FRAME_SERVERS="127.0.0.1:$port"
data=var/demo
server=(server --data-dir "$data" --port "$port")

cleanup() {
  runadmin --log-level WARNING "${server[@]}" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

step() { printf '\n== %s\n' "$*"; }

step "start a local gearmand on 127.0.0.1:$port (SQLite queue in $data)"
runadmin --log-level WARNING "${server[@]}" start
runadmin --log-level WARNING "${server[@]}" status

step "stop everything"
cleanup
trap - EXIT
runadmin --log-level WARNING "${server[@]}" status || true
