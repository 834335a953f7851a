"""The installed `runworkers` command: exit codes, one-line errors, traceable log lines."""
import subprocess

from gearman_frame.daemons.gearmand import free_port

from .worker_helpers import RUNWORKERS, WorkerProcess, send


def run(args, cwd, timeout=30):
    return subprocess.run([RUNWORKERS, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd)


def test_bad_config_exits_2_with_one_line(tmp_path):
    (tmp_path / "config.yaml").write_text("worker: {threads: -1}\n")
    proc = run(["--config", "config.yaml"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "worker.threads" in proc.stderr


def test_unknown_function_flag_exits_2(tmp_path):
    (tmp_path / "config.yaml").write_text("functions: {a: {command: ['true']}}\n")
    proc = run(["--config", "config.yaml", "--functions", "a,nope"], tmp_path)
    assert proc.returncode == 2 and "unknown function(s) nope" in proc.stderr


def test_plugin_that_fails_to_import_exits_2(tmp_path):
    (tmp_path / "config.yaml").write_text("plugins: [no_such_plugin_module]\n")
    proc = run(["--config", "config.yaml"], tmp_path)
    assert proc.returncode == 2 and "plugins[0]" in proc.stderr


def test_no_reachable_server_exits_3(tmp_path):
    worker = WorkerProcess(tmp_path, [f"127.0.0.1:{free_port()}"], {"a": {"command": ["true"]}})
    worker.config.write_text(worker.config.read_text().replace("startup_timeout: 5",
                                                               "startup_timeout: 1"))
    assert worker.proc.wait(30) == 3
    assert "no job server reachable" in worker.log()


def test_log_lines_carry_worker_function_and_job_id(gearmand, start_workers):
    worker = start_workers([gearmand.address], {"echo": {"command": ["echo", "{w}"]}},
                           name="tracer", threads=3)
    result = send([gearmand.address], "echo", w="x")
    line = next(l for l in worker.log().splitlines() if "running (timeout" in l)
    assert f" echo {result.id} " in line and " tracer." in line
