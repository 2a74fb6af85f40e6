"""The launcher's resource bounds, each set small and then exceeded, on real loopback servers."""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import LiveSandbox, run, script_env
from prime_billing.cli import build_parser
from prime_billing.errors import ConfigError
from prime_billing.serve.command import options_from
from prime_billing.serve.options import Options
from serve_harness import assert_problem, running, sandbox_settings

WALLET = "/v1/api/v1/billing/wallet"


def raw_exchange(url: str, data: bytes, *, then_wait: bool = True) -> bytes:
    """Send raw bytes on a fresh connection and read until the server closes it."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(data)
        chunks = []
        while then_wait:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_upstream_concurrency_is_bounded_and_the_rest_wait(sandbox: LiveSandbox) -> None:
    """Eight callers, two upstream slots: the upstream, held, sees exactly two at once while the
    launcher holds all eight callers; released, every caller is answered."""
    sandbox.faults(hold=True)
    sandbox.box.inflight_peak = 0
    with running(sandbox_settings(sandbox.url), only="rest", max_upstream=2) as launcher:
        url = launcher.urls["rest"] + WALLET
        assert launcher.gateway is not None
        # distinct pages, so coalescing does not fold them into one call
        with httpx.Client(timeout=30) as client, ThreadPoolExecutor(8) as pool:
            pending = [pool.submit(client.get, url, params={"offset": i}) for i in range(8)]
            deadline = time.monotonic() + 10  # a guard against a hang, not a measurement
            while (launcher.gateway.waiting < 8 or sandbox.box.inflight < 2) and time.monotonic() < deadline:
                time.sleep(0.01)
            held = (launcher.gateway.waiting, sandbox.box.inflight)
            sandbox.box.release()
            answers = [f.result() for f in pending]
    assert held == (8, 2)
    assert [r.status_code for r in answers] == [200] * 8
    assert sandbox.requests() == 8
    assert sandbox.box.inflight_peak == 2


def test_a_caller_over_its_rate_gets_429_with_retry_after_and_others_do_not(sandbox: LiveSandbox) -> None:
    """With no token configured a caller is its address: a made-up bearer from the same address is
    the same caller (refused too), another address has a bucket of its own."""
    with running(sandbox_settings(sandbox.url), rate_limit=0.05, rate_burst=3) as launcher:
        rest = launcher.urls["rest"]
        codes = [httpx.get(rest + WALLET).status_code for _ in range(3)]
        refused = httpx.get(rest + WALLET)
        made_up = httpx.get(rest + WALLET, headers={"Authorization": "Bearer another-caller"})
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2")) as elsewhere:
            other = elsewhere.get(rest + WALLET)
        health = [httpx.get(rest + "/healthz").status_code for _ in range(5)]
        accept = {"Accept": "application/json, text/event-stream"}
        mcp = [httpx.post(launcher.urls["mcp"], json={}, headers=accept) for _ in range(4)]
    assert codes == [200, 200, 200]
    body = assert_problem(refused, 429)
    assert body["code"] == "too_many_requests" and int(refused.headers["retry-after"]) >= 1
    assert assert_problem(made_up, 429)["code"] == "too_many_requests"  # a bearer is no credential here
    assert other.status_code == 200  # another address: its own bucket
    assert health == [200] * 5  # probes are never limited
    # each port counts on its own (an MCP tool call is several requests, a REST call one)
    assert [r.status_code for r in mcp[:3]] == [400] * 3  # the MCP server refuses `{}` itself
    assert assert_problem(mcp[3], 429)["code"] == "too_many_requests"
    assert sandbox.requests() == 4


def test_rate_limit_is_off_on_loopback_unless_asked_and_on_elsewhere() -> None:
    assert Options().rate == 0 and Options(host="::1").rate == 0
    assert Options(host="0.0.0.0", token="t").rate == 50 and Options(host="0.0.0.0", token="t", rate_limit=0).rate == 0
    assert Options(rate_limit=5).rate == 5


def test_request_head_and_body_size_caps(sandbox: LiveSandbox) -> None:
    with running(sandbox_settings(sandbox.url), max_header=2048, max_body=1024) as launcher:
        rest, mcp = launcher.urls["rest"], launcher.urls["mcp"]
        big_header = httpx.get(rest + WALLET, headers={"X-Padding": "x" * 4096})
        long_url = httpx.get(rest + WALLET, params={"teamId": "t" * 4096})
        fine = httpx.get(rest + WALLET, headers={"X-Padding": "x" * 1000})
        accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        declared = httpx.post(mcp, content=b"{" + b" " * 2000 + b"}", headers=accept)

        def chunks():  # no Content-Length: only counting what arrives can tell
            for _ in range(40):
                yield b" " * 100

        streamed = httpx.post(mcp, content=chunks(), headers=accept)
    assert assert_problem(big_header, 431)["code"] == "headers_too_large"
    assert long_url.status_code == 431
    assert fine.status_code == 200
    assert assert_problem(declared, 413)["code"] == "body_too_large"
    assert assert_problem(streamed, 413)["code"] == "body_too_large"
    assert sandbox.requests() == 1


def test_slow_clients_are_answered_408_and_disconnected(sandbox: LiveSandbox) -> None:
    """A body that never comes is answered 408 and the connection closed. (A request head that
    trickles in is the ingress's to bound: deploy/ and reference/serve.md.)"""
    with running(sandbox_settings(sandbox.url), client_timeout=0.3) as launcher:
        rest, mcp = launcher.urls["rest"], launcher.urls["mcp"]
        body = raw_exchange(
            mcp,
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Accept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{",
        )
        # a prompt client on the same server is served
        assert httpx.get(rest + WALLET).status_code == 200
    assert body.startswith(b"HTTP/1.1 408 "), body[:200]
    assert b"application/problem+json" in body and b"request_timeout" in body
    assert sandbox.requests() == 1


def test_bounds_from_the_command_line(home: Path) -> None:
    flags = (
        "--max-upstream 4 --rate-limit 2.5 --rate-burst 5 --max-body 100 --max-header 4096 --client-timeout 3 "
        "--max-report-rows 5"
    )
    ns = build_parser().parse_args(["serve", *flags.split()])
    assert options_from(ns) == Options(
        max_upstream=4,
        rate_limit=2.5,
        rate_burst=5,
        max_body=100,
        max_header=4096,
        client_timeout=3,
        max_report_rows=5,
    )
    assert options_from(build_parser().parse_args(["serve"])) == Options()
    with pytest.raises(ConfigError, match="--client-timeout must be > 0"):
        options_from(build_parser().parse_args(["serve", "--client-timeout", "0"]))
    with pytest.raises(ConfigError, match="--max-report-rows must be >= 1"):
        options_from(build_parser().parse_args(["serve", "--max-report-rows", "0"]))
    out = run(["-m", "prime_billing", "serve", "--max-body", "-1"], script_env(home))
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--max-body must be >= 0" in out.stderr
    # what each bound is for, as `serve --help` tells it: the client timeout bounds the body only
    helped = " ".join(run(["-m", "prime_billing", "serve", "--help"], script_env(home)).stdout.split())
    timeout_help = helped[helped.rindex("--client-timeout S") :].split(" --", 1)[0]
    assert "body" in timeout_help and "head" not in timeout_help
    assert "--max-report-rows N" in helped
