"""The launcher's hardening, each pinned on real loopback servers: proxies, HEAD, one parsed
credential, upstream calls paid from the caller's rate, the report cap, auth before the body,
strict Host/Origin, cancelled upstream calls, and the token file."""

from __future__ import annotations

import json
import math
import re
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import LiveSandbox, all_rows, assert_one_line_error, run, script_env, upstream_body
from prime_billing.config import SANDBOX_API_KEY
from proxy_harness import RELEASED_WALLET, ForwardingProxy, HangingUpstream, ServeProcess, serving
from serve_harness import PROBLEM, assert_problem, running, sandbox_settings, tool_call

WALLET = "/v1/api/v1/billing/wallet"
USAGE = "/v1/api/v1/billing/runs/rft_sbx_cached/usage"
SPEND = "/v1/prime-billing/spend"
RECONCILE = "/v1/prime-billing/runs/rft_sbx_running/reconcile"
WALLET_TOOL, SPEND_TOOL = "prime-intellect-getwallet", "prime-intellect-spend"
PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
NO_PROXY_VARS = ("NO_PROXY", "no_proxy")


# --------------------------------------------------------------------------- helpers


def base(url: str) -> str:
    """scheme://host:port of a URL (the MCP URL without /mcp)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP answer off a socket: status, headers (lower-case names) and the Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1."), data[:200]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def exchange(url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Raw request bytes on a fresh connection, and the answer. The 5 s socket timeout is only
    the failure guard: an answer that does not come raises instead of hanging the test."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(data)
        return read_answer(sock)


def get_bytes(path: str, *headers: str, version: str = "1.1") -> bytes:
    """A GET request head with exactly the header lines given (no Host unless given)."""
    return (f"GET {path} HTTP/{version}\r\n" + "".join(f"{h}\r\n" for h in headers) + "\r\n").encode("latin-1")


def problem_code(answer: tuple[int, dict[str, str], bytes], status: int) -> str:
    """The problem+json code of a raw answer that must have `status`."""
    got, headers, body = answer
    assert got == status, body[:300]
    assert headers["content-type"] == PROBLEM
    doc = json.loads(body)
    assert doc["status"] == status and "\n" not in doc["detail"]
    return str(doc["code"])


# --------------------------------------------------------------------------- proxies


def test_upstream_calls_go_through_the_proxy_the_environment_names(
    sandbox: LiveSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY (read when the launcher starts) carries REST and MCP upstream calls alike;
    without it, or with the upstream in NO_PROXY, the proxy sees nothing."""
    expected = upstream_body(sandbox, "/api/v1/billing/wallet")
    for name in PROXY_VARS + NO_PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    proxy = ForwardingProxy(sandbox.url)

    def both_faces() -> None:
        """A wallet over REST and over MCP: the upstream's own body, one upstream call each."""
        before = sandbox.requests()
        with running(sandbox_settings(sandbox.url)) as launcher, httpx.Client(trust_env=False, timeout=30) as c:
            rest = c.get(launcher.urls["rest"] + WALLET)
            tool = tool_call(c, launcher.urls["mcp"], WALLET_TOOL, {})
        assert rest.status_code == 200 and rest.json() == expected
        assert not tool.get("isError") and tool["structuredContent"] == expected
        assert sandbox.requests() - before == 2

    with serving(proxy) as proxy_url:
        monkeypatch.setenv("HTTP_PROXY", proxy_url)
        both_faces()
        assert proxy.count == 2  # both upstream calls went through it

        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        both_faces()
        assert proxy.count == 2

        monkeypatch.delenv("NO_PROXY")
        monkeypatch.delenv("HTTP_PROXY")
        both_faces()
        assert proxy.count == 2


# --------------------------------------------------------------------------- HEAD


def assert_heads_answered(rest: str, mcp: str) -> None:
    """HEAD on every kind of route: 200 with no body, at once (the 5 s timeout is the guard)."""
    with httpx.Client(trust_env=False, timeout=5) as client:
        for url in (rest + "/healthz", base(mcp) + "/healthz", rest + "/openapi.json", rest + WALLET, rest + USAGE):
            r = client.head(url)
            assert (r.status_code, r.content) == (200, b""), url


