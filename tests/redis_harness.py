"""Test support for the launcher's shared state: a real `redis-server`, and launchers as processes.

`RedisServer` runs Debian's `redis-server` on a free loopback port (no persistence) and can be
killed and started again on the same port, as an outage would. `Replicas` starts several
`prime-billing serve` processes at once (their start-up overlaps), each logging to a file of its
own, so a test can read what a replica said while it still runs.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import ROOT, until
from proxy_harness import ANNOUNCED


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """`redis-server` on 127.0.0.1; `url` for the launcher, `client()` to look inside."""

    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(self.answers, "redis-server answering")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no goodbye to its clients, as a crashed or evicted pod gives none."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Replica:
    """One `prime-billing serve --rest-port 0 --only rest ARGS` process; its stderr goes to `log`."""

    def __init__(self, env: Mapping[str, str], log: Path, *args: str, auth: Mapping[str, str] | None = None) -> None:
        self.log = log
        #: the headers its /metrics needs (the token, or a key in passthrough)
        self.auth = dict(auth or {})
        self._err = log.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prime_billing", "serve", "--rest-port", "0", "--only", "rest", *args],
            env=dict(env), cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err, text=True,
        )  # fmt: skip
        self.url = ""

    def announced(self) -> None:
        assert self.proc.stdout is not None
        line = self.announcement = self.proc.stdout.readline()
        found = dict(ANNOUNCED.findall(line))
        assert "REST" in found, f"the launcher announced no URL: {line!r}; {self.log.read_text()}"
        self.url = found["REST"]

    def metric(self, name: str, **labels: str) -> float:
        """One sample of its /metrics (0 when absent), scraped as any caller would."""
        r = httpx.get(self.url + "/metrics", headers=self.auth, timeout=10)
        assert r.status_code == 200, r.text
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
        return 0.0

    def said(self) -> str:
        return self.log.read_text(encoding="utf-8")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._err.close()
        return code


def replicas(
    n: int, env: Mapping[str, str], logs: Path, *args: str, auth: Mapping[str, str] | None = None
) -> list[Replica]:
    """`n` replicas started together: their start-up, mostly imports, overlaps."""
    logs.mkdir(parents=True, exist_ok=True)
    started = [Replica(env, logs / f"replica-{i}.log", *args, auth=auth) for i in range(n)]
    for r in started:
        r.announced()
    return started
