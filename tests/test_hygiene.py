"""The group ledger and the keeper, against real process groups."""
import os
import signal
import subprocess
import time

import pytest

from worker_client.hygiene import GroupLedger, Keeper
from worker_client.procfs import boot_ticks, proc_stat

from .helpers import wait_for


@pytest.fixture
def group_leader():
    """Start a `sleep` in a session of its own (its pid is its process group); return it
    with the clock tick just before it started. Every one is killed at the end."""
    started = []

    def start():
        ticks = boot_ticks()
        started.append(subprocess.Popen(["sleep", "30"], start_new_session=True))
        return started[-1], ticks

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_keeper_kills_recorded_groups_and_skips_a_torn_line(tmp_path, group_leader):
    (recorded, recorded_ticks), (torn, torn_ticks) = group_leader(), group_leader()
    ledger = GroupLedger(str(tmp_path))
    ledger.claim()
    ledger.add(recorded.pid, recorded_ticks)
    ledger.add(torn.pid, torn_ticks)
    # What a SIGKILL in the middle of the second store could leave behind:
    offset = ledger._slots[torn.pid]
    ledger._map[offset:offset + GroupLedger.SLOT] = (
        f"{torn.pid} {torn_ticks}".encode().ljust(GroupLedger.SLOT - 1) + b"\n")
    keeper = Keeper(str(tmp_path), "GEARMAN_FRAME_RUN=no-such-run-")
    keeper.release()  # the pipe closes as when the worker dies
    wait_for(lambda: recorded.poll() is not None, 5, "the keeper to kill the recorded group")
    time.sleep(0.2)
    assert torn.poll() is None, "a torn ledger line must never be taken for a group"


def test_sweep_kills_a_dead_workers_groups_but_not_a_reused_pid(tmp_path, group_leader):
    (group, group_ticks), (other, _) = group_leader(), group_leader()
    previous = GroupLedger(str(tmp_path))
    previous.claim()
    previous.add(group.pid, group_ticks)
    # a line whose recorded start time is not its leader's: the pid was reused
    previous.add(other.pid, proc_stat(other.pid)[3] - 1000)
    with open(os.path.join(str(tmp_path), "owner"), "w") as handle:
        handle.write("999999999 1\n")  # the previous owner is gone
    assert GroupLedger(str(tmp_path)).sweep_previous() == [group.pid]
    group.wait(5)
    assert other.poll() is None
