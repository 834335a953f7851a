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


def client_config(folder, servers, timeout=5, resend=3, **extra):
    """Write a sender config into ``folder``; return (path, Config)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "client.yaml"
    path.write_text(yaml.safe_dump({
        "servers": [str(s) for s in servers],
        "client": {"timeout": timeout, "resend": resend, "outbox": "outbox.sqlite"},
        **extra,
    }))
    return path, load_config(path, environ={})


def sendjob(config_path, *args, timeout=60, env=None):
    return subprocess.run([SENDJOB, "--config", str(config_path), *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def ledger_lines(path):
    return path.read_text().split() if path.exists() else []