def test_head_is_answered_at_once_and_calls_nothing_upstream(sandbox: LiveSandbox) -> None:
    """HEAD on a forwarding route answers with no upstream call (the old server hung on it)."""
    with running(sandbox_settings(sandbox.url)) as launcher:
        assert_heads_answered(launcher.urls["rest"], launcher.urls["mcp"])
    assert sandbox.requests() == 0


def test_head_is_answered_by_the_launcher_process(home: Path) -> None:
    """The same through `prime-billing serve --sandbox` as a process."""
    with ServeProcess(script_env(home), "--sandbox", "--rest-port", "0", "--mcp-port", "0", "--no-access-log") as p:
        assert_heads_answered(p.urls["rest"], p.urls["mcp"])
    assert p.returncode == 0 and "Traceback" not in p.stderr


# --------------------------------------------------------------------------- one parsed credential


def test_one_credential_per_request_and_padding_buys_no_fresh_bucket(sandbox: LiveSandbox) -> None:
    """Two Authorization headers are refused; the token however padded is one caller; made-up
    tokens are limited by address, so neither buys a fresh rate bucket."""
    with running(sandbox_settings(sandbox.url), token="tok", rate_limit=0.05, rate_burst=2) as launcher:
        rest = launcher.urls["rest"]
        twice = exchange(
            rest, get_bytes(WALLET, "Host: 127.0.0.1", "Authorization: Bearer tok", "Authorization: Bearer tok")
        )
        padded = [
            exchange(
                rest,
                get_bytes(WALLET, "Host: 127.0.0.1", f"Authorization: Bearer {' ' * (1 + i % 4)}tok{' ' * (i % 3)}"),
            )
            for i in range(20)
        ]
        junk = [
            exchange(rest, get_bytes(WALLET, "Host: 127.0.0.1", f"Authorization: Bearer junk-{i}")) for i in range(20)
        ]
    assert problem_code(twice, 400) == "bad_request"
    assert [a[0] for a in padded] == [200, 200] + [429] * 18
    for answer in padded[2:]:
        assert problem_code(answer, 429) == "too_many_requests" and int(answer[1]["retry-after"]) >= 1
    assert [a[0] for a in junk] == [401, 401] + [429] * 18
    assert sandbox.requests() == 2  # the two padded requests let through, nothing else


def test_passthrough_bearers_not_yet_accepted_are_limited_by_address(sandbox: LiveSandbox) -> None:
    """In passthrough a made-up key is no caller of its own until the upstream accepts it."""
    settings = sandbox_settings(sandbox.url, api_key=None)
    with running(settings, auth="passthrough", rate_limit=0.05, rate_burst=2) as launcher:
        rest = launcher.urls["rest"]
        codes = [
            httpx.get(rest + WALLET, headers={"Authorization": f"Bearer made-up-{i}"}).status_code for i in range(8)
        ]
    assert codes == [401, 401] + [429] * 6
    assert sandbox.requests() == 2


# --------------------------------------------------------------------------- every upstream call is paid for


def test_every_upstream_call_of_a_report_counts_against_the_callers_rate(sandbox: LiveSandbox) -> None:
    """A spend report reading k pages spends k of the caller's tokens, not one."""
    total = upstream_body(sandbox, "/api/v1/billing/wallet")["total_billings"]
    page, burst = 10, 8
    pages = math.ceil(total / page)  # the personal wallet's 46 rows: 5 pages of at most 10
    assert pages < burst  # the report never waits for a token
    sandbox.faults(page_cap=page)
    with running(sandbox_settings(sandbox.url), rate_limit=0.01, rate_burst=burst) as launcher:
        rest = launcher.urls["rest"]
        before = sandbox.requests()
        report = httpx.get(rest + SPEND)
        calls = sandbox.requests() - before
        after = [httpx.get(rest + WALLET) for _ in range(burst - pages + 1)]
    assert report.status_code == 200, report.text
    assert (report.json()["row_count"], report.json()["pages"], calls) == (total, pages, pages)
    # burst - pages tokens left: that many more requests, then 429
    assert [r.status_code for r in after] == [200] * (burst - pages) + [429]
    assert assert_problem(after[-1], 429)["code"] == "too_many_requests"


