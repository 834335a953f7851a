"""deploy/prometheus: the alert rules pass their promtool unit tests (and a changed rule
fails them), and a real Prometheus scrapes `runadmin exporter` and a worker's
`--metrics`, evaluates the recording rules and answers through its HTTP API."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
import yaml

from gearman_frame.daemons.gearmand import free_port

from .helpers import wait_for
from .worker_helpers import send, send_background

BIN = os.path.dirname(sys.executable)
RULES = os.path.join(os.path.dirname(__file__), "..", "deploy", "prometheus")
needs_promtool = pytest.mark.needs_tool("promtool")


def promtool(*args, cwd=RULES):
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd)


@needs_promtool
def test_every_alert_has_a_promtool_test_and_they_pass(tmp_path):
    checked = promtool("check", "rules", "gearman-frame.rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "tests.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    rules = yaml.safe_load(open(os.path.join(RULES, "gearman-frame.rules.yml")))
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load(open(os.path.join(RULES, "tests.yml")))
    tested_alerts = {case["alertname"] for t in tests["tests"]
                     for case in t.get("alert_rule_test", ())}
    assert alerts == tested_alerts and len(alerts) == 6
    # the tests bite: a threshold moved makes them fail
    for old, new in (("gearman_frame_server_up == 0", "gearman_frame_server_up == 2"),
                     ("increase(gearman_frame_worker_process_deaths_total[10m]) >= 3",
                      "increase(gearman_frame_worker_process_deaths_total[10m]) >= 30"),
                     ('status!~"ok|cancelled"', 'status!~"ok"')):
        shutil.copy(os.path.join(RULES, "tests.yml"), tmp_path / "tests.yml")
        text = open(os.path.join(RULES, "gearman-frame.rules.yml")).read()
        assert old in text
        (tmp_path / "gearman-frame.rules.yml").write_text(text.replace(old, new))
        broken = promtool("test", "rules", "tests.yml", cwd=tmp_path)
        assert broken.returncode != 0 and "FAILED" in broken.stdout + broken.stderr, new


def query(port, expression):
    """The vector a PromQL query returns through Prometheus's HTTP API."""
    url = (f"http://127.0.0.1:{port}/api/v1/query?"
           + urllib.parse.urlencode({"query": expression}))
    with urllib.request.urlopen(url, timeout=10) as reply:
        answer = json.loads(reply.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def number(port, expression, **labels):
    for sample in query(port, expression):
        if all(sample["metric"].get(k) == v for k, v in labels.items()):
            return float(sample["value"][1])
    return None


@needs_promtool
def test_a_real_prometheus_scrapes_the_exporter_and_a_worker(gearmand, start_workers,
                                                            tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "prometheus is not installed (scripts/setup.sh installs it)"
    metrics, exporter_port, web = free_port(), free_port(), free_port()
    worker = start_workers([gearmand.address], {"judge": {"shell": "exit {code}"}},
                           name="scraped", threads=1,
                           extra_args=["--metrics", f"127.0.0.1:{metrics}"])
    exporter = subprocess.Popen([os.path.join(BIN, "runadmin"), "--servers",
                                 gearmand.address, "exporter", "--listen",
                                 f"127.0.0.1:{exporter_port}", "--interval", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [os.path.abspath(os.path.join(RULES, "gearman-frame.rules.yml"))],
        "scrape_configs": [
            {"job_name": "gearmand", "static_configs": [
                {"targets": [f"127.0.0.1:{exporter_port}"]}]},
            {"job_name": "workers", "static_configs": [
                {"targets": [f"127.0.0.1:{metrics}"]}]}]}))
    server = subprocess.Popen([prometheus, "--config.file", str(tmp_path / "prometheus.yml"),
                              "--storage.tsdb.path", str(tmp_path / "tsdb"),
                              "--web.listen-address", f"127.0.0.1:{web}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert "exporter: http://" in exporter.stdout.readline()
        for code in (0, 0, 0, 4):
            send([gearmand.address], "judge", code=code)
        for i in range(3):
            send_background([gearmand.address], "nobody", n=i)  # no worker serves it
        # the worker's counts and the exporter's gauges, read back from Prometheus
        wait_for(lambda: number(web, "gearman_frame_jobs_total", function="judge",
                                status="ok") == 3, 30, "3 ok jobs in Prometheus")
        assert number(web, "gearman_frame_jobs_total", function="judge",
                      status="failed") == 1
        assert number(web, "gearman_frame_worker_process_deaths_total") == 0
        # the exporter is another target, scraped on its own schedule
        wait_for(lambda: number(web, "gearman_frame_server_up",
                                server=gearmand.address) == 1, 30, "the exporter's scrape")
        # the recording rules ran on what was scraped
        wait_for(lambda: number(web, "gearman_frame:queued:sum", function="nobody") == 3,
                 30, "the recording rule's queued sum")
        wait_for(lambda: number(web, "gearman_frame:workers:sum", function="judge") == 1,
                 30, "the recording rule's worker sum")
        # a worker process that dies is counted (the crash-loop alert's series)
        (pid,) = re.findall(r"process .*started \(pid (\d+)\)", worker.log())
        os.kill(int(pid), signal.SIGKILL)
        wait_for(lambda: number(web, "gearman_frame_worker_process_deaths_total") == 1, 30,
                 "the death counted in Prometheus")
    finally:
        server.terminate()
        exporter.terminate()
        server.wait(10)
        exporter.wait(10)
