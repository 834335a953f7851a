"""Signed jobs against real gearmand and real workers, with the C `gearman` client as the
attacker: unsigned, wrongly signed, replayed and expired jobs run nothing; control jobs
need the key; keys rotate; raw interop is an explicit opt-out."""
import json
import os
import shutil
import subprocess
import time

import pytest

from gearman_frame.envelope import Request, Result, loads
from gearman_frame.signing import Keyring, read_key_file
from gearman_frame.wire import WireClient
from manage_client.drain import read_dump

from .client_helpers import client_config, sendjob
from .helpers import wait_for
from .test_admin import queued_total, runadmin

GEARMAN = shutil.which("gearman")
needs_c_client = pytest.mark.needs_tool("gearman")


def make_key(path, text=None):
    path.write_bytes(text or os.urandom(32).hex().encode() + b"\n")
    path.chmod(0o600)
    return path


def security(key, *older, max_age=300):
    return {"security": {"key_file": str(key), "accept_key_files": [str(k) for k in older],
                         "max_age": max_age}}


def touch_functions(marker_dir):
    """``touch`` writes a marker file per run: a job that runs leaves a trace."""
    return {"touch": {"command": ["sh", "-c", f'echo run >> {marker_dir}/"$0"', "{name}"]},
            "cat": {"command": ["cat"], "stdin": "data", "allow_unsigned": True},
            "cat_signed": {"command": ["cat"], "stdin": "data"}}


def runs(marker_dir, name):
    path = marker_dir / name
    return len(path.read_text().split()) if path.exists() else 0


