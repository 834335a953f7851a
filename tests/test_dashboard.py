"""`runadmin web`, driven in a real browser (Debian's chromium through selenium) against
real gearmand, workers and senders: what it shows, its resend button, and its token."""
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
import yaml

from .browser import browser  # noqa: F401 (a fixture)
from .helpers import queued, wait_for
from .web_helpers import serving
from .worker_helpers import send_background

BIN = os.path.dirname(sys.executable)


def _status(server):
    out = subprocess.run([os.path.join(BIN, "runadmin"), "--servers", server.address,
                          "status", "--json"], capture_output=True, text=True, timeout=30)
    return {row["function"]: row for row in json.loads(out.stdout)}


def test_the_dashboard_shows_the_fleet_and_resends_a_dead_letter(gearmand, start_workers,
                                                                  tmp_path, browser):
    from selenium.webdriver.common.by import By

    folder = tmp_path / "admin"
    folder.mkdir()
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump({
        "servers": [gearmand.address],
        "client": {"result_store": "results.sqlite", "timeout": 10}}))
    start_workers([gearmand.address], {"slow": {"command": ["sleep", "20"], "timeout": 60},
                                       "failing": {"shell": "echo broke >&2; exit 3"}},
                  name="dash", threads=2)
    flake = start_workers([gearmand.address], {"flaky": {"shell": "exit 5"}}, name="flake",
                          threads=1)
    for i in range(3):
        send_background([gearmand.address], "nobody", n=i)  # no worker: stays queued
    send_background([gearmand.address], "slow")
    failed = subprocess.run([os.path.join(BIN, "sendjob"), "--config", str(config), "run",
                             "failing"], capture_output=True, text=True, timeout=30)
    assert failed.returncode == 1
    send_background([gearmand.address], "flaky")
    wait_for(lambda: queued(gearmand, "__dead__.flaky") == 1, 10, "a dead letter")
    flake.stop()  # so that the resent job waits in its queue, where status shows it

    with serving(config, cwd=folder) as url:
        browser.get(url + "/")

        def shown(selector, text=None):
            found = browser.find_elements(By.CSS_SELECTOR, selector)
            return [e for e in found if text is None or text in e.text]
        # a queued function, with its count
        wait_for(lambda: shown('tr[data-function="nobody"] td.queued', "3"), 15,
                 "the queued function")
        # a running job, with the worker process running it
        wait_for(lambda: shown("#hosts .job", "slow"), 15, "the running job")
        assert "on dash" in shown("#hosts .job", "slow")[0].text
        # a failure, from the result store
        wait_for(lambda: shown("#failures tr", "failing"), 15, "the failure")
        assert "failed" in shown("#failures tr", "failing")[0].text
        # resend a dead letter: it is back in its function's queue
        button = wait_for(lambda: shown('button.resend[data-target="flaky"]'), 15,
                          "the resend button")[0]
        browser.execute_script("window.confirm = () => true;")
        button.click()
        wait_for(lambda: _status(gearmand).get("flaky", {}).get("queued") == 1, 15,
                 "the job back in its queue")
        assert _status(gearmand).get("__dead__.flaky", {}).get("queued", 0) == 0
        # a state-changing request without the token is refused
        refused = urllib.request.Request(f"{url}/api/clear",
                                         data=b'{"target": "nobody"}', method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(refused, timeout=10)
        assert err.value.code == 403
        assert queued(gearmand, "nobody") == 3  # nothing was cleared


def test_the_dashboard_needs_a_token_off_loopback(gearmand, tmp_path):
    out = subprocess.run([os.path.join(BIN, "runadmin"), "--servers", gearmand.address,
                          "web", "--listen", "0.0.0.0:8088"], capture_output=True, text=True,
                         timeout=30, cwd=tmp_path)
    # a usage error (exit 2, one line), refused before anything listens
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and len(lines) == 1 and "needs --token-file" in lines[0], \
        out.stderr
