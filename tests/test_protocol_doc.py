"""Every snippet in docs/protocol.md runs, against a real gearmand and a real worker, with
the language's own client (the C gearman CLI, PHP's gearman extension, Perl's
Gearman::Client, which scripts/setup.sh installs)."""
import os
import pathlib
import re
import shutil
import subprocess

import pytest

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
RUNNERS = {"sh": ["bash", "-c"], "php": ["php", "-r"], "perl": ["perl", "-e"]}
EXPECTED = ["hello\n", "SHOUT", "ok from php\n", "ok from perl\n"]


def snippets():
    return [(lang, code) for lang, code in
            re.findall(r"```(sh|php|perl)\n(.*?)```", DOC.read_text(), re.S)]


def test_the_doc_has_the_snippets_this_test_expects():
    assert [lang for lang, _ in snippets()] == ["sh", "sh", "php", "perl"]


@pytest.mark.parametrize("index", range(4))
def test_each_snippet_runs_and_prints_what_the_worker_answered(gearmand, start_workers,
                                                               index):
    lang, code = snippets()[index]
    binary = RUNNERS[lang][0]
    if shutil.which(binary) is None:
        pytest.fail(f"{binary} is not installed (scripts/setup.sh installs it)")
    start_workers([gearmand.address], {"say": {"shell": "echo {word}"},
                                       "upper": {"command": ["tr", "a-z", "A-Z"],
                                                 "stdin": "data"}})
    if lang == "php":
        code = code.removeprefix("<?php\n")
    proc = subprocess.run([*RUNNERS[lang], code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PORT": str(gearmand.port)})
    assert proc.returncode == 0, proc.stderr
    output = proc.stdout
    if index == 0:  # the C client prints the result object
        output = __import__("json").loads(output)["stdout"]
    assert output == EXPECTED[index], (proc.stdout, proc.stderr)


def test_the_signing_snippet_signs_a_job_a_keyed_worker_runs(gearmand, start_workers,
                                                             tmp_path):
    (code,) = re.findall(r"```php-signed\n(.*?)```", DOC.read_text(), re.S)
    key = tmp_path / "fleet.key"
    key.write_text(os.urandom(32).hex() + "\n")
    key.chmod(0o600)
    worker = start_workers([gearmand.address], {"say": {"shell": "echo {word}"}},
                           extra_config={"security": {"key_file": str(key)}})
    proc = subprocess.run(["php", "-r", code.removeprefix("<?php\n")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PORT": str(gearmand.port),
                                                      "KEY_FILE": str(key)})
    assert (proc.returncode, proc.stdout) == (0, "signed\n"), (proc.stdout, proc.stderr)
    assert "refused" not in worker.log()
