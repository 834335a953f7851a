#!/usr/bin/env bash
# The whole pipeline on this machine: a local gearmand with its SQLite queue, a named
# worker, a plugin sending jobs, the status table, a hung command killed at its timeout,
# a failing step retried until it succeeds; then everything is stopped gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

# A port of our own, so a gearmand already on 4730 is left alone.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=var/demo
rm -rf "$data"
mkdir -p "$data"
export GEARMAN_FRAME_CONFIG="$PWD/config.yaml" GEARMAN_FRAME_SERVERS="127.0.0.1:$port"
quiet=(--log-level WARNING)
server=(server --data-dir "$data/gearmand" --port "$port")
worker_pid=""

cleanup() {
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  runadmin "${quiet[@]}" "${server[@]}" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "start a local gearmand on 127.0.0.1:$port (SQLite queue in $data/gearmand)"
runadmin "${quiet[@]}" "${server[@]}" start

step "start a worker named 'demo' with 4 threads (log: $data/worker.log)"
runworkers --name demo --threads 4 >"$data/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 100); do
  grep -q "ready:" "$data/worker.log" && break
  kill -0 "$worker_pid" 2>/dev/null || { cat "$data/worker.log"; exit 1; }
  sleep 0.1
done
grep "ready:" "$data/worker.log" | sed 's/^.*worker_client.runworkers: //'

step "send 20 jobs with the example plugin (plugins/eg.py)"
sendjob "${quiet[@]}" plugin eg --count 20

step "queue and worker status"
runadmin "${quiet[@]}" status
runadmin "${quiet[@]}" workers

step "a hung step: 'nap seconds=30' has a 2 s timeout; its process group is killed"
if sendjob "${quiet[@]}" run nap seconds=30; then
  echo "unexpected: the nap finished"; exit 1
else
  echo "(sendjob exit code $?: the job timed out, as configured)"
fi

step "a flaky batch: each store fails once and is retried (plugins/store_numbers.py)"
sendjob --log-level INFO plugin store_numbers --upto 12 --dir "$data/numbers" --flaky 2>&1 \
  | sed 's/^.* plugins.store_numbers: //'
grep -h "retrying" "$data/worker.log" | sed 's/^.*worker_client.jobs: /worker: /' | head -3

step "stop the worker through the admin, then the server"
runadmin "${quiet[@]}" shutdown demo
wait "$worker_pid" && worker_pid=""
runadmin "${quiet[@]}" "${server[@]}" stop
trap - EXIT
echo "done: nothing left running"
