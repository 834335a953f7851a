"""Bad input through every CLI: one line naming what is wrong, the documented exit code,
and nothing executed that should not be."""
import os
import subprocess
import sys

import pytest
import yaml

BIN = os.path.dirname(sys.executable)
CLIS = ("runworkers", "sendjob run f", "runadmin status")

BAD_CONFIGS = {
    "unknown key": ("workerz: {}\n", "workerz"),
    "wrong type": ("client: {resend: many}\n", "client.resend"),
    "negative timeout": ("functions: {f: {command: [x], timeout: -1}}\n", "functions.f.timeout"),
    "bad address": ("servers: ['127.0.0.1:0']\n", "servers[0]"),
    "both command and shell": ("functions: {f: {command: [x], shell: y}}\n", "functions.f"),
    "bad field": ("functions: {f: {shell: 'echo {a-b}'}}\n", "functions.f.shell"),
    "yaml syntax": ("functions: {f: [\n", "YAML syntax error"),
}


def run(argv, cwd, timeout=60):
    return subprocess.run([os.path.join(BIN, argv[0]), *argv[1:]], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd)


def one_line(proc):
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("cli", CLIS)
@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_is_one_line_and_exit_2_in_every_cli(tmp_path, cli, case):
    text, key = BAD_CONFIGS[case]
    (tmp_path / "config.yaml").write_text(text)
    proc = run([*cli.split()[:1], "--config", "config.yaml", *cli.split()[1:]], tmp_path)
    assert proc.returncode == 2
    line = one_line(proc)
    assert "config.yaml" in line and key in line


@pytest.fixture
def setup(gearmand, start_workers, tmp_path):
    config = tmp_path / "config.yaml"
    functions = {"argv": {"command": ["printf", "%s", "{v}"]},
                 "quoted": {"shell": "printf %s {v}"}}
    config.write_text(yaml.safe_dump({"servers": [gearmand.address],
                                      "client": {"timeout": 0.5, "resend": 0},
                                      "functions": functions}))
    worker = start_workers([gearmand.address], functions)
    return tmp_path, worker


@pytest.mark.parametrize("argv, code, text", [
    (["sendjob", "run", "argv", "no_equals"], 2, "expected key=value"),
    (["sendjob", "run", "argv", "v={broken"], 2, "looks like JSON"),
    (["sendjob", "run", "argv", "v=1", "v=2"], 2, "given twice"),
    (["sendjob", "run", "argv", "--priority", "urgent"], 2, "invalid choice"),
    (["sendjob", "run", "nobody_serves_this"], 1, "nobody_serves_this"),
    (["sendjob", "run", "argv"], 1, "missing template field(s): v"),
    (["sendjob", "run", "argv", "v=1", "w=2"], 1, "not in the template: w"),
    (["sendjob", "plugin", "no_such_plugin"], 2, "unknown plugin"),
    (["sendjob", "--servers", "host:port", "flush"], 2, "--servers"),
    (["runadmin", "shutdown", "nobody"], 1, "no worker named 'nobody'"),
    (["runadmin", "resend", "/no/such/dump"], 2, "cannot read dump file"),
    (["runadmin", "cancel", "H:none"], 1, "UNKNOWN_JOB"),
    (["runworkers", "--functions", "nope"], 2, "unknown function(s) nope"),
])
def test_bad_command_lines(setup, argv, code, text):
    folder, _worker = setup
    proc = run([argv[0], "--config", "config.yaml", *argv[1:]], folder)
    assert proc.returncode == code, proc.stderr
    assert text in proc.stderr.splitlines()[-1], proc.stderr


def test_malformed_dump_line_names_file_and_line(setup):
    folder, _worker = setup
    (folder / "dump.jsonl").write_text('{"function": "f", "unique": "u", "data": "", '
                                       '"background": true}\nnot json\n')
    proc = run(["runadmin", "--config", "config.yaml", "resend", "dump.jsonl"], folder)
    # the good line goes back, the bad one is named with its number, exit 1
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "dump.jsonl:2: bad line" in proc.stderr and "resent 1 job(s)" in proc.stdout
    strict = run(["runadmin", "--config", "config.yaml", "--log-level", "ERROR", "resend",
                  "dump.jsonl", "--strict"], folder)
    assert strict.returncode == 1 and "--strict sends nothing" in strict.stderr


@pytest.mark.parametrize("value", ["; touch pwned", "$(touch pwned)", "`touch pwned`",
                                   "x\ntouch pwned", "x' ; touch pwned; '", "&& touch pwned"])
def test_injection_strings_are_data_never_code(setup, value):
    folder, worker = setup
    for function in ("argv", "quoted"):
        proc = run(["sendjob", "--config", "config.yaml", "run", function, f"v={value}",
                    "--timeout", "10"], folder)
        assert proc.returncode == 0 and proc.stdout == value, proc.stderr
    assert not (folder / "pwned").exists() and not (worker.folder / "pwned").exists()
