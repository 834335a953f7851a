#!/usr/bin/env bash
# The whole pipeline on this machine: a local gearmand with its SQLite queue behind
# stunnel (TLS), a signing key, a named worker of two supervised processes, a plugin
# sending jobs, the status table, a background job's result looked up, one job sent twice
# with one idempotency key and run once (the job ledger), a chain, a chord and a capped
# group (workflows, fleet-wide caps), what the worker
# does (inspect), a delayed job, a schedule fired once per occurrence by two schedulers
# (one killed), the dashboard's address, a hung command killed at its timeout, a batch
# task's flaky stores retried until they succeed, a job signed with the wrong key refused; then
# everything is stopped gracefully.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

# A port of our own, so a gearmand already on 4730 is left alone.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
data=var/demo
rm -rf "$data"
mkdir -p "$data"
quiet=(--log-level WARNING)
server=(server --data-dir "$data/gearmand" --port "$port")

# The demo's config: ./config.yaml, on a fleet of its own: signed with a key only it has,
# over TLS to a gearmand that listens on loopback behind stunnel.
runadmin keygen "$data/fleet.key" >/dev/null
runadmin keygen "$data/intruder.key" >/dev/null
python3 - "$data" "$port" <<'PY'
import sys, yaml
data, port = sys.argv[1], sys.argv[2]
config = yaml.safe_load(open("config.yaml"))
config.update(servers=[f"tls://127.0.0.1:{port}"], security={"key_file": "fleet.key"},
              tls={"ca_file": "gearmand/tls/ca.crt"})
config.setdefault("client", {})["results"] = "demo"  # results come back on this channel
config["schedules"] = {"heartbeat": {"function": "reverse", "args": ["tick"], "every": 2}}
# a step that leaves a line per run: the idempotency key's demo counts them
config["functions"]["stamp"] = {"shell": "echo ran >> {file}; echo stamped"}
yaml.safe_dump(config, open(f"{data}/config.yaml", "w"))
config["security"] = {"key_file": "intruder.key"}
yaml.safe_dump(config, open(f"{data}/intruder.yaml", "w"))
PY
export GEARMAN_FRAME_CONFIG="$PWD/$data/config.yaml"
unset GEARMAN_FRAME_SERVERS
worker_pid=""
web_pid=""

