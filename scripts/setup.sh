#!/usr/bin/env bash
# Install what gearman-frame needs on a Debian/Ubuntu machine, idempotently:
# gearmand + gearman-tools (apt), PHP's and Perl's Gearman clients and the Perl job server
# (apt, for the interop tests), stunnel4 and openssl (TLS), systemd-analyze (to verify the
# units in deploy/systemd), a virtualenv in .venv with the
# package and test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v gearmand >/dev/null 2>&1 || [ -x /usr/sbin/gearmand ] || need_apt+=(gearman-job-server)
command -v gearman >/dev/null 2>&1 || need_apt+=(gearman-tools)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v pgrep >/dev/null 2>&1 || need_apt+=(procps)  # the tests and bench look at processes
# other languages' Gearman clients: the snippets of docs/protocol.md run in the tests
command -v php >/dev/null 2>&1 || need_apt+=(php-cli)
php -r 'exit(class_exists("GearmanClient") ? 0 : 1);' >/dev/null 2>&1 || need_apt+=(php-gearman)
perl -MGearman::Client -e 1 >/dev/null 2>&1 || need_apt+=(libgearman-client-perl)
[ -f /usr/share/perl5/Gearman/Server.pm ] || need_apt+=(gearman-server)  # the Perl job server
command -v stunnel4 >/dev/null 2>&1 || need_apt+=(stunnel4)  # TLS in front of gearmand
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)    # local and test certificates
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)  # verifies deploy/systemd
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)      # the fleet tests: hosts in namespaces
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)     # ... and their links cut
# the job ledger's fleet store: the tests start throwaway PostgreSQL clusters
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
# ... and gearmand's shared queues (PostgreSQL, Redis) a standby gearmand takes over
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# deploy/prometheus: promtool tests the alert rules, and a real Prometheus scrapes the
# exporter and a worker
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
# the dashboard's tests drive a real browser (selenium + Debian's chromium and its driver)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# `GF_PEERS=1 bash scripts/setup.sh` (make bench-peers): Celery, RQ, Redis and libgearman's
# headers, for `python -m bench --peers` only
peers="${GF_PEERS:-}"
if [ -n "$peers" ]; then
  [ -f /usr/include/libgearman/gearman.h ] || need_apt+=(libgearman-dev)
  command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need_apt[*]} with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.gearman-frame-installed-compat
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing gearman-frame into .venv" >&2
  # compat: the checkout on sys.path through a plain .pth line; the default editable
  # finder costs every CLI start ~25 ms of imports (pathlib, urllib) before it runs.
  .venv/bin/pip install -q --disable-pip-version-check -e '.[test]' \
    --config-settings editable_mode=compat
  touch "$stamp"
fi
# the docs site's builder, pinned (scripts/test.sh builds the site with --strict)
docs_stamp=.venv/.gearman-frame-docs-installed
if [ ! -f "$docs_stamp" ] || [ docs/requirements.txt -nt "$docs_stamp" ]; then
  echo "setup: installing the docs' MkDocs into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -r docs/requirements.txt
  touch "$docs_stamp"
fi
# Byte-compile the checkout, as pip does for a regular install: an editable install is
# not compiled, and where PYTHONDONTWRITEBYTECODE is set every CLI start compiled its
# modules again (`sendjob result` took 8 ms more than the interpreter with what it uses).
.venv/bin/python -m compileall -q gearman_frame send_job_client worker_client \
  manage_client plugins >/dev/null
if [ -n "$peers" ] && ! .venv/bin/python -c 'import celery, rq, dramatiq, huey' >/dev/null 2>&1; then
  echo "setup: installing the peers extras (celery[redis], rq, dramatiq, huey) into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -e '.[peers]' \
    --config-settings editable_mode=compat
fi
