"""The wheel works outside the checkout: built from a clean clone, installed into a fresh
virtualenv, and run in an empty folder as the README's quick start does (`runadmin init`,
a gearmand, a worker, a job in the foreground and one in the background, status and
inspect), with nothing of the checkout on the path. The one change: a free port for the
gearmand instead of 4730, which another gearmand of the machine may hold."""
import os
import subprocess
import sys
import time

from gearman_frame.daemons.gearmand import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(argv, cwd, env=None, timeout=300):
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{argv}: {proc.stdout}\n{proc.stderr}"
    return proc


def test_the_wheel_from_a_clean_clone_runs_a_job_in_an_empty_folder(tmp_path):
    clone, dist, venv = (tmp_path / n for n in ("clone", "dist", "venv"))
    run(["git", "clone", "--quiet", ROOT, str(clone)], tmp_path)
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(dist), str(clone)], tmp_path)
    (wheel,) = dist.glob("gearman_frame-*.whl")
    run([sys.executable, "-m", "venv", str(venv)], tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
         str(wheel)], tmp_path, env)
    (tmp_path / "empty").mkdir()
    bin_ = venv / "bin"
    version = run([str(bin_ / "sendjob"), "--version"], tmp_path / "empty", env)
    assert version.stdout.strip().startswith("sendjob (gearman-frame) ")
    port = free_port()
    started = run([str(bin_ / "runadmin"), "init", "mydeploy", "--port", str(port)],
                  tmp_path / "empty", env)
    home = tmp_path / "empty" / "mydeploy"
    assert "runworkers" in started.stdout and (home / "config.yaml").exists()
    run([str(bin_ / "runadmin"), "server", "start"], home, env)
    worker = subprocess.Popen([str(bin_ / "runworkers")], cwd=home, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        said = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the worker's log, until it serves
            line = worker.stdout.readline()
            said.append(line)
            if " ready: " in line or not line:
                break
        assert any(" ready: " in line for line in said), "".join(said)
        hello = run([str(bin_ / "sendjob"), "run", "hello", "name=you"], home, env,
                    timeout=60)
        assert hello.stdout == "hello you\n"
        queued = run([str(bin_ / "sendjob"), "run", "hello", "name=later", "--background"],
                     home, env)
        assert queued.stdout.startswith("H:")
        status = run([str(bin_ / "runadmin"), "status"], home, env)
        assert "hello" in status.stdout
        inspected = run([str(bin_ / "runadmin"), "inspect", "--all"], home, env)
        assert ": pid " in inspected.stdout
        # it ran from the installed package, not from a checkout
        where = run([str(bin_ / "python"), "-c",
                     "import gearman_frame, sys; print(gearman_frame.__file__)"], home, env)
        assert where.stdout.startswith(str(venv)), where.stdout
    finally:
        worker.terminate()
        worker.wait(30)
        stopped = run([str(bin_ / "runadmin"), "server", "stop"], home, env)
    assert "stopped" in stopped.stdout
