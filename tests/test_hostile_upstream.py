"""A hostile upstream: bodies that bomb when decompressed, nest without end, trickle,
redirect; and hostile numbers from the caller. Each ends in one clean error, within
bounded memory and time, and a number refused is refused before anything is sent."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import resource
import sys
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LiveSandbox, assert_one_line_error, run, script_env
from prime_billing import errors
from prime_billing import operations as ops
from prime_billing.client import AsyncClient, Client
from prime_billing.config import Settings
from prime_billing.sandbox import RUNS
from prime_billing.serve.rest import http_status

RUN_BODY = {**RUNS["rft_sbx_running"], "sandbox": True}
#: the message of a timeout, whatever part of the answer was late
TIMED_OUT = "did not answer within 1s"


# --------------------------------------------------------------------------- a hostile server

Answer = Callable[[BaseHTTPRequestHandler, threading.Event], None]


class Hostile:
    """A loopback HTTP server that answers every request with `answer(handler, stop)`;
    `stop` is set when the test ends, so an answer that would go on forever ends too."""

    def __init__(self, answer: Answer) -> None:
        self.stop = threading.Event()
        self.requests = 0
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes

            def do_GET(self) -> None:
                hostile.requests += 1
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up: the point
                    answer(self, hostile.stop)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile() -> Iterator[Callable[[Answer], Hostile]]:
    started: list[Hostile] = []

    def start(answer: Answer) -> Hostile:
        started.append(Hostile(answer))
        return started[-1]

    yield start
    for server in started:
        server.close()


def gzip_of_zeros(size: int = 1 << 30, block: int = 1 << 20, write: int = 1 << 18) -> Iterator[bytes]:
    """gzip of `size` zero bytes (about 1 MB), made block by block as it is sent and written in
    pieces of `write` bytes (256 MiB once decompressed): never held whole, and only as much is
    made as the client reads."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(block)
    out = bytearray()
    for _ in range(size // block):
        out += z.compress(zeros)
        if len(out) >= write:
            yield bytes(out)
            out.clear()
    yield bytes(out) + z.flush()


def gzip_bomb(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Encoding", "gzip")
    handler.end_headers()
    for chunk in gzip_of_zeros():
        if stop.is_set():
            return
        handler.wfile.write(chunk)


def trickle(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    """A valid head, then one byte every 0.2 s until the client leaves or the test ends."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000000")
    handler.end_headers()
    handler.wfile.flush()
    while not stop.wait(0.2):
        handler.wfile.write(b" ")
        handler.wfile.flush()


def trickled_head(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    """The status line itself, one byte every 0.2 s: no read ever waits long, the head never ends."""
    for byte in b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nX-Pad: " + b"a" * 10_000:
        if stop.wait(0.2):
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()


#: runs the command given after the file name and writes its peak RSS (KiB) to that file: this
#: process's only child is the command, so RUSAGE_CHILDREN is the command's own peak, not one
#: left over from another test's subprocess
MEASURE_PEAK = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def run_measured(args: list[str], env: dict[str, str], tmp_path: Path) -> tuple[Any, int]:
    """Run `python args...` and return (the completed process, its peak RSS in MiB)."""
    peak = tmp_path / "peak"
    out = run(["-c", MEASURE_PEAK, str(peak), sys.executable, *args], env, timeout=120)
    return out, int(peak.read_text()) // 1024


# --------------------------------------------------------------------------- compressed answers


def test_a_gzip_bomb_is_refused_unread_in_bounded_memory(
    hostile: Callable[[Answer], Hostile], home: Path, tmp_path: Path
) -> None:
    server = hostile(gzip_bomb)
    env = script_env(home, server.url, PRIME_BILLING_MAX_RETRIES="0")
    out, peak_mib = run_measured(["-m", "prime_billing", "usage", "r1"], env, tmp_path)
    assert_one_line_error(out, 1, "refused unread")
    assert "Content-Encoding: gzip" in out.stderr
    # a normal call peaks near 45 MiB; inflating a single 64 KiB read of this body makes 64 MiB more
    assert peak_mib < 100, f"peak RSS {peak_mib} MiB"


class Streamed(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that arrives as from a socket, on either client: one given whole to
    httpx.Response is inflated by httpx before anyone can look at its head."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __iter__(self) -> Iterator[bytes]:
        yield self.data

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data


def _compressed(encoding: str) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = gzip.compress(json.dumps(RUN_BODY).encode())
        return httpx.Response(200, headers={"content-encoding": encoding}, stream=Streamed(body))

    return httpx.MockTransport(answer), seen


@pytest.mark.parametrize("encoding", ["gzip", "br", "zstd", "deflate", "GZIP", "x-unknown"])
def test_a_compressed_answer_is_refused_on_both_faces_even_a_small_one(encoding: str) -> None:
    transport, seen = _compressed(encoding)
    settings = Settings(api_key="k", max_retries=2)
    with Client(settings, transport=transport) as c, pytest.raises(errors.BadResponseError) as sync_info:
        c.get_run_usage("r1")

    async def go() -> None:
        async with AsyncClient(settings, transport=transport) as c:
            await c.get_run_usage("r1")

    with pytest.raises(errors.BadResponseError) as async_info:
        asyncio.run(go())
    assert str(sync_info.value) == str(async_info.value)
    assert f"Content-Encoding: {encoding}" in str(sync_info.value) and "refused unread" in str(sync_info.value)
    # asked for no compression, and not retried: the same upstream would answer the same way
    assert [r.headers["accept-encoding"] for r in seen] == ["identity", "identity"]


@pytest.mark.parametrize("encoding", ["identity", "Identity", ""])
def test_an_identity_answer_is_read(encoding: str) -> None:
    headers = {"content-encoding": encoding} if encoding else {}
    transport = httpx.MockTransport(lambda r: httpx.Response(200, headers=headers, json=RUN_BODY))
    with Client(Settings(api_key="k"), transport=transport) as c:
        assert c.get_run_usage("r1").data.run_id == "rft_sbx_running"


# --------------------------------------------------------------------------- bodies that cannot be parsed

NESTED = json.dumps(RUN_BODY)[:-1] + ', "extra": ' + "[" * 100_000 + "]" * 100_000 + "}"


def test_a_deeply_nested_body_is_one_line_on_the_cli(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url, PRIME_BILLING_MAX_RETRIES="0")
    sandbox.faults(next=[{"status": 200, "body": NESTED}])
    out = run(["-m", "prime_billing", "usage", "rft_sbx_running"], env)
    assert_one_line_error(out, 1, "nested too deeply")
    # the same body on an error status: its detail cannot be read, the status still says it
    sandbox.faults(next=[{"status": 404, "body": NESTED}])
    out = run(["-m", "prime_billing", "usage", "rft_sbx_running"], env)
    assert_one_line_error(out, 1, "run not found (404)")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (NESTED.encode(), "nested too deeply"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b"<html>oops</html>", "not JSON"),
        (b"\xff\xfe{}", "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'"run"', "JSON str, not an object"),
        (b'{"run_id": 5}', "does not match the RunUsage schema (run_id"),
        (b'{"run_id": "r1"}', "does not match the RunUsage schema (training"),
    ],
)
def test_any_body_that_cannot_be_read_is_a_bad_response(body: bytes, needle: str) -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, content=body))
    with Client(Settings(api_key="k"), transport=transport) as c, pytest.raises(errors.BadResponseError) as info:
        c.get_run_usage("r1")
    assert needle in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- a total deadline per attempt


def test_a_trickled_body_ends_at_the_deadline_on_the_cli(hostile: Callable[[Answer], Hostile], home: Path) -> None:
    server = hostile(trickle)
    env = script_env(home, server.url, PRIME_BILLING_TIMEOUT="1", PRIME_BILLING_MAX_RETRIES="0")
    # timeout=20 only guards against a hang; a failure is a TimeoutExpired, not a timed assertion
    out = run(["-m", "prime_billing", "usage", "r1"], env, timeout=20)
    assert_one_line_error(out, 1, TIMED_OUT)
    assert server.requests == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("answer", [trickle, trickled_head], ids=["body", "head"])
def test_a_trickling_upstream_ends_at_the_deadline_on_the_async_face(
    hostile: Callable[[Answer], Hostile], answer: Answer
) -> None:
    server = hostile(answer)
    settings = Settings(api_key="k", base_url=server.url, timeout=1.0, max_retries=0)

    async def go() -> None:
        async with AsyncClient(settings) as c:
            await c.get_run_usage("r1")

    with pytest.raises(errors.UpstreamTimeoutError) as info:
        asyncio.run(go())
    assert TIMED_OUT in str(info.value) and http_status(info.value) == 504


@pytest.mark.timeout(30)
def test_the_deadline_bounds_an_overriding_send_too() -> None:
    """`send` is the seam a subclass overrides; the deadline is the driver's, so it still holds."""
    from prime_billing.client import Reply, Request

    started = threading.Event()

    class Stuck(AsyncClient):
        async def send(self, request: Request) -> Reply:
            started.set()
            await asyncio.Event().wait()  # never answers
            raise AssertionError("unreachable")

    async def go() -> None:
        async with Stuck(Settings(api_key="k", timeout=1.0, max_retries=0)) as c:
            await c.get_run_usage("r1")

    with pytest.raises(errors.UpstreamTimeoutError, match=TIMED_OUT):
        asyncio.run(go())
    assert started.is_set()


@pytest.mark.timeout(30)
def test_a_trickled_body_ends_at_the_deadline_on_the_sync_face(hostile: Callable[[Answer], Hostile]) -> None:
    server = hostile(trickle)
    with (
        Client(Settings(api_key="k", base_url=server.url, timeout=1.0, max_retries=0)) as c,
        pytest.raises(errors.UpstreamTimeoutError, match=TIMED_OUT),
    ):
        c.get_run_usage("r1")


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308, 300, 304])
def test_a_redirect_is_an_error_and_is_not_followed(status: int) -> None:
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        # a body that would pass as the answer, and somewhere to go
        return httpx.Response(status, headers={"location": "http://elsewhere.test/x"}, json=RUN_BODY)

    with (
        Client(Settings(api_key="k", max_retries=3), transport=httpx.MockTransport(answer)) as c,
        pytest.raises(errors.APIError) as info,
    ):
        c.get_run_usage("r1")
    assert str(info.value) == (f"Prime API answered {status} (a redirect, not followed): check PRIME_API_BASE_URL")
    assert type(info.value) is errors.APIError and info.value.status == status
    assert seen == ["https://api.primeintellect.ai/api/v1/billing/runs/r1/usage"]


# --------------------------------------------------------------------------- hostile numbers


def _recording() -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(500)

    return httpx.MockTransport(answer), seen


HOSTILE_WHOLE_NUMBERS = ["1_0", "١٠", " 5 ", "5 ", "+5", "5.0", "0x10", "1e1", "", "٥", "５", "10" * 200, "-"]


@pytest.mark.parametrize("value", HOSTILE_WHOLE_NUMBERS)
@pytest.mark.parametrize(("op", "param"), [("get_wallet", "limit"), ("get_wallet", "offset"), ("spend_report", "top")])
def test_a_whole_number_is_plain_ascii_digits_or_refused_unsent(op: str, param: str, value: str) -> None:
    transport, seen = _recording()
    with (
        Client(Settings(api_key="k"), transport=transport) as c,
        pytest.raises(errors.InvalidInputError, match=f"^{param} must be"),
    ):
        c.call(op, {param: value})
    assert seen == []


@pytest.mark.parametrize(
    "value", ["1_0", "١٠", " 5 ", "12.", ".5", "1e", "e3", "1e3.5", "+1", "0x1", "", "٥", "5,5", "1" * 400 + "x"]
)
def test_a_minimum_balance_is_a_plain_json_number_or_refused_unsent(value: str) -> None:
    transport, seen = _recording()
    with (
        Client(Settings(api_key="k"), transport=transport) as c,
        pytest.raises(errors.InvalidInputError, match=r"^min_balance must be a number"),
    ):
        c.call("check_budget", {"min_balance": value})
    assert seen == []


@pytest.mark.parametrize(("param", "value"), [("limit", "-1"), ("offset", "-5"), ("limit", "101")])
def test_a_negative_or_too_large_number_gets_the_bounds(param: str, value: str) -> None:
    transport, seen = _recording()
    with (
        Client(Settings(api_key="k"), transport=transport) as c,
        pytest.raises(errors.InvalidInputError, match=f"^{param} must be [0-9]+\\.\\.[0-9]+, got {value}$"),
    ):
        c.call("get_wallet", {param: value})
    assert seen == []


def test_plain_numbers_still_pass_as_text_and_as_numbers() -> None:
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.query.decode())
        return httpx.Response(500)

    with Client(Settings(api_key="k", max_retries=0), transport=httpx.MockTransport(answer)) as c:
        for limit, offset in (("7", "0012"), (7, 12)):
            with pytest.raises(errors.UpstreamUnavailableError):
                c.get_wallet(limit=limit, offset=offset)  # type: ignore[arg-type]
    assert sent == ["limit=7&offset=12", "limit=7&offset=12"]
    budget = ops.get("check_budget")
    # the JSON number forms a schema-valid caller may send, exponent included
    assert [budget.check({"min_balance": v})["min_balance"] for v in ("12", "12.5", "0", "1e3", "1.5E-2", 3, 2.5)] == [
        12.0,
        12.5,
        0.0,
        1000.0,
        0.015,
        3.0,
        2.5,
    ]


def test_an_offset_is_bounded_where_no_wallet_reaches() -> None:
    from prime_billing.compose import MAX_PAGES, PAGE_SIZE

    transport, seen = _recording()
    with Client(Settings(api_key="k"), transport=transport) as c:
        with pytest.raises(errors.InvalidInputError, match=r"^offset must be 0\.\.10000000, got 10000001$"):
            c.get_wallet(offset=10_000_001)
        with pytest.raises(errors.InvalidInputError, match="offset must be"):
            c.get_wallet(offset="4" * 400)  # type: ignore[arg-type]
    assert seen == []
    for op in ("get_wallet", "check_budget"):
        assert ops.get(op).input_schema()["properties"]["offset"]["maximum"] == 10_000_000 == MAX_PAGES * PAGE_SIZE


def test_the_peak_measured_is_the_commands_own(tmp_path: Path, home: Path) -> None:
    """A bigger child of this process earlier does not leak into the figure."""
    big = run(["-c", "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096])"], script_env(home))
    assert big.returncode == 0 and resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024 >= 200
    out, peak_mib = run_measured(["-c", "pass"], script_env(home), tmp_path)
    assert out.returncode == 0 and 0 < peak_mib < 100
