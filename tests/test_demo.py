"""The README's first command, run end to end: it works and leaves nothing running."""
import os
import re
import subprocess

from .helpers import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def running(pattern):
    """The live processes whose command line holds ``pattern`` as whole words (so that
    "sleep 30" is not a shell's "sleep 300")."""
    out = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    found = re.compile(re.escape(pattern) + r"\b")
    return [line for line in out.splitlines()
            if found.search(line) and not line.startswith("Z")]


def test_demo_runs_the_pipeline_and_leaves_nothing_behind():
    proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "demo.sh")], cwd=REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "eg: 20 sent, 20 ok, 0 failed" in out
    assert "gearmand status" in out and "demo" in out
    assert "timeout: timed out after 2." in proc.stderr and "process group killed" in proc.stderr
    assert out.count("(after 2 attempt(s))") == 12 and "retrying in" in out
    assert "heartbeat: " in out and "each once, none missing" in out
    assert "retal" in out  # the delayed job's result
    assert "worker demo stopped" in out and "done: nothing left running" in out
    assert "queued job " in out and "desserts" in out and "state=done status=ok" in out
    assert "demo.p1: pid" in out and "demo.p2: pid" in out and "reverse: ok=" in out
    assert "dashboard: http://127.0.0.1:" in out
    assert "distinct words: 4\n" in out and "= 55\n" in out  # a chain and a chord
    assert "chord  ok" in out and "chain  ok" in out  # runadmin workflows
    backups = out.split("concurrency: 1, so they run one at a time")[1].split("took ")
    assert "backed up db1\nbacked up db2\nbacked up db3\n" in backups[0]
    assert float(backups[1].split("s")[0]) >= 3.0  # one at a time: three 1 s backups
    demo_data = os.path.join(REPO, "var", "demo")
    def left():
        return [line for pattern in (demo_data, "runworkers --name demo", "sleep 30",
                                     "runadmin --log-level WARNING web")
                for line in running(pattern)]
    try:
        wait_for(lambda: not left(), 10, "every demo process to be gone")
    except AssertionError as err:
        raise AssertionError(f"{err}: {left()}") from None
