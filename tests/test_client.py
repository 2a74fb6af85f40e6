"""The sync and async clients against the sandbox: in-process and over a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from conftest import LiveSandbox
from prime_billing import errors
from prime_billing.client import (
    DEFAULT_HEADERS,
    MAX_BODY_BYTES,
    AsyncClient,
    Client,
    Reply,
    Request,
    RetryPolicy,
    check_size,
    retry_after_seconds,
    url_for,
)
from prime_billing.config import SANDBOX_API_KEY, Settings, load_settings
from prime_billing.models import RunUsage
from prime_billing.sandbox import RUNS, Sandbox
from prime_billing.serve.rest import http_status

FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05, budget=2.0)


def live_client(live: LiveSandbox, **kw: object) -> Client:
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=live.url, **kw)  # type: ignore[arg-type]
    return Client(settings, retry=FAST)


def test_sync_and_async_faces_return_the_same_result() -> None:
    with Client(sandbox=True) as sync_client:
        a = sync_client.get_run_usage("rft_sbx_cached")

    async def fetch() -> object:
        async with AsyncClient(sandbox=True) as c:
            return await c.get_run_usage("rft_sbx_cached")

    b = asyncio.run(fetch())
    assert a.raw == b.raw == {**RUNS["rft_sbx_cached"], "sandbox": True}  # type: ignore[attr-defined]
    assert a.data == b.data and a.body == b.body  # type: ignore[attr-defined]
    # both say the figures are not real: the flag, and the banner on the first line
    assert a.sandbox and b.sandbox and a.attempts == b.attempts == 1  # type: ignore[attr-defined]
    assert a.summary() == b.summary() and a.summary().splitlines()[0].startswith("SANDBOX DATA")  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_both_clients_retry_the_same_way(sandbox: LiveSandbox, mode: str) -> None:
    sandbox.faults(next=[{"status": 503}, {"status": 429, "retry_after": "0"}, {"action": "reset"}])
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=sandbox.url)
    if mode == "sync":
        with Client(settings, retry=FAST) as c:
            result = c.get_wallet(limit=3)
    else:

        async def go() -> object:
            async with AsyncClient(settings, retry=FAST) as c:
                return await c.get_wallet(limit=3)

        result = asyncio.run(go())
    assert result.attempts == 4  # type: ignore[attr-defined]
    assert len(result.data.recent_billings) == 3  # type: ignore[attr-defined]
    assert sandbox.requests("/wallet") == 4


def test_retries_stop_at_the_limit_with_a_typed_error(sandbox: LiveSandbox) -> None:
    sandbox.faults(rate=1.0, rate_fault={"status": 502})
    with live_client(sandbox) as c, pytest.raises(errors.UpstreamUnavailableError) as info:
        c.get_wallet()
    assert info.value.status == 502 and http_status(info.value) == 502
    assert "after 4 attempts" in str(info.value)
    assert sandbox.requests() == 4


def test_retry_after_is_honoured_as_the_minimum_wait() -> None:
    core = Client(Settings(api_key="k"), retry=RetryPolicy(max_retries=3, base_delay=0.01, budget=10))
    assert core._next_delay(1, 0.0, 2.5) == 2.5
    assert core._next_delay(1, 9.0, 2.5) is None  # over budget: give up now
    assert core._next_delay(4, 0.0, None) is None  # over max_retries
    delays = [core._next_delay(1, 0.0, None) for _ in range(50)]
    assert all(0.005 <= d <= 0.01 for d in delays) and len(set(delays)) > 1  # jittered  # type: ignore[operator]
    when = datetime.now(UTC) + timedelta(seconds=30)
    assert 28 <= retry_after_seconds(format_datetime(when, usegmt=True)) <= 30  # type: ignore[operator]
    assert retry_after_seconds("garbage") is None and retry_after_seconds("-3") == 0.0


def test_read_timeout_becomes_upstream_timeout(sandbox: LiveSandbox) -> None:
    """The upstream holds every answer until released, so each attempt times out whatever the load."""
    sandbox.faults(hold=True)
    try:
        with (
            live_client(sandbox, timeout=0.1, max_retries=1) as c,
            pytest.raises(errors.UpstreamTimeoutError) as info,
        ):
            c.get_wallet()
        held = sandbox.requests()
    finally:
        sandbox.box.release()
    assert http_status(info.value) == 504 and "did not answer within 0.1s" in str(info.value)
    # every attempt the policy allows was sent, and each was left unanswered
    assert held == FAST.max_retries + 1 and f"after {held} attempts" in str(info.value)


def test_connection_refused_is_unavailable() -> None:
    with (
        Client(Settings(api_key="k", base_url="http://127.0.0.1:9"), retry=FAST) as c,
        pytest.raises(errors.UpstreamUnavailableError) as info,
    ):
        c.get_wallet()
    assert "cannot reach http://127.0.0.1:9" in str(info.value)


def test_huge_body_is_refused_without_reading_it(sandbox: LiveSandbox) -> None:
    sandbox.faults(next=[{"action": "huge"}])
    with live_client(sandbox) as c, pytest.raises(errors.BadResponseError, match="larger than 8 MiB"):
        c.get_wallet()


def test_huge_body_without_length_stops_reading_at_the_cap() -> None:
    produced = 0

    def chunks() -> Iterator[bytes]:
        nonlocal produced
        for _ in range(50):
            produced += 1 << 20
            yield b" " * (1 << 20)

    transport = httpx.MockTransport(lambda req: httpx.Response(200, content=chunks()))
    with (
        Client(Settings(api_key="k"), transport=transport) as c,
        pytest.raises(errors.BadResponseError, match="refused unread"),
    ):
        c.get_wallet()
    assert produced <= 10 << 20  # stopped near the 8 MiB cap, not at 50 MiB


def test_reprs_and_errors_never_hold_the_key(sandbox: LiveSandbox) -> None:
    secret = "pk-very-secret-123456"
    settings = Settings(api_key=secret, base_url=sandbox.url)
    assert secret not in repr(settings) and "api_key=<set>" in repr(settings)
    with Client(settings, retry=FAST) as c:
        assert secret not in repr(c)
        sandbox.faults(next=[{"status": 404, "body": f'{{"detail": "no run for {secret}"}}'}])
        with pytest.raises(errors.NotFoundError) as info:
            c.get_run_usage("rft_x")
    assert secret not in str(info.value) and secret not in repr(info.value)


def test_unknown_parameters_and_operations_are_refused() -> None:
    with Client(sandbox=True) as c:
        with pytest.raises(errors.InvalidInputError, match="takes no parameter 'bogus'"):
            c.call("get_wallet", {"bogus": 1})
        with pytest.raises(errors.InvalidInputError, match="unknown operation"):
            c.call("delete_everything", {})


def test_run_id_reaches_upstream_as_one_segment() -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode())
        return Sandbox().handle(request)

    with (
        Client(Settings(api_key=SANDBOX_API_KEY), transport=httpx.MockTransport(record)) as c,
        pytest.raises(errors.NotFoundError, match=r"Run rft:a\.b-c_d not found"),
    ):
        c.get_run_usage("rft:a.b-c_d")
    assert seen == ["/api/v1/billing/runs/rft%3Aa.b-c_d/usage"]


def test_cost_breakdown_from_rates() -> None:
    cached = RunUsage.model_validate(RUNS["rft_sbx_cached"]).costs
    assert cached.inference_input.tokens == 6_000_000 and cached.inference_input.cost_usd == pytest.approx(3.6)
    assert cached.inference_cached_input is not None
    assert cached.inference_cached_input.cost_usd == pytest.approx(0.6)
    assert cached.inference_derived_usd == pytest.approx(9.2)
    failed = RunUsage.model_validate(RUNS["rft_sbx_failed"]).costs
    assert failed.training.cost_usd is None and failed.inference_output.cost_usd is None
    assert failed.inference_derived_usd is None  # one unknown rate makes the sum unknown, not smaller
    old = RunUsage.model_validate(RUNS["rft_sbx_running"]).costs
    assert old.inference_cached_input is None and old.inference_input.tokens == 1_000_000


def test_models_keep_unknown_fields() -> None:
    run = RunUsage.model_validate({**RUNS["rft_sbx_cached"], "new_top": {"x": 1}})
    assert run.model_extra == {"billing_version": 2, "gpu_hours": 41.5, "new_top": {"x": 1}}
    dumped = run.model_dump(mode="json")
    assert dumped["new_top"] == {"x": 1} and dumped["inference"]["cached_input_tokens"] == 4_000_000


def test_settings_precedence_in_process(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("PRIME_API_KEY", "PRIME_API_BASE_URL", "PRIME_BASE_URL", "PRIME_TEAM_ID"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert (s.api_key, s.base_url, s.team_id) == (None, "https://api.primeintellect.ai", None)
    with pytest.raises(errors.ConfigError, match="run `prime login`"):
        s.require_key()
    env = {"PRIME_API_BASE_URL": "https://example.test/api/v1/", "PRIME_API_KEY": "k1"}
    assert load_settings(env=env).base_url == "https://example.test"
    assert load_settings(env=env, base_url="http://127.0.0.1:1").base_url == "http://127.0.0.1:1"
    with pytest.raises(errors.ConfigError, match="not an http"):
        load_settings(env={"PRIME_API_BASE_URL": "ftp://x"})
    with pytest.raises(errors.ConfigError, match="PRIME_BILLING_TIMEOUT"):
        load_settings(env={"PRIME_BILLING_TIMEOUT": "soon"})


def test_cached_input_above_input_is_counted_as_all_the_input_never_a_negative_line() -> None:
    """A backend reporting more cached input tokens than input tokens: the cached ones are part
    of the input, so at most all of it was cached. Figures worked by hand:
    input 1,000,000 tok, all cached @ $0.10/Mtok = $0.10; uncached 0 tok = $0.00;
    output 2,000,000 tok @ $1.50/Mtok = $3.00; inference derived $3.10 (billed: $3.25)."""
    body = {
        "run_id": "rft_over",
        "training": {"tokens": 0, "cost_usd": 0},
        "inference": {
            "tokens": 3_000_000,
            "input_tokens": 1_000_000,
            "output_tokens": 2_000_000,
            "cached_input_tokens": 3_000_000,
            "cost_usd": 3.25,
        },
        "total_tokens": 3_000_000,
        "total_cost_usd": 3.25,
        "pricing": {
            "inference_input_per_mtok": 0.5,
            "inference_cached_input_per_mtok": 0.1,
            "inference_output_per_mtok": 1.5,
        },
    }
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=body))
    with Client(Settings(api_key="k"), transport=transport) as c:
        result = c.get_run_usage("rft_over")
    costs = result.data.costs
    cached = costs.inference_cached_input
    assert cached is not None and (cached.tokens, cached.cost_usd) == (1_000_000, pytest.approx(0.10))
    assert (costs.inference_input.tokens, costs.inference_input.cost_usd) == (0, 0.0)
    assert (costs.inference_output.tokens, costs.inference_output.cost_usd) == (2_000_000, pytest.approx(3.0))
    assert costs.inference_derived_usd == pytest.approx(3.10) and costs.inference_billed_usd == 3.25
    text = result.summary()
    line = {
        label: next(ln for ln in text.splitlines() if ln.strip().startswith(label + " "))
        for label in ("input", "cached input", "output")
    }
    assert "1,000,000 tok" in line["cached input"] and line["cached input"].endswith("$0.10")
    assert " 0 tok" in line["input"] and line["input"].endswith("$0.00")
    assert "2,000,000 tok" in line["output"] and line["output"].endswith("$3.00")
    assert "-$" not in text
    # the body itself is passed on as it came: the upstream's own figure is not corrected
    assert result.raw["inference"]["cached_input_tokens"] == 3_000_000


# --------------------------------------------------------------------------- the send seam


def test_url_for_builds_the_one_url_every_sender_uses() -> None:
    assert url_for("https://x.test", Request("GET", "/api/v1/billing/wallet", {}, {})) == (
        "https://x.test/api/v1/billing/wallet"
    )
    request = Request("GET", "/api/v1/billing/wallet", {"limit": "5", "teamId": "t:1 b/c"}, {})
    assert (
        url_for("http://127.0.0.1:8", request)
        == "http://127.0.0.1:8/api/v1/billing/wallet?limit=5&teamId=t%3A1%20b%2Fc"
    )


def test_check_size_refuses_what_may_not_fit_and_lets_the_rest_through() -> None:
    check_size(httpx.Headers({"content-length": str(MAX_BODY_BYTES)}), MAX_BODY_BYTES)
    check_size({"content-encoding": "identity"})
    check_size({"content-length": "١٢٣٤٥٦٧٨٩"})  # not a length: the running count still caps it
    for headers, received in (
        ({"content-length": str(MAX_BODY_BYTES + 1)}, 0),
        ({}, MAX_BODY_BYTES + 1),
        ({"content-encoding": "gzip"}, 0),
    ):
        with pytest.raises(errors.BadResponseError, match="refused unread"):
            check_size(httpx.Headers(headers), received)


def test_requests_ask_for_json_uncompressed_and_carry_the_key_only_in_the_header() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=RUNS["rft_sbx_running"])

    with Client(Settings(api_key="k-123"), transport=httpx.MockTransport(answer)) as c:
        c.get_run_usage("rft_sbx_running")
    (request,) = seen
    assert {k: request.headers[k] for k in DEFAULT_HEADERS} == dict(DEFAULT_HEADERS)
    assert request.headers["accept-encoding"] == "identity" and request.headers["authorization"] == "Bearer k-123"
    assert "k-123" not in str(request.url)


class Scripted:
    """Replies handed out in order by an overriding `send`: a Reply, or an exception to raise."""

    def __init__(self, *steps: Reply | Exception) -> None:
        self.steps = list(steps)
        self.requests: list[Request] = []

    def next(self, request: Request) -> Reply:
        self.requests.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def _json_reply(status: int, data: object, **headers: str) -> Reply:
    return Reply(status, httpx.Headers({"content-type": "application/json", **headers}), json.dumps(data).encode())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_subclass_overriding_send_keeps_retries_errors_and_validation(mode: str) -> None:
    """`send` is the whole contract of a sender: the plan still retries, maps errors and validates."""
    script = Scripted(
        httpx.ConnectError("refused"),
        _json_reply(503, {"detail": "busy"}, **{"retry-after": "0"}),
        httpx.ReadTimeout("slow"),
        _json_reply(200, {**RUNS["rft_sbx_running"], "new_field": [1]}),
    )

    class SyncSender(Client):
        def send(self, request: Request) -> Reply:
            return script.next(request)

    class AsyncSender(AsyncClient):
        async def send(self, request: Request) -> Reply:
            return script.next(request)

    settings = Settings(api_key="k", base_url="http://nowhere.test")
    if mode == "sync":
        with SyncSender(settings, retry=FAST) as c:
            result = c.get_run_usage("rft_sbx_running")
    else:

        async def go() -> object:
            async with AsyncSender(settings, retry=FAST) as c:
                return await c.get_run_usage("rft_sbx_running")

        result = asyncio.run(go())
    assert result.attempts == 4 and result.data.run_id == "rft_sbx_running"  # type: ignore[attr-defined]
    assert result.raw["new_field"] == [1] and result.data.model_extra == {"new_field": [1]}  # type: ignore[attr-defined]
    assert (
        script.requests
        == [Request("GET", "/api/v1/billing/runs/rft_sbx_running/usage", {}, {"Authorization": "Bearer k"})] * 4
    )

    # and the errors are the plan's: a 404 from an overriding send reads as a 404 from httpx
    script.steps = [_json_reply(404, {"detail": "Run rft_x not found"})]
    with SyncSender(settings, retry=FAST) as c, pytest.raises(errors.NotFoundError, match="run not found \\(404"):
        c.get_run_usage("rft_x")


def test_result_raw_is_the_body_parsed_on_demand_and_composites_dump_their_model() -> None:
    body = json.dumps({**RUNS["rft_sbx_running"], "extra": {"kept": True}}, separators=(",", ":")).encode()
    transport = httpx.MockTransport(lambda r: httpx.Response(201, content=body))  # any 2xx is an answer
    with Client(Settings(api_key="k"), transport=transport) as c:
        result = c.get_run_usage("rft_sbx_running")
    assert result.body == body  # the bytes as they came, for a server to pass on
    assert result.raw == json.loads(body) and result.raw is result.raw  # parsed once
    assert json.loads(result.json()) == json.loads(body)
    with Client(sandbox=True) as c:
        report = c.call("reconcile_run", {"run_id": "rft_sbx_running"})
    assert report.body is None and report.raw == report.data.model_dump(mode="json")