def attacker(server, function, data, background=False):
    """The C client sending ``data`` as it is; its exit code and output."""
    args = [GEARMAN, "-h", server.host, "-p", str(server.port), "-f", function]
    proc = subprocess.run([*args, *(["-b"] if background else [])], input=data,
                          capture_output=True, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def fleet(gearmand, start_workers, tmp_path):
    key, marks = make_key(tmp_path / "fleet.key"), tmp_path / "marks"
    marks.mkdir()
    worker = start_workers([gearmand.address], touch_functions(marks),
                           extra_config=security(key))
    path, config = client_config(tmp_path / "sender", [gearmand.address], timeout=10,
                                 **security(key))
    return gearmand, worker, key, marks, path, config


@needs_c_client
def test_the_c_client_can_neither_stop_the_worker_nor_run_its_commands(fleet):
    server, worker, _key, marks, path, _config = fleet
    code, _out = attacker(server, "__ctl__.w0", b"shutdown")
    assert code != 0
    forged = json.dumps({"v": 1, "id": "f1", "kwargs": {"name": "forged"}}).encode()
    failed = WireClient([server.address]).submit("touch", forged, timeout=20)
    assert Result.decode(failed.data_updates[-1]).status == "refused"
    assert Result.decode(failed.data_updates[-1]).error == "unauthenticated job"
    code, _out = attacker(server, "touch", forged)
    assert code != 0 and runs(marks, "forged") == 0
    time.sleep(0.5)
    assert worker.proc.poll() is None and "control job" in worker.log()
    proc = sendjob(path, "run", "touch", "name=signed")  # the sender has the key
    assert proc.returncode == 0 and runs(marks, "signed") == 1, proc.stderr
    assert worker.log().count("worker_client.stages.admission: refused: unsigned") == 2
    assert runadmin(path, "shutdown", "w0").returncode == 0  # signed control works
    assert worker.proc.wait(20) == 0


@needs_c_client
def test_a_wrong_key_an_expired_job_and_a_replay_run_nothing(gearmand, start_workers,
                                                              tmp_path):
    key, marks = make_key(tmp_path / "fleet.key"), tmp_path / "marks"
    marks.mkdir()
    path, config = client_config(tmp_path / "sender", [gearmand.address], **security(key))
    # a signed job captured off the queue: sent while no worker serves it, drained
    assert sendjob(path, "run", "touch", "name=captured", "--background").returncode == 0
    dump = tmp_path / "dump"
    assert runadmin(path, "clear", "touch", "--dump", str(dump)).returncode == 0
    (captured,), _bad = read_dump(dump)
    worker = start_workers([gearmand.address], touch_functions(marks),
                           extra_config=security(key))
    wrong, _ = client_config(tmp_path / "wrong", [gearmand.address],
                             **security(make_key(tmp_path / "wrong.key")))
    proc = sendjob(wrong, "run", "touch", "name=wrong")
    assert proc.returncode == 1 and "refused" in proc.stderr and runs(marks, "wrong") == 0
    attacker(gearmand, "touch", captured["data"])
    assert runs(marks, "captured") == 1  # within the window: it is the real job
    code, _out = attacker(gearmand, "touch", captured["data"])  # the same bytes: a replay
    assert code != 0 and runs(marks, "captured") == 1
    assert "refused: replayed" in worker.log()
    stale = config.keyring.sign("touch", {"v": 1, "id": "s1", "kwargs": {"name": "stale"}},
                                now=time.time() - 1000)
    code, _out = attacker(gearmand, "touch", stale)
    assert code != 0 and runs(marks, "stale") == 0
    assert "refused: timestamp outside security.max_age" in worker.log()
    # a signed background job that waited too long is authentic: kept as a dead letter
    late = config.keyring.sign("touch", {"v": 1, "id": "l1", "bg": True,
                                         "kwargs": {"name": "late"}}, now=time.time() - 1000)
    attacker(gearmand, "touch", late, background=True)
    wait_for(lambda: queued_total([gearmand.address], "__dead__.touch") == 1, 10,
             "the late job's dead letter")
    assert runs(marks, "late") == 0


def test_keys_rotate_without_stopping_senders(gearmand, start_workers, tmp_path):
    old, new = make_key(tmp_path / "old.key"), make_key(tmp_path / "new.key")
    marks = tmp_path / "marks"
    marks.mkdir()
    worker = start_workers([gearmand.address], touch_functions(marks),
                           extra_config=security(new, old))
    old_sender, _ = client_config(tmp_path / "old", [gearmand.address], **security(old))
    new_sender, _ = client_config(tmp_path / "new", [gearmand.address], **security(new))
    assert sendjob(old_sender, "run", "touch", "name=a").returncode == 0
    assert sendjob(new_sender, "run", "touch", "name=b").returncode == 0
    worker.stop()  # every sender has switched: the old key is dropped
    start_workers([gearmand.address], touch_functions(marks), name="w1",
                  extra_config=security(new))
    proc = sendjob(old_sender, "run", "touch", "name=c")
    assert proc.returncode == 1 and "refused" in proc.stderr
    assert sendjob(new_sender, "run", "touch", "name=d").returncode == 0
    assert [runs(marks, n) for n in "abcd"] == [1, 1, 0, 1]


@needs_c_client
def test_raw_jobs_need_allow_unsigned(fleet):
    server, _worker, _key, _marks, _path, _config = fleet
    assert attacker(server, "cat", b"raw \x00bytes") == (0, b"raw \x00bytes")
    code, out = attacker(server, "cat_signed", b"raw bytes")
    assert code != 0 and b"raw bytes" not in out


@needs_c_client
def test_an_old_outbox_job_and_a_resent_dump_are_signed_anew(restartable_gearmand,
                                                              start_workers, tmp_path):
    server = restartable_gearmand
    key, marks = make_key(tmp_path / "k"), tmp_path / "marks"
    marks.mkdir()
    path, config = client_config(tmp_path / "s", [server.address], **security(key, max_age=2))
    server.stop()
    assert "outbox" in sendjob(path, "run", "touch", "name=late", "--background").stderr
    time.sleep(2.5)  # older than max_age
    server.start()
    worker = start_workers([server.address], touch_functions(marks),
                           extra_config=security(key, max_age=2))
    assert sendjob(path, "flush").returncode == 0
    wait_for(lambda: runs(marks, "late") == 1, 10, "the flushed job to run")
    worker.stop()
    forged = json.dumps({"v": 1, "id": "x1", "bg": True, "kwargs": {"name": "forged"}})
    attacker(server, "touch", forged.encode(), background=True)
    assert sendjob(path, "run", "touch", "name=kept", "--background").returncode == 0
    dump = tmp_path / "dump"
    assert runadmin(path, "clear", "touch", "--dump", str(dump)).returncode == 0
    time.sleep(2.5)
    start_workers([server.address], touch_functions(marks), name="w1",
                  extra_config=security(key, max_age=2))
    resend = runadmin(path, "resend", str(dump))
    assert resend.returncode == 1 and "not signed by an accepted key" in resend.stderr
    wait_for(lambda: runs(marks, "kept") == 1, 10, "the resent signed job to run")
    assert runs(marks, "forged") == 0


@pytest.mark.parametrize("mode,text,expected", [
    (0o644, None, "only its owner can read"),
    (0o600, b"short\n", "at least 16 bytes"),
])
def test_a_bad_key_file_is_exit_2_naming_the_file(tmp_path, mode, text, expected):
    key = make_key(tmp_path / "k.key", text)
    key.chmod(mode)
    config = tmp_path / "c.yaml"
    config.write_text(f"security:\n  key_file: {key}\n")
    proc = sendjob(config, "flush")
    assert proc.returncode == 2 and expected in proc.stderr and str(key) in proc.stderr
    assert "security.key_file" in proc.stderr and proc.stderr.count("\n") == 1


def test_the_keyring_signs_every_byte_that_decides_what_runs(tmp_path):
    keyring = Keyring(read_key_file(str(make_key(tmp_path / "k")), None, "k"))
    payload = Request(args=("a",), kwargs={"x": b"\xff", "y": "é"}).encode(keyring, "f")
    assert keyring.check("f", payload, loads(payload)) is None
    body = payload[:payload.rindex(b',"sig":')]
    for old, new in ((b'"a"', b'"b"'), (b'"y":"\xc3\xa9"', b'"y":"e"'), (b'"v":1', b'"v":1 '),
                     (b'"kwargs"', b'"bg":true,"kwargs"')):
        assert old in body, old
        forged = payload.replace(old, new, 1)
        assert keyring.check("f", forged, loads(forged)) == "bad signature", new
    assert keyring.check("g", payload, loads(payload)) == "bad signature"
    unsigned = Request(args=("a",)).encode()
    assert keyring.check("f", unsigned, loads(unsigned)) == "unsigned"
    other = Keyring(b"another key of enough length").sign("f", loads(unsigned))
    assert keyring.check("f", other, loads(other)) == "signed with an unknown key"
    assert keyring.claim(loads(payload)) and not keyring.claim(loads(payload))
    spaced = payload + b"\n"
    assert keyring.check("f", spaced, loads(spaced)) is None
    short = payload.replace(b'"}', b'0"}')
    assert keyring.check("f", short, loads(short)) == "bad signature"


def test_a_signature_is_the_stdlib_hmac_sha256_for_every_key_length():
    """The Keyring computes HMAC from kept SHA-256 states: it must equal ``hmac.new``
    for keys shorter than, as long as and longer than SHA-256's 64-byte block."""
    import hashlib
    import hmac
    for size in (16, 63, 64, 65, 200):
        secret = bytes((i * 7 + size) % 256 for i in range(size))
        keyring = Keyring(secret)
        for function in ("f", "ünï", "reverse_b"):
            for number in range(3):  # the kept states are copied, never fed
                payload = keyring.sign(function, {"v": 1, "id": f"{size}-{number}"})
                body = payload[:payload.rindex(b',"sig":')] + b"}"
                expected = hmac.new(secret, function.encode() + b"\0" + body,
                                    hashlib.sha256).hexdigest()
                assert loads(payload)["sig"] == expected, (size, function, number)
                assert keyring.check(function, payload, loads(payload)) is None


def test_a_signature_is_remembered_while_it_can_pass_then_forgotten(tmp_path):
    keyring = Keyring(read_key_file(str(make_key(tmp_path / "k")), None, "k"), max_age=60)
    first = loads(keyring.sign("f", {"v": 1, "id": "a"}, now=1000))
    assert keyring.claim(first, now=1000) and not keyring.claim(first, now=1059)
    # A sender's clock may run up to max_age ahead: a ts of 1060 passes check() until
    # 1120, so a replay of it is refused until then, whenever it was first claimed.
    ahead = loads(keyring.sign("f", {"v": 1, "id": "b"}, now=1060))
    assert keyring.claim(ahead, now=1000) and not keyring.claim(ahead, now=1119)
    later = [loads(keyring.sign("f", {"v": 1, "id": str(i)}, now=1000 + i)) for i in range(99)]
    assert all(keyring.claim(envelope, now=1000 + i) for i, envelope in enumerate(later))
    assert not any(keyring.claim(envelope, now=1100) for envelope in later)
    # A released claim (its job went back to gearmand unanswered) may be claimed again.
    last = later[-1]
    assert not keyring.claim(last, now=1100)
    keyring.release(last)
    assert keyring.claim(last, now=1100) and not keyring.claim(last, now=1101)
    # Once no check can pass it, the signature is forgotten (memory stays bounded).
    newer = loads(keyring.sign("f", {"v": 1, "id": "c"}, now=1200))
    assert keyring.claim(newer, now=1200)
    assert keyring.claim(first, now=1201)


def test_risky_trust_settings_are_one_warning_line_each(tmp_path, caplog):
    from gearman_frame.config import load_config, protected_mode
    from worker_client.runworkers import warn_about_trust
    plain = tmp_path / "plain.yaml"
    plain.write_text("servers: ['10.9.8.7:4730', '127.0.0.1:4730']\n"
                     "security: {insecure: true}\n")
    warning = protected_mode(load_config(plain, environ={}), "a worker")  # connects nothing
    assert warning == (
        "signing is off (no security.key_file) and 10.9.8.7:4730 is not on loopback: anyone "
        "who reaches it can run this fleet's functions and stop its workers "
        "(security.insecure)")
    assert [r.getMessage() for r in caplog.records] == [warning]  # logged once
    caplog.clear()
    keyed = tmp_path / "keyed.yaml"
    keyed.write_text(f"security: {{key_file: {make_key(tmp_path / 'k')}}}\n"
                     "functions: {sh: {raw_shell: true, allow_unsigned: true}}\n")
    with caplog.at_level("WARNING"):
        warn_about_trust(load_config(keyed, environ={}))
    assert len(caplog.records) == 1 and "functions.sh: raw_shell with allow_unsigned" in \
        caplog.records[0].getMessage()


@needs_c_client
def test_inspect_and_cancel_need_the_key_when_one_is_set(fleet):
    server, worker, _key, _marks, path, _config = fleet
    # the C client asks for the worker's state: refused, nothing told
    code, out = attacker(server, "__ctl__.w0", b"inspect")
    assert code != 0 and b"pid" not in out
    code, _out = attacker(server, "__ctl__.w0", b"cancel 0123")
    assert code != 0
    assert worker.log().count("control job") >= 2 and "refused: unsigned" in worker.log()
    # the admin with the key is answered
    asked = runadmin(path, "inspect", "w0", "--json")
    assert asked.returncode == 0, asked.stderr
    assert json.loads(asked.stdout)[0]["process"] == "w0"
