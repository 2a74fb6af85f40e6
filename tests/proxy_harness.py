"""Test support for the launcher's hardening tests: small servers around it, and the launcher as a process.

`serving(app)` runs any ASGI app on 127.0.0.1 (ephemeral port) under uvicorn in a
thread and yields its URL. `ForwardingProxy` is an HTTP proxy that counts what
passes through it and hands each request to a fixed upstream with httpx;
`HangingUpstream` takes a request and answers only when released, noting when
its caller hangs up. `ServeProcess` runs `prime-billing serve` as a subprocess
and reads the URLs it announces.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.types import Receive, Scope, Send

from conftest import ROOT

#: headers that belong to one hop (or that httpx sets itself), never forwarded
HOP_BY_HOP = frozenset(
    {
        b"host",
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"content-length",
    }
)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 (a free port) in a background thread; yields its base URL."""
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", loop="asyncio", proxy_headers=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the test server did not start"
    host, port = sock.getsockname()[:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = server.force_exit = True  # a request left hanging must not hold the thread
        thread.join(30)
        sock.close()


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return bytes(body)


class ForwardingProxy:
    """A forward HTTP proxy for plain-http targets: each request, whatever URL it names,
    goes to `target` with the same method, path, query, headers and body."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        #: requests that came through
        self.count = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        body = await _read_body(receive)
        with self._lock:
            self.count += 1
        # a client talking to a proxy sends the absolute URL; only its path is kept
        path = urlsplit(scope["raw_path"].decode("latin-1")).path or "/"
        query = scope["query_string"].decode("latin-1")
        url = self.target + path + (f"?{query}" if query else "")
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in HOP_BY_HOP]
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            r = await client.request(scope["method"], url, headers=headers, content=body)
        answer = [(b"content-length", str(len(r.content)).encode())]
        if "content-type" in r.headers:
            answer.append((b"content-type", r.headers["content-type"].encode("latin-1")))
        await send({"type": "http.response.start", "status": r.status_code, "headers": answer})
        await send({"type": "http.response.body", "body": r.content})


#: what `HangingUpstream` answers once released: a wallet with no rows
RELEASED_WALLET = {
    "wallet_id": "wal_hanging",
    "team_id": None,
    "balance_usd": 1.5,
    "currency": "USD",
    "total_billings": 0,
    "recent_billings": [],
}


class HangingUpstream:
    """An upstream that never answers on its own: each request sets `arrived`, then waits
    until its caller hangs up (which sets `left`) or `release` is set (then it answers
    200 with `RELEASED_WALLET`)."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.left = threading.Event()
        self.release = threading.Event()
        #: requests received
        self.count = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        await _read_body(receive)
        self.count += 1
        self.arrived.set()
        hangup = asyncio.ensure_future(self._until_disconnect(receive))
        try:
            while not hangup.done() and not self.release.is_set():
                await asyncio.wait({hangup}, timeout=0.02)  # polling the thread-side release
        finally:
            hangup.cancel()
        if self.left.is_set() or not self.release.is_set():
            return
        body = json.dumps(RELEASED_WALLET).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _until_disconnect(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.left.set()


#: how the launcher names its servers on its first stdout line: "REST on http://...," / "MCP on http://.../mcp;"
ANNOUNCED = re.compile(r"\b(REST|MCP) on (http://[^\s,;]+)")


class ServeProcess:
    """`python -m prime_billing serve ARGS` as a subprocess; `urls` are read from its first stdout line.

    As a context manager it ends with SIGTERM (unless the test ended it already) and keeps the
    exit code and stderr in `returncode` and `stderr`."""

    def __init__(self, env: Mapping[str, str], *args: str, command: str = "serve") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "prime_billing", command, *args],
            env=dict(env),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.urls: dict[str, str] = {}
        self.returncode: int | None = None
        self.stderr = ""

    def __enter__(self) -> ServeProcess:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        self.urls = {surface.lower(): url for surface, url in ANNOUNCED.findall(line)}
        if not self.urls:
            self.finish(signal.SIGTERM)
            raise AssertionError(f"the launcher announced no URL: {line!r}; stderr: {self.stderr}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish(signal.SIGTERM)

    def finish(self, sig: signal.Signals, timeout: float = 30) -> int:
        """Send `sig` (if still running) and wait; the exit code (and stderr) kept."""
        if self.returncode is not None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, self.stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            self.stderr = f"(killed after {timeout}s without exiting)\n{err}"
        self.returncode = self.proc.returncode
        return self.returncode

    def base(self, surface: str) -> str:
        """The server's scheme://host:port (the MCP URL without its /mcp path)."""
        parts = urlsplit(self.urls[surface])
        return f"{parts.scheme}://{parts.netloc}"
