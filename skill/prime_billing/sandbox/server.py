"""The sandbox on a real socket: a threaded HTTP/1.1 server around a `FaultySandbox`.

Imported only by tests, benchmarks, `prime-billing sandbox` and `serve --sandbox`.
Over the socket a fault can do what it cannot in process: hold a request at the
gate, reset the connection mid-body, or stream a body the client abandons.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .data import stamp
from .faults import CONTROL, FaultySandbox


class SandboxServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: FaultySandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-request (an abandoned page of a failed batch) is no error of
        the sandbox's: only anything else gets the traceback socketserver prints."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"
    server_version = "prime-billing-sandbox"
    # headers and body go out as two writes: without this, Nagle holds the body
    # for the client's delayed ACK (~40 ms per request on a kept-alive connection)
    disable_nagle_algorithm = True

    def answer(self) -> None:
        if self.path.startswith(CONTROL):
            self.send()
            return
        with self.server.sandbox.answering():
            self.send()

    do_GET = do_POST = do_DELETE = do_PUT = answer

    def send(self) -> None:
        sandbox = self.server.sandbox
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        reply = sandbox.dispatch(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        if reply.held and not self.path.startswith(CONTROL):
            sandbox.wait_for_release()
        if reply.delay:
            time.sleep(reply.delay)
        data = reply.body
        self.send_response(reply.status)
        for k, v in reply.headers.items():
            self.send_header(k, v)
        if isinstance(data, bytes) and "content-length" not in reply.headers:
            self.send_header("content-length", str(len(data)))
        self.end_headers()
        try:
            if not isinstance(data, bytes):
                self.stream(data)
            elif reply.cut_after is None:
                self.wfile.write(data)
            else:
                self.wfile.write(data[: reply.cut_after])
                self.wfile.flush()
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def stream(self, data: Iterator[bytes]) -> None:
        sent = 0
        try:
            for chunk in data:
                self.wfile.write(chunk)
                sent += len(chunk)
        finally:
            self.server.sandbox.count_stream(sent)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def make_server(sandbox: FaultySandbox, host: str = "127.0.0.1", port: int = 0) -> SandboxServer:
    """A threaded HTTP/1.1 server on a real socket; `port=0` picks a free one."""
    return SandboxServer((host, port), sandbox)


def serve(
    sandbox: FaultySandbox, host: str = "127.0.0.1", port: int = 0, *, announce: Callable[[str], Any] = print
) -> None:
    """Serve until interrupted; announces the URL (and the demo key and the sandbox's now) on one line.

    Ctrl-C returns normally; once bound, the socket is closed however serving ends
    (the announce is inside the `try`). `prime-billing sandbox` has SIGTERM and
    SIGINT exit 0 before the bind, so a supervisor never sees 143."""
    server = make_server(sandbox, host, port)
    try:
        real_host, real_port = server.server_address[:2]
        announce(
            f"sandbox serving on http://{real_host}:{real_port} (key: {sandbox.api_key}; "
            f"its now: {stamp(sandbox.now)}); Ctrl-C stops it"
        )
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
