"""Config loading and validation: each bad input is one line naming file, key and expectation."""
import subprocess
import sys
import textwrap

import pytest

from gearman_frame.addresses import ServerAddress
from gearman_frame.config import load_config
from gearman_frame.errors import ConfigError


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_for(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path)), message
    return message


def test_example_config_loads_every_section():
    config = load_config("config.yaml", environ={})
    assert config.servers == (ServerAddress("127.0.0.1", 4730),)
    assert config.functions["compress"].command == ("gzip", "-k", "{path}")
    assert config.functions["compress"].fields == {"path"}
    assert config.functions["compress"].retry.retries == 2
    assert config.functions["cat_data"].stdin == "data"
    assert config.worker.threads >= 1


def test_defaults_when_no_file_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, environ={})
    assert config.path is None
    assert config.servers == (ServerAddress("127.0.0.1", 4730),)
    assert config.client.resend == 3


@pytest.mark.parametrize("text, key, expected", [
    ("serverz: []\n", "serverz", "did you mean 'server' or 'servers'"),
    ("client: {timout: 3}\n", "client.timout", "did you mean 'timeout'"),
    ("client: {timeout: -1}\n", "client.timeout", "a number >= 0"),
    ("client: {timeout: soon}\n", "client.timeout", "a number >= 0"),
    ("client: {resend: 1.5}\n", "client.resend", "a whole number >= 0"),
    ("worker: {threads: 0}\n", "worker.threads", "a whole number >= 1"),
    ("worker: {name: '{host}'}\n", "worker.name", "{hostname} and {pid}"),
    ("servers: ['127.0.0.1:99999']\n", "servers[0]", "a port from 1 to 65535"),
    ("servers: ['']\n", "servers[0]", "host:port"),
    ("servers: []\n", "servers", "a non-empty list"),
    ("logging: {format: xml}\n", "logging.format", "one of text, json"),
    ("logging: {level: LOUD}\n", "logging.level", "one of DEBUG"),
    ("plugins: ['not a module']\n", "plugins[0]", "a dotted module name"),
    ("functions: {f: {command: [a], shell: b}}\n", "functions.f", "either 'command' or 'shell'"),
    ("functions: {f: {command: 'gzip x'}}\n", "functions.f.command", "list of strings"),
    ("functions: {f: {command: ['{0}']}}\n", "functions.f.command", "plain '{name}' field"),
    ("functions: {f: {shell: 'echo {a.b}'}}\n", "functions.f.shell", "plain '{name}' field"),
    ("functions: {f: {shell: 'echo {x'}}\n", "functions.f.shell", "balanced braces"),
    ("functions: {f: {command: [x], timeout: -5}}\n", "functions.f.timeout", "a number >= 0"),
    ("functions: {f: {command: [x], retries: -1}}\n", "functions.f.retries", ">= 0"),
    ("functions: {f: {command: [x], backoff: 0.5}}\n", "functions.f.backoff", ">= 1"),
    ("functions: {f: {command: [x], stdin: file}}\n", "functions.f.stdin", "one of data"),
    ("functions: {f: {command: [x], comand: [y]}}\n", "functions.f.comand", "did you mean 'command'"),
    ("functions: {__ctl__x: {command: [x]}}\n", "functions.__ctl__x", "reserved"),
    ("functions: {f: {command: [x], env: {A: 1}}}\n", "functions.f.env", "strings to strings"),
])
def test_bad_values_name_key_and_expectation(tmp_path, text, key, expected):
    message = error_for(tmp_path, text)
    assert f": {key}: " in message, message
    assert expected in message, message


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    message = error_for(tmp_path, "servers: ['a'\nworker: {threads: 2}\n")
    assert "YAML syntax error" in message
    # the mapping the flow sequence never closed ends on line 2, where PyYAML stops
    assert "config.yaml:2:1:" in message, message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_function_without_command_must_be_a_task(tmp_path):
    config = load_config(write(tmp_path, "functions: {report: {timeout: 5}}\n"), environ={})
    config.check_tasks({"report"})
    with pytest.raises(ConfigError, match=r"functions\.report: expected 'command', 'shell'"):
        config.check_tasks(set())


def test_env_overrides_file_and_cli_overrides_env(tmp_path):
    path = write(tmp_path, "servers: ['127.0.0.1:1111']\n")
    env = {"GEARMAN_FRAME_CONFIG": str(path), "GEARMAN_FRAME_SERVERS": "127.0.0.2:2222,h:3"}
    config = load_config(None, environ=env)
    assert config.path == str(path)
    assert config.servers == (ServerAddress("127.0.0.2", 2222), ServerAddress("h", 3))
    with pytest.raises(ConfigError, match=r"\$GEARMAN_FRAME_SERVERS"):
        load_config(None, environ={**env, "GEARMAN_FRAME_SERVERS": "h:0"})


def test_relative_paths_resolve_beside_the_config(tmp_path):
    config = load_config(write(tmp_path, "client: {outbox: var/o.sqlite}\n"), environ={})
    assert config.resolve(config.client.outbox) == str(tmp_path / "var" / "o.sqlite")


def test_cli_prints_one_line_and_exits_2_without_traceback(tmp_path):
    path = write(tmp_path, "functions: {f: {command: [x], timeout: -5}}\n")
    proc = subprocess.run([sys.executable, "-m", "gearman_frame", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "functions.f.timeout" in lines[0] and str(path) in lines[0]


def test_cli_rejects_bad_servers_flag(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "gearman_frame", "check", "--servers", "a:b"],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert proc.returncode == 2
    assert "--servers" in proc.stderr and "port" in proc.stderr
