"""A throwaway Redis server on a loopback port (Debian's ``redis-server``): for the tests
of gearmand's Redis queue. Nothing is saved to disk; it lives as long as its run."""
from __future__ import annotations

import shutil
import subprocess

from ..processes import wait_until
from .base import accepts

START_TIMEOUT = 10.0


class RedisServer:
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install "
                                    "redis-server)")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", self.host, "--save", "",
             "--appendonly", "no", "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not wait_until(lambda: accepts(self.host, self.port), START_TIMEOUT):
            self.stop()
            raise RuntimeError(f"redis-server on {self.host}:{self.port} did not start")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
