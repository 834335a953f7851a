"""The Perl job server (Debian ``gearman-server``: ``Gearman::Server``), started on a free
loopback port for a test. It lacks GRAB_JOB_UNIQ, WORK_DATA, three priority variants,
GET_STATUS_UNIQUE and most admin commands, which is what the tests using it are about."""
import os
import shutil
import signal
import socket
import subprocess
import time

from gearman_frame.daemons.gearmand import free_port, is_c_gearmand

PERL_SERVER_MODULE = "/usr/share/perl5/Gearman/Server.pm"


def find_perl_gearmand():
    """The Perl ``gearmand`` script, or None when gearman-server is not installed."""
    if not os.path.exists(PERL_SERVER_MODULE):
        return None
    for folder in ("/usr/bin", "/usr/local/bin"):
        path = shutil.which("gearmand", path=folder)
        if path and not is_c_gearmand(path):
            return path
    return None


class PerlJobServer:
    """One Perl job server process on 127.0.0.1 and a free port."""

    host = "127.0.0.1"

    def __init__(self, log_path):
        self.port = free_port()
        self.address = f"{self.host}:{self.port}"
        self.log = open(log_path, "wb")
        self.process = subprocess.Popen([find_perl_gearmand(), "-p", str(self.port),
                                         "-L", self.host], stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 10
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the Perl job server did not start on {self.address}")
            time.sleep(0.05)

    def _answers(self):
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(b"version\n")
                return sock.recv(64).startswith(b"v")
        except OSError:
            return False

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.log.close()