# --------------------------------------------------------------------------- report cap


def test_a_report_over_the_row_cap_is_refused_and_a_narrower_one_served(sandbox: LiveSandbox) -> None:
    """Over `max_report_rows` a report is 422 report_too_large naming the cap, on REST and MCP,
    refused at the first page, before any batch of pages; a `since` that keeps the rows read under the cap is served."""
    rows = all_rows(sandbox)  # newest first, created_at strictly decreasing
    cap, page = 30, 10
    assert len(rows) > cap
    since = rows[4]["created_at"]  # five rows at or after it, all on the first page
    sandbox.faults(page_cap=page)
    with running(sandbox_settings(sandbox.url), max_report_rows=cap) as launcher:
        rest, mcp = launcher.urls["rest"], launcher.urls["mcp"]
        with httpx.Client(trust_env=False, timeout=30) as client:
            before = sandbox.requests()
            spend = client.get(rest + SPEND)
            spend_calls = sandbox.requests() - before
            tool = tool_call(client, mcp, SPEND_TOOL, {})
            tool_calls = sandbox.requests() - before - spend_calls
            before = sandbox.requests()
            reconcile = client.get(rest + RECONCILE)
            reconcile_calls = sandbox.requests() - before
            narrow = client.get(rest + SPEND, params={"since": since, "include_rows": "true"})
    named = re.compile(rf"\b{cap}\b")
    for r in (spend, reconcile):
        doc = assert_problem(r, 422)
        assert doc["code"] == "report_too_large" and named.search(doc["detail"]), doc
    assert spend_calls == 1 and tool_calls == 1
    # the advice fits the report: spend takes a start date, reconcile does not
    assert "?since=" in spend.json()["detail"] and "since" not in reconcile.json()["detail"]
    assert reconcile_calls == 2  # the run's usage, then the first wallet page
    assert tool.get("isError") is True
    text = tool["content"][0]["text"]
    assert named.search(text) and "\n" not in text
    assert narrow.status_code == 200, narrow.text
    assert [r["id"] for r in narrow.json()["rows"]] == [r["id"] for r in rows[:5]]


def test_a_since_report_is_bounded_by_the_rows_it_keeps(sandbox: LiveSandbox) -> None:
    """Five rows since the date, a cap of 30, the upstream's pages as large as they come: served."""
    rows = all_rows(sandbox)
    since = rows[4]["created_at"]
    with running(sandbox_settings(sandbox.url), only="rest", max_report_rows=30) as launcher:
        narrow = httpx.get(launcher.urls["rest"] + SPEND, params={"since": since, "include_rows": "true"})
    assert narrow.status_code == 200, narrow.text
    assert [r["id"] for r in narrow.json()["rows"]] == [r["id"] for r in rows[:5]]


# --------------------------------------------------------------------------- auth before the body


