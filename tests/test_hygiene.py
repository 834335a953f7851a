"""The group ledger and the keeper, against real process groups."""
import os
import signal
import subprocess
import time

from worker_client.hygiene import GroupLedger, Keeper
from worker_client.procfs import boot_ticks, proc_stat

from .helpers import wait_for


def _group_leader():
    """A `sleep` in a session of its own (its pid is its process group)."""
    ticks = boot_ticks()
    proc = subprocess.Popen(["sleep", "30"], start_new_session=True)
    return proc, ticks


def _alive(proc):
    return proc.poll() is None


def test_keeper_kills_recorded_groups_and_skips_a_torn_line(tmp_path):
    recorded, torn = _group_leader(), _group_leader()
    try:
        ledger = GroupLedger(str(tmp_path))
        ledger.claim()
        ledger.add(recorded[0].pid, recorded[1])
        ledger.add(torn[0].pid, torn[1])
        # What a SIGKILL in the middle of the second store could leave behind:
        offset = ledger._slots[torn[0].pid]
        ledger._map[offset:offset + GroupLedger.SLOT] = (
            f"{torn[0].pid} {torn[1]}".encode().ljust(GroupLedger.SLOT - 1) + b"\n")
        keeper = Keeper(str(tmp_path))
        keeper.release()  # the pipe closes as when the worker dies
        wait_for(lambda: not _alive(recorded[0]), 5, "the keeper to kill the recorded group")
        time.sleep(0.2)
        assert _alive(torn[0]), "a torn ledger line must never be taken for a group"
    finally:
        for proc, _ in (recorded, torn):
            if _alive(proc):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_sweep_kills_a_dead_workers_groups_but_not_a_reused_pid(tmp_path):
    group, other = _group_leader(), _group_leader()
    try:
        previous = GroupLedger(str(tmp_path))
        previous.claim()
        previous.add(group[0].pid, group[1])
        # a line whose recorded start time is not its leader's: the pid was reused
        previous.add(other[0].pid, proc_stat(other[0].pid)[3] - 1000)
        with open(os.path.join(str(tmp_path), "owner"), "w") as handle:
            handle.write("999999999 1\n")  # the previous owner is gone
        killed = GroupLedger(str(tmp_path)).sweep_previous()
        assert killed == [group[0].pid]
        group[0].wait(5)
        assert _alive(other[0])
    finally:
        for proc, _ in (group, other):
            if _alive(proc):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
