"""The same workloads for Celery (with a Redis broker and result backend) and RQ, for
`python -m bench --peers`: a no-op, one `true` command, and a hung command. The Redis URL
comes from GF_REDIS_URL (the bench starts its own redis-server on loopback)."""
import os
import subprocess

from celery import Celery

REDIS_URL = os.environ.get("GF_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("gfpeers", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(result_expires=600, worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, task_time_limit=None)


def noop(value):
    return value


def true_command():
    return subprocess.run(["true"], check=False).returncode


def hang(marker):
    """`sh -c 'sleep & sleep'` that the timeout must end (and leave nothing behind)."""
    return subprocess.run(["sh", "-c", f"{marker} & {marker}"], check=False).returncode


celery_noop = app.task(name="noop")(noop)
celery_true = app.task(name="true_command")(true_command)
celery_hang = app.task(name="hang", time_limit=0.5)(hang)
