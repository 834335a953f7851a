"""The outbox on a full disk (a real ENOSPC: a small tmpfs the test mounts as root): what
it holds is kept and delivered once space is back; a job it cannot keep is an error that
says so, never a silent loss; foreground sends go on as usual."""
import os

import pytest

from send_job_client import OUTBOX

from ..client_helpers import client_config, ledger_lines, sendjob
from ..filesystems import can_mount, small_filesystem
from ..helpers import wait_for
from .test_nothing_lost import start_recorder


def fill(folder):
    """Write a file until the filesystem is full (ENOSPC); return its path."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as err:
        assert err.errno == 28, err  # ENOSPC
    finally:
        os.close(fd)
    return filler


@pytest.mark.skipif(not can_mount(), reason="a real full disk needs a tmpfs (root)")
def test_an_outbox_on_a_full_disk_keeps_what_it_holds_and_refuses_loudly(
        restartable_gearmand, start_workers, plugin_dir, tmp_path):
    server = restartable_gearmand
    done = tmp_path / "done"
    with small_filesystem(tmp_path / "box", 512 * 1024) as (box, _limit):
        path, _config = client_config(tmp_path, [server.address], resend=0)
        path.write_text(path.read_text().replace("outbox.sqlite", "box/outbox.sqlite"))
        server.stop()
        kept = sendjob(path, "run", "record", "--arg", str(done), "--arg", "kept",
                       "--background")
        assert kept.returncode == 0 and kept.stdout.strip() == OUTBOX, kept.stderr
        filler = fill(box)
        # a job the full outbox cannot take: an error naming the file, exit non-zero
        refused = sendjob(path, "run", "record", "--arg", str(done), "--arg", "refused",
                          "--background")
        assert refused.returncode != 0 and refused.stdout.strip() != OUTBOX
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "box/outbox.sqlite" in lines[0], refused.stderr
        assert "space" in lines[0].lower() and "Traceback" not in refused.stderr
        server.start()
        start_recorder(start_workers, [server.address], plugin_dir)
        # foreground jobs do not need the outbox
        assert sendjob(path, "run", "reverse", "text=abc").stdout == "cba"
        # space back: the kept job is delivered, once
        os.unlink(filler)
        flushed = sendjob(path, "flush")
        assert flushed.returncode == 0, flushed.stderr
        wait_for(lambda: ledger_lines(done) == ["kept"], 15, "the kept job to run")
        assert sendjob(path, "flush").returncode == 0
        assert ledger_lines(done) == ["kept"]
