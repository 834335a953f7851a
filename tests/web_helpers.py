"""`runadmin web` (and `runadmin exporter`) started for a test and stopped after it."""
import contextlib
import os
import subprocess
import sys

from gearman_frame.daemons.gearmand import free_port

BIN = os.path.dirname(sys.executable)


@contextlib.contextmanager
def serving(config, command="web", cwd=None):
    """`runadmin --config CONFIG COMMAND --listen 127.0.0.1:PORT`, once it said where it
    listens: yields its base URL; stopped (SIGTERM) when the block ends."""
    port = free_port()
    process = subprocess.Popen([os.path.join(BIN, "runadmin"), "--config", str(config),
                                command, "--listen", f"127.0.0.1:{port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=cwd)
    try:
        first = process.stdout.readline()
        assert first.startswith(("dashboard: http://127.0.0.1:", "exporter: http://")), \
            first + process.stderr.read()
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)
