"""Helpers for sender tests: configs, a recording task plugin, the sendjob command."""
import os
import subprocess
import sys
import textwrap

import yaml

from gearman_frame.config import load_config

SENDJOB = os.path.join(os.path.dirname(sys.executable), "sendjob")

RECORD_TASKS = textwrap.dedent('''
    import os, time
    from gearman_frame.tasks import task

    @task("record")
    def record(ledger, word, sleep=0):
        time.sleep(sleep)
        with open(ledger, "a") as handle:
            handle.write(word + "\\n")
        return word

    @task("reverse")
    def reverse(text):
        return text[::-1]
''')


def client_config(folder, servers, timeout=5, resend=3, client_extra=None, **extra):
    """Write a sender config into ``folder``; return (path, Config)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "client.yaml"
    path.write_text(yaml.safe_dump({
        "servers": [str(s) for s in servers],
        "client": {"timeout": timeout, "resend": resend, "outbox": "outbox.sqlite",
                   "result_store": "results.sqlite", **(client_extra or {})},
        **extra,
    }))
    return path, load_config(path, environ={})


def sendjob(config_path, *args, timeout=60, env=None):
    return subprocess.run([SENDJOB, "--config", str(config_path), *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def ledger_lines(path):
    return path.read_text().split() if path.exists() else []


def start_recorder(start_workers, servers, plugin_dir, **kwargs):
    """A real worker serving the RECORD_TASKS plugin (the ``plugin_dir`` fixture)."""
    return start_workers(servers, {}, plugins=["recordtasks"], pythonpath=plugin_dir, **kwargs)


def fill_outbox_while_down(server, config, ledger, count):
    """Stop ``server``, send ``count`` background ``record`` jobs (words job0 ...), check
    that every one was kept in the outbox, and start the server again."""
    from send_job_client import Job, JobClient

    server.stop()
    with JobClient(config) as client:
        deliveries = client.submit_many([Job.of("record", str(ledger), f"job{i}")
                                         for i in range(count)], background=True)
    assert all(d.outbox for d in deliveries)
    server.start()