cleanup() {
  if [ -n "$web_pid" ]; then kill -TERM "$web_pid" 2>/dev/null || true; fi
  if [ -n "$worker_pid" ] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -TERM "$worker_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
  fi
  runadmin "${quiet[@]}" "${server[@]}" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "start a local gearmand (SQLite queue in $data/gearmand) behind stunnel: tls://127.0.0.1:$port"
runadmin "${quiet[@]}" "${server[@]}" start --tls

step "start a worker named 'demo': 2 supervised processes of 2 threads (log: $data/worker.log)"
runworkers --name demo --processes 2 --threads 2 >"$data/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 100); do
  [ "$(grep -c "ready:" "$data/worker.log")" -ge 2 ] && break
  kill -0 "$worker_pid" 2>/dev/null || { cat "$data/worker.log"; exit 1; }
  sleep 0.1
done
grep "ready:" "$data/worker.log" | sed 's/^.*worker_client.runworkers: //'

step "send 20 jobs with the example plugin (plugins/eg.py)"
sendjob "${quiet[@]}" plugin eg --count 20

step "queue and worker status"
runadmin "${quiet[@]}" status
runadmin "${quiet[@]}" workers

step "a background job, and its result looked up later from the result store"
job_id=$(sendjob "${quiet[@]}" run reverse --arg "stressed" --background --json \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "queued job $job_id"
sendjob "${quiet[@]}" result "$job_id" --wait 20 && echo
sendjob "${quiet[@]}" status "$job_id"

step "one job sent twice with one idempotency key (--key): the job ledger runs it once"
for attempt in 1 2; do
  echo "send $attempt: $(sendjob "${quiet[@]}" run stamp file="$PWD/$data/stamps" --key nightly-report)"
done
echo "runs of the command: $(wc -l <"$data/stamps")"
[ "$(wc -l <"$data/stamps")" -eq 1 ] || { echo "unexpected: it ran twice"; exit 1; }
grep -h "answered from the ledger" "$data/worker.log" | sed 's/^.*worker_client.stages.claim: /worker: /' | head -1

step "a three-step chain (each step gets the one before's output) and a chord of 5 squares"
echo "distinct words: $(sendjob "${quiet[@]}" chain 'words text="to be or not to be"' 'unique' 'count')"
echo "1² + 2² + 3² + 4² + 5² = $(sendjob "${quiet[@]}" chord 'square n=1' 'square n=2' \
  'square n=3' 'square n=4' 'square n=5' 'total')"
runadmin "${quiet[@]}" workflows --limit 2

step "three backups in a group; 'backup' has concurrency: 1, so they run one at a time"
started=$(date +%s.%N)
sendjob "${quiet[@]}" group 'backup host=db1' 'backup host=db2' 'backup host=db3'
python3 -c "import sys, time; print(f'took {time.time() - float(sys.argv[1]):.1f}s (each backup takes 1 s)')" "$started"

step "a job held by gearmand for 2 s (sendjob run --in 2s), then its result"
job_id=$(sendjob "${quiet[@]}" run reverse --arg "later" --in 2s --json \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "job $job_id starts in 2 s"
sendjob "${quiet[@]}" result "$job_id" --wait 20 && echo

step "a schedule every 2 s and two schedulers; the active one is SIGKILLed at 5 s"
sendjob scheduler >"$data/scheduler-a.log" 2>&1 &
scheduler_a=$!
sendjob scheduler >"$data/scheduler-b.log" 2>&1 &
scheduler_b=$!
sleep 5
if grep -q "scheduler: active" "$data/scheduler-a.log"; then
  active=$scheduler_a; survivor=$scheduler_b; echo "killed scheduler a (active)"
else
  active=$scheduler_b; survivor=$scheduler_a; echo "killed scheduler b (active)"
fi
kill -KILL "$active"; wait "$active" 2>/dev/null || true
sleep 5
grep -h "taking over" "$data"/scheduler-?.log | sed 's/^.*scheduler: /survivor: /'
kill -TERM "$survivor"; wait "$survivor" 2>/dev/null || true
stopped=$(date +%s)
sleep 3
sendjob "${quiet[@]}" results --function reverse --json | python3 -c '
import json, sys
stopped = int(sys.argv[1])
ids = [json.loads(line)["id"] for line in sys.stdin if line.strip()]
runs = sorted(int(i.rsplit(":", 1)[1]) for i in ids if i.startswith("sched:heartbeat:"))
runs = [t for t in runs if t <= stopped]
expected = list(range(runs[0], runs[-1] + 1, 2)) if runs else []
print(f"heartbeat: {len(runs)} occurrences ran, "
      + ("each once, none missing" if runs == expected else f"NOT once each: {runs}"))
sys.exit(0 if runs and runs == expected else 1)' "$stopped"
runadmin "${quiet[@]}" schedules

step "what the worker's processes are doing and have done"
runadmin "${quiet[@]}" inspect demo

step "the dashboard (runadmin web keeps it up; this demo stops it at the end)"
web_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
runadmin "${quiet[@]}" web --listen "127.0.0.1:$web_port" >"$data/web.log" 2>&1 &
web_pid=$!
for _ in $(seq 50); do grep -q "dashboard:" "$data/web.log" && break; sleep 0.1; done
cat "$data/web.log"

step "a hung step: 'nap seconds=30' has a 2 s timeout; its process group is killed"
if sendjob "${quiet[@]}" run nap seconds=30; then
  echo "unexpected: the nap finished"; exit 1
else
  echo "(sendjob exit code $?: the job timed out, as configured)"
fi

step "a batch task: 12 numbers, a job each, stored at most 5 per file with 1 and 2 apart;
   each store fails once first and is retried (plugins/store_numbers.py)"
sendjob --log-level INFO plugin store_numbers --upto 12 --dir "$data/numbers" --flaky 2>&1 \
  | sed 's/^.* plugins.store_numbers: //'
for file in "$data"/numbers/batch-*.txt; do echo "$(basename "$file"): $(tr '\n' ' ' <"$file")"; done
grep -h -e "retrying in" -e "success (" "$data/worker.log" \
  | sed -E 's/^.*(worker_client.(jobs|batches)|plugins.store_numbers): /worker: /' | head -4

step "a job signed with another key runs nothing: the worker refuses it"
if sendjob "${quiet[@]}" --config "$data/intruder.yaml" run disk_report mount=/; then
  echo "unexpected: the intruder's job ran"; exit 1
else
  echo "(sendjob exit code $?: refused)"
fi
grep -h "refused:" "$data/worker.log" | sed 's/^.*worker_client.jobs: /worker: /' | head -1

step "stop the dashboard, the worker through the admin (a signed control job), the server"
kill -TERM "$web_pid" && wait "$web_pid" 2>/dev/null || true
web_pid=""
runadmin "${quiet[@]}" shutdown demo
wait "$worker_pid" && worker_pid=""
runadmin "${quiet[@]}" "${server[@]}" stop
trap - EXIT
echo "done: nothing left running"
