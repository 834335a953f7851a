"""`runadmin dead`: the dead letters, decoded, and still queued afterwards (real gearmand,
the installed `runworkers` and `runadmin`)."""
import json
import os
import subprocess
import sys

from .helpers import queued, wait_for
from .worker_helpers import send_background

RUNADMIN = os.path.join(os.path.dirname(sys.executable), "runadmin")


def runadmin(server, *args, cwd=None):
    return subprocess.run([RUNADMIN, "--servers", server.address, *args],
                          capture_output=True, text=True, timeout=60, cwd=cwd)


def test_dead_lists_dead_letters_decoded_and_leaves_them_queued(gearmand, start_workers,
                                                                 tmp_path):
    functions = {"doomed": {"shell": "echo no {path} >&2; exit 4", "retries": 1,
                            "retry_delay": 0.01},
                 "fine": {"command": ["true"]}}
    start_workers([gearmand.address], functions, name="dw", threads=1)
    ids = [send_background([gearmand.address], "doomed", path=f"/tmp/x{i}") for i in range(3)]
    wait_for(lambda: queued(gearmand, "__dead__.doomed") == 3, 15, "three dead letters")
    listed = runadmin(gearmand, "dead", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert sorted(d["job_id"] for d in letters) == sorted(ids)
    for letter in letters:
        assert letter["function"] == "doomed" and letter["status"] == "failed"
        assert letter["attempts"] == 2 and letter["exit_code"] == 4
        assert letter["kwargs"]["path"].startswith("/tmp/x") and "exit code 4" in \
            letter["reason"]
    # nothing was taken away, twice over, and no temporary dump is left behind
    assert queued(gearmand, "__dead__.doomed") == 3
    text = runadmin(gearmand, "dead", "doomed", cwd=tmp_path)
    assert text.returncode == 0 and text.stdout.count("doomed") >= 3 and "failed" in text.stdout
    assert queued(gearmand, "__dead__.doomed") == 3
    assert not any((tmp_path / "var" / "dead-peek").iterdir())
    assert "no dead letters for fine" in runadmin(gearmand, "dead", "fine", cwd=tmp_path).stdout
