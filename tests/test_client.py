"""The client's two faces against the sandbox: in-process and over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from conftest import LiveSandbox
from prime_billing import errors
from prime_billing.client import AsyncClient, Client, RetryPolicy, retry_after_seconds
from prime_billing.config import SANDBOX_API_KEY, Settings, load_settings
from prime_billing.models import RunUsage
from prime_billing.sandbox import RUNS, Sandbox

FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05, budget=2.0)


def live_client(live: LiveSandbox, **kw: object) -> Client:
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=live.url, **kw)  # type: ignore[arg-type]
    return Client(settings, retry=FAST)


def test_sync_and_async_faces_return_the_same_result() -> None:
    box = Sandbox()
    with Client(sandbox=True) as sync_client:
        a = sync_client.get_run_usage("rft_sbx_cached")

    async def fetch() -> object:
        async with AsyncClient(sandbox=True) as c:
            return await c.get_run_usage("rft_sbx_cached")

    b = asyncio.run(fetch())
    assert a.raw == b.raw == {**RUNS["rft_sbx_cached"], "sandbox": True}  # type: ignore[attr-defined]
    assert a.data == b.data  # type: ignore[attr-defined]
    assert a.sandbox and box is not None


@pytest.mark.parametrize("face", ["sync", "async"])
def test_both_faces_retry_the_same_way(sandbox: LiveSandbox, face: str) -> None:
    sandbox.faults(next=[{"status": 503}, {"status": 429, "retry_after": "0"}, {"action": "reset"}])
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=sandbox.url)
    if face == "sync":
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
    assert info.value.status == 502 and info.value.http_status == 502
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
    sandbox.faults(latency=[0.5, 0.5])
    with (
        live_client(sandbox, timeout=0.1, max_retries=1) as c,
        pytest.raises(errors.UpstreamTimeoutError) as info,
    ):
        c.get_wallet()
    assert info.value.http_status == 504 and "did not answer within 0.1s" in str(info.value)


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
