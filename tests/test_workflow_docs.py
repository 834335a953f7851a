"""The workflows page's examples, run as written against a real gearmand and worker with
the page's own functions (its first config block)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

PAGE = Path(__file__).resolve().parent.parent / "docs" / "workflows.md"
BIN = os.path.dirname(sys.executable)


def blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", PAGE.read_text(), re.S)


def test_the_workflow_page_examples_run(gearmand, start_workers, tmp_path):
    config = yaml.safe_load(blocks("yaml")[0])
    store = {"store": {"url": f"sqlite:///{tmp_path / 'ledger.sqlite'}"}}
    start_workers([gearmand.address], config["functions"], threads=3, extra_config=store)
    folder = tmp_path / "here"
    folder.mkdir()
    (folder / "config.yaml").write_text(yaml.safe_dump(
        {**config, **store, "servers": [gearmand.address]}))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    out = subprocess.run(["sh", "-ec", blocks("sh")[0]], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "2\n14\n" + "".join(f"backed up db{n}\n" for n in (1, 2, 3))
    out = subprocess.run([sys.executable, "-c", blocks("python")[0]], cwd=folder, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "2\n14\n"
