"""The peers' workloads as plain functions (RQ runs these; bench/peer_tasks.py wraps them
for Celery): a no-op, one `true` command, and a hung command. Kept free of heavy imports:
RQ's work horse imports this module for each job."""
import subprocess


def noop(value):
    return value


def true_command():
    return subprocess.run(["true"], check=False).returncode


def hang(marker):
    """`sh -c 'sleep & sleep'` that the timeout must end (and leave nothing behind)."""
    return subprocess.run(["sh", "-c", f"{marker} & {marker}"], check=False).returncode
