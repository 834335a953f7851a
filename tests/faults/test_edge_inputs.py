"""Edge inputs through the public client: clear errors or exact round trips, never a hang."""
import hashlib
import os
import textwrap

import pytest

from gearman_frame.errors import BadRequest, ServerRefused
from manage_client.admin import AdminClient
from send_job_client import Job, JobClient

from ..client_helpers import client_config

DIGEST_TASK = textwrap.dedent('''
    import base64, hashlib
    from gearman_frame.tasks import task

    @task("digest")
    def digest(blob):
        return {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
''')


@pytest.fixture
def servers(gearmand, start_workers, tmp_path):
    folder = tmp_path / "plugins_here"
    folder.mkdir()
    (folder / "digesttask.py").write_text(DIGEST_TASK)
    start_workers([gearmand.address], {"echo_raw": {"command": ["cat"], "stdin": "data",
                                                "output_limit": "32MiB"}},
                  plugins=["digesttask"], pythonpath=folder)
    return [gearmand.address]


@pytest.mark.parametrize("size", [0, 1, 1 << 20, 16 << 20])
def test_large_and_binary_payloads_round_trip(servers, tmp_path, size):
    blob = os.urandom(size)
    _path, config = client_config(tmp_path, servers, timeout=60)
    with JobClient(config) as client:
        raw = client.submit("echo_raw", data=blob)
        digest = client.submit("digest", blob)
    assert raw.ok and raw.stdout == blob
    assert digest.value == {"size": size, "sha256": hashlib.sha256(blob).hexdigest()}


def test_all_256_byte_values_round_trip_raw_and_in_an_envelope(servers, tmp_path):
    blob = bytes(range(256)) * 3
    _path, config = client_config(tmp_path, servers)
    with JobClient(config) as client:
        assert client.submit("echo_raw", data=blob).stdout == blob
        assert client.submit("digest", blob).value["sha256"] == hashlib.sha256(blob).hexdigest()


def test_queue_full_is_refused_not_timed_out(gearmand, tmp_path):
    _path, config = client_config(tmp_path, [gearmand.address], timeout=30)
    with AdminClient(config.servers) as admin:
        admin.create_function("tight")
        admin.maxqueue("tight", 1)
    with JobClient(config) as client:
        assert client.submit_background("tight", n=1).handle.startswith("H:")
        with pytest.raises(ServerRefused, match="(?i)queue is full"):
            client.submit_background("tight", n=2)
        deliveries = client.submit_many([Job.of("tight", n=i) for i in range(3)],
                                        background=True)
    assert all(d.error and "full" in d.error.lower() for d in deliveries)


def test_oversized_unique_and_bad_priority_are_refused_before_sending(gearmand, tmp_path):
    _path, config = client_config(tmp_path, [gearmand.address])
    with JobClient(config) as client:
        with pytest.raises(BadRequest, match="63 bytes"):
            client.submit_many([Job("f", id="u" * 64)])
        with pytest.raises(ValueError, match="priority"):
            client.submit("f", priority="urgent")
