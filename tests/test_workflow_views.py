"""Workflows as operators see them: `sendjob status WF_ID`, `runadmin workflows` and the
dashboard (in Chromium), read from the ledger with another host's config."""
import json
import os
import subprocess
import sys

import yaml

from .browser import browser  # noqa: F401 (a fixture)
from .client_helpers import client_config, sendjob
from .helpers import wait_for
from .web_helpers import serving

BIN = os.path.dirname(sys.executable)


def runadmin(config, *args):
    return subprocess.run([os.path.join(BIN, "runadmin"), "--config", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def test_running_and_ended_workflows_are_listed_by_runadmin_and_the_dashboard(
        gearmand, start_workers, tmp_path, browser):
    from selenium.webdriver.common.by import By
    store = {"store": {"url": f"sqlite:///{tmp_path / 'ledger.sqlite'}"}}
    start_workers([gearmand.address], {"quick": {"command": ["echo", "quick"]},
                                       "slow": {"command": ["sleep", "30"], "timeout": 60}},
                  threads=2, extra_config=store)
    config, _ = client_config(tmp_path / "sender", [gearmand.address], **store)
    done = sendjob(config, "chain", "quick", "quick", "--json")
    assert done.returncode == 0, done.stderr
    finished = json.loads(done.stdout)["workflow"]
    running = sendjob(config, "chain", "quick", "slow", "quick", "--background")
    running = running.stdout.strip()
    assert running.startswith("wf-")
    # another host's view: a config of its own, the same ledger
    admin, _ = client_config(tmp_path / "admin", [gearmand.address], **store)
    wait_for(lambda: "running" in sendjob(admin, "status", running).stdout, 15,
             "the slow step to run")
    listed = runadmin(admin, "workflows").stdout.splitlines()
    assert [line.split()[:4] for line in listed] == [
        [running, "chain", "running", "1/3"], [finished, "chain", "ok", "2/2"]]
    assert runadmin(admin, "workflows", "--running").stdout.split()[0] == running
    steps = runadmin(admin, "workflows", running).stdout.splitlines()
    assert "chain running: 1/3 steps ended" in steps[0]
    assert [line.split()[1:3] for line in steps[1:]] == [["quick", "ok"], ["slow", "running"],
                                                         ["quick", "waiting"]]
    shown = json.loads(runadmin(admin, "workflows", finished, "--json").stdout)
    assert shown["state"] == "ok" and shown["steps_ended"] == 2

    folder = tmp_path / "web"
    folder.mkdir()
    web_config = folder / "config.yaml"
    web_config.write_text(yaml.safe_dump({"servers": [gearmand.address], **store}))
    with serving(web_config, cwd=folder) as url:
        browser.get(url + "/")

        def row(workflow):
            found = browser.find_elements(By.CSS_SELECTOR, f'tr[data-workflow="{workflow}"]')
            return found[0].text if found else ""
        wait_for(lambda: "running" in row(running), 15, "the running workflow")
        assert "1/3" in row(running) and "2:slow running" in row(running)
        assert "ok" in row(finished) and "2/2" in row(finished)


def test_workflow_views_without_a_ledger_say_so(gearmand, tmp_path):
    config, _ = client_config(tmp_path / "plain", [gearmand.address])
    out = runadmin(config, "workflows")
    assert out.returncode == 2 and "store.url is off: workflows live in the job ledger" \
        in out.stderr
    store = {"store": {"url": f"sqlite:///{tmp_path / 'ledger.sqlite'}"}}
    with_ledger, _ = client_config(tmp_path / "ledger", [gearmand.address], **store)
    out = runadmin(with_ledger, "workflows", "wf-0000")
    assert out.returncode == 2 and "no workflow wf-0000 in the ledger" in out.stderr
    out = sendjob(with_ledger, "status", "wf-0000")
    assert out.returncode == 0 and out.stdout == "id=wf-0000 state=unknown\n"