def test_a_request_without_the_token_is_refused_before_its_body_is_read(sandbox: LiveSandbox) -> None:
    """A declared 100 kB body that never comes: 401 at once, not a wait for the body (then 408)."""
    with running(sandbox_settings(sandbox.url), token="tok") as launcher:
        head = (
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        answer = exchange(launcher.urls["mcp"], head)
    assert problem_code(answer, 401) == "unauthorized"
    assert sandbox.requests() == 0


# --------------------------------------------------------------------------- Host and Origin

#: (request head lines, HTTP version) -> the status the REST port must answer
HOST_AND_ORIGIN: dict[str, tuple[list[str], str, int]] = {
    "v6 address then a name": (["Host: [::1]evil.com"], "1.1", 421),
    "loopback name as a prefix": (["Host: localhost.evil.com"], "1.1", 421),
    "junk after the port": (["Host: 127.0.0.1:8080x"], "1.1", 421),
    "no Host at all": ([], "1.0", 421),
    "two Host headers": (["Host: 127.0.0.1", "Host: 127.0.0.1"], "1.1", 400),
    "two Origin headers": (["Host: 127.0.0.1", "Origin: http://localhost", "Origin: http://localhost"], "1.1", 400),
    "loopback Origin as a prefix": (["Host: 127.0.0.1", "Origin: http://localhost.evil.com"], "1.1", 403),
    "localhost with a port": (["Host: localhost:1234"], "1.1", 200),
    "v6 loopback with a port": (["Host: [::1]:80"], "1.1", 200),
}


def test_host_and_origin_are_read_strictly(sandbox: LiveSandbox) -> None:
    """Exactly one Host naming this server as `name[:port]`, and at most one allowed Origin;
    anything else is refused before the upstream is called."""
    expected_body = upstream_body(sandbox, "/api/v1/billing/wallet")
    before = sandbox.requests()
    answers = {}
    with running(sandbox_settings(sandbox.url), only="rest") as launcher:
        for case, (lines, version, _) in HOST_AND_ORIGIN.items():
            answers[case] = exchange(
                launcher.urls["rest"], get_bytes(WALLET, *lines, "Connection: close", version=version)
            )
    assert {case: a[0] for case, a in answers.items()} == {case: c[2] for case, c in HOST_AND_ORIGIN.items()}
    codes = {400: "bad_request", 403: "bad_origin", 421: "bad_host"}
    for case, answer in answers.items():
        if answer[0] == 200:
            assert json.loads(answer[2]) == expected_body, case
        else:
            assert problem_code(answer, answer[0]) == codes[answer[0]], case
    assert sandbox.requests() - before == 2  # only the two served


# --------------------------------------------------------------------------- cancellation


#: a wallet GET that keeps its connection open
WALLET_GET = get_bytes(WALLET, "Host: 127.0.0.1")


def test_the_upstream_call_is_dropped_once_its_caller_hangs_up() -> None:
    """A caller hanging up mid-call makes the launcher hang up upstream too."""
    upstream = HangingUpstream()
    with serving(upstream) as url, running(sandbox_settings(url, timeout=60)) as launcher:
        rest = urlsplit(launcher.urls["rest"])
        with socket.create_connection((rest.hostname, rest.port), timeout=5) as sock:
            sock.sendall(WALLET_GET)
            assert upstream.arrived.wait(10), "the upstream never got the call"
        assert upstream.left.wait(5), "the launcher kept the upstream call open for nobody"


def test_a_shared_upstream_call_outlives_one_of_its_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two callers share one upstream call; the first hanging up does not cancel it for the second."""
    upstream = HangingUpstream()
    with serving(upstream) as url, running(sandbox_settings(url, timeout=60)) as launcher:
        gateway = launcher.gateway
        assert gateway is not None
        call = gateway.call
        entered, first_done = threading.Event(), threading.Event()
        seen = 0

        async def observed(*args: Any, **kwargs: Any) -> Any:
            # no await between here and joining the shared call: once `entered` is set, both have joined
            nonlocal seen
            seen += 1
            mine = seen
            if mine == 2:
                entered.set()
            try:
                return await call(*args, **kwargs)
            finally:
                if mine == 1:
                    first_done.set()

        monkeypatch.setattr(gateway, "call", observed)
        rest = urlsplit(launcher.urls["rest"])
        first = socket.create_connection((rest.hostname, rest.port), timeout=5)
        second = socket.create_connection((rest.hostname, rest.port), timeout=10)
        try:
            first.sendall(WALLET_GET)
            assert upstream.arrived.wait(10)
            second.sendall(WALLET_GET)
            assert entered.wait(10), "the second caller never reached the gateway"
            first.close()
            assert first_done.wait(10), "the launcher did not notice the first caller leave"
            upstream.release.set()
            status, _, body = read_answer(second)
        finally:
            first.close()
            second.close()
        assert not upstream.left.is_set()
    assert status == 200 and json.loads(body) == RELEASED_WALLET
    assert upstream.count == 1


# --------------------------------------------------------------------------- token from a file


def test_the_token_comes_from_a_file_and_on_the_command_line_warns(home: Path, tmp_path: Path) -> None:
    """--token-file: its contents (stripped) are the token; --token works but warns; a missing
    or empty file is a one-line start-up error."""
    path = tmp_path / "token"
    path.write_text("  file-token-42\n", encoding="utf-8")
    args = ("--sandbox", "--rest-port", "0", "--only", "rest", "--no-access-log")
    env = script_env(home)

    def codes(rest: str, good: str) -> list[int]:
        tries = ({"Authorization": f"Bearer {good}"}, {}, {"Authorization": f"Bearer {good[:-1]}"})
        return [httpx.get(rest + WALLET, headers=h, trust_env=False, timeout=10).status_code for h in tries]

    with ServeProcess(env, *args, "--token-file", str(path)) as from_file:
        assert codes(from_file.urls["rest"], "file-token-42") == [200, 401, 401]
    assert (from_file.returncode, from_file.stderr) == (0, "")

    with ServeProcess(env, *args, "--token", "cli-token-7") as from_argv:
        assert codes(from_argv.urls["rest"], "cli-token-7") == [200, 401, 401]
    assert from_argv.returncode == 0
    assert from_argv.stderr.count("\n") == 1 and "--token-file" in from_argv.stderr

    missing = run(["-m", "prime_billing", "serve", *args, "--token-file", str(tmp_path / "nope")], env)
    assert_one_line_error(missing, 2, "--token-file")
    (tmp_path / "empty").write_text(" \n", encoding="utf-8")
    empty = run(["-m", "prime_billing", "serve", *args, "--token-file", str(tmp_path / "empty")], env)
    assert_one_line_error(empty, 2, "--token-file")
    assert "cli-token-7" not in from_argv.stderr and SANDBOX_API_KEY not in from_argv.stderr


@pytest.mark.parametrize(
    ("source", "value", "needle"),
    [
        pytest.param("file", b"\xffsecret-tok\xfe", "is not UTF-8 text", id="file-not-utf8"),
        pytest.param("file", b"secret-tok\nother-half", "holds a line break, space or control", id="file-two-lines"),
        pytest.param("file", b"secret-tok other-half\n", "holds a line break, space or control", id="file-space"),
        pytest.param("env", "   \t ", "PRIME_BILLING_TOKEN is empty or only whitespace", id="env-blank"),
        pytest.param("env", "secret-tok\nother-half", "PRIME_BILLING_TOKEN holds a line break", id="env-two-lines"),
        pytest.param("env", "secret-tok\x1bother-half", "PRIME_BILLING_TOKEN holds a line break", id="env-control"),
        pytest.param("argv", "  ", "--token is empty or only whitespace", id="argv-blank"),
    ],
)
def test_a_token_no_caller_could_send_is_refused_at_start(
    home: Path, tmp_path: Path, source: str, value: str | bytes, needle: str
) -> None:
    """A token that is blank, not text, or more than one word would make every caller's request a 401
    (or, blank, turn the check off): refused before anything listens, in one line that never echoes it."""
    args = ["-m", "prime_billing", "serve", "--sandbox", "--rest-port", "0", "--only", "rest", "--no-access-log"]
    env = script_env(home)
    if source == "file":
        path = tmp_path / "token"
        path.write_bytes(value)  # type: ignore[arg-type]
        args += ["--token-file", str(path)]
    elif source == "env":
        env["PRIME_BILLING_TOKEN"] = str(value)
    else:
        args += ["--token", str(value)]
    out = run(args, env, timeout=30)
    assert out.returncode == 2 and out.stdout == "", out.stderr
    error = out.stderr.splitlines()[-1]  # --token warns first
    assert needle in error and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.count("\n") == (2 if source == "argv" else 1)
    assert "secret-tok" not in out.stderr and "other-half" not in out.stderr
