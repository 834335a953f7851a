"""Few file descriptors: a worker refuses to start when it cannot hold its connections and
a command's pipes (exit 2, naming the limit it needs); given enough, it answers every job
it takes, and a job it cannot run for want of descriptors gets a result naming EMFILE,
with no traceback in its log."""
from .helpers import wait_for
from .worker_helpers import send

HOG = '''
"""A task that leaks descriptors until the process has none left (a buggy plugin)."""
import os

from gearman_frame.tasks import task

HELD = []


@task("hog")
def hog():
    try:
        while True:
            HELD.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        return len(HELD)
'''


def test_too_few_descriptors_is_one_line_and_exit_2(gearmand, start_workers):
    worker = start_workers([gearmand.address], {"t": {"command": ["true"]}}, threads=4,
                           nofile=24, ready=False)
    assert worker.proc.wait(30) == 2
    lines = [line for line in worker.log().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in worker.log(), worker.log()
    assert "needs at least 45 open files" in lines[0] and "only 24" in lines[0], lines[0]


def test_with_just_enough_descriptors_every_job_is_answered(gearmand, start_workers):
    worker = start_workers([gearmand.address], {"t": {"command": ["true"]}}, threads=1,
                           nofile=24)
    results = [send([gearmand.address], "t") for _ in range(20)]
    assert [r.status for r in results] == ["ok"] * 20
    assert "Traceback" not in worker.log()


def test_a_job_run_out_of_descriptors_gets_emfile_and_no_traceback(gearmand, start_workers,
                                                                  tmp_path):
    plugins = tmp_path / "hogplugin"
    plugins.mkdir()
    (plugins / "hogtasks.py").write_text(HOG)
    worker = start_workers([gearmand.address], {"t": {"command": ["true"]}}, threads=1,
                           plugins=["hogtasks"], pythonpath=plugins, nofile=64)
    assert send([gearmand.address], "hog").ok
    result = send([gearmand.address], "t")
    assert result.status == "error" and "EMFILE" in result.error, result.error
    wait_for(lambda: "EMFILE" in worker.log(), 10, "the failure logged")
    assert "Traceback" not in worker.log(), worker.log()
