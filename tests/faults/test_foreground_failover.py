"""A foreground job whose server dies while the job runs: resent to the next server, its
result still reaches the sender; with every server gone, an error that names each one
(real gearmand processes killed with SIGKILL, a real worker on both)."""
import threading

from gearman_frame.errors import JobTimeout, ServerUnavailable
from manage_client.admin import AdminClient
from gearman_frame.addresses import parse_address
from send_job_client import JobClient

from ..client_helpers import client_config, ledger_lines
from ..helpers import wait_for
from .test_nothing_lost import start_recorder


def running_on(servers, function):
    """The server whose queue shows ``function`` running now, if one does."""
    for server in servers:
        try:
            with AdminClient([parse_address(server.address)]) as admin:
                if any(r.function == function and r.running for r in admin.status()):
                    return server
        except Exception:  # noqa: BLE001 - a server down shows nothing running
            continue
    return None


def submit_in_thread(config, *args, **kwargs):
    outcome = []

    def run():
        try:
            with JobClient(config) as client:
                outcome.append(client.submit(*args, **kwargs))
        except (JobTimeout, ServerUnavailable) as err:
            outcome.append(err)
    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_a_job_whose_server_dies_mid_run_is_resent_to_the_next_server(
        make_gearmand, start_workers, plugin_dir, tmp_path):
    servers = [make_gearmand(), make_gearmand()]
    start_recorder(start_workers, [s.address for s in servers], plugin_dir, threads=2)
    _path, config = client_config(tmp_path, [s.address for s in servers], timeout=30,
                                  resend=3)
    ledger = tmp_path / "ledger"
    thread, outcome = submit_in_thread(config, "record", str(ledger), "w", sleep=2)
    holder = wait_for(lambda: running_on(servers, "record"), 10, "the job running")
    holder.kill()  # its connection to the sender and the worker is gone mid-job
    thread.join(60)
    assert outcome and not isinstance(outcome[0], Exception), outcome
    result = outcome[0]
    assert result.ok and result.value == "w"
    # it ran again through the other server (the first run's may finish too: at least once)
    other = [s for s in servers if s is not holder][0]
    assert 1 <= len(ledger_lines(ledger)) <= 2 and set(ledger_lines(ledger)) == {"w"}
    assert running_on([other], "record") is None  # done there


def test_every_server_gone_mid_job_is_an_error_naming_each(make_gearmand, start_workers,
                                                           plugin_dir, tmp_path):
    servers = [make_gearmand(), make_gearmand()]
    start_recorder(start_workers, [s.address for s in servers], plugin_dir, threads=2)
    _path, config = client_config(tmp_path, [s.address for s in servers], timeout=30,
                                  resend=2)
    thread, outcome = submit_in_thread(config, "record", str(tmp_path / "ledger"), "w",
                                       sleep=5)
    wait_for(lambda: running_on(servers, "record"), 10, "the job running")
    for server in servers:
        server.kill()
    thread.join(60)
    assert outcome and isinstance(outcome[0], (JobTimeout, ServerUnavailable)), outcome
    said = str(outcome[0])
    assert all(server.address in said for server in servers), said
