"""One client, two faces: `Client` (sync) and `AsyncClient` (async).

Both faces share request building, the retry decision and error mapping
(`_Core`); each face only does its own I/O and sleeping. Reads are idempotent,
so 429/502/503/504, timeouts and dropped connections are retried with
exponential backoff and jitter, honouring `Retry-After`, within a bounded
total wait.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from . import __version__
from . import operations as ops
from .config import Settings, load_settings
from .errors import (
    APIError,
    AuthenticationError,
    BadResponseError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    PrimeBillingError,
    RateLimitError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
    UpstreamValidationError,
    redact,
)
from .models import RunUsage, Wallet
from .render import SANDBOX_BANNER

M = TypeVar("M", bound=BaseModel)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: bodies above this are refused without being read whole
MAX_BODY_BYTES = 8 * 1024 * 1024
SANDBOX_HEADER = "x-prime-sandbox"
USER_AGENT = f"prime-billing/{__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    #: first backoff, doubled each retry, before jitter
    base_delay: float = 0.5
    max_delay: float = 8.0
    #: ceiling on the sum of all waits of one call
    budget: float = 30.0

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter in [50%, 100%] (attempt counts from 1)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


@dataclass
class Result(Generic[M]):
    """A typed answer plus the upstream body exactly as it came (unknown fields kept)."""

    operation: ops.Operation
    data: M
    raw: dict[str, Any]
    args: dict[str, Any] = field(default_factory=dict)
    #: the answer came from the sandbox, not Prime's API
    sandbox: bool = False
    attempts: int = 1
    #: the upstream body's bytes as they came, when the answer is one upstream body (a server
    #: passes them on unchanged instead of encoding `raw` again); None for composite operations
    body: bytes | None = field(default=None, repr=False, compare=False)

    def summary(self, *, banner: bool = True) -> str:
        """Compact text; sandbox answers say so on their first line."""
        text = self.data.summary(**_summary_context(self.args))  # type: ignore[attr-defined]
        return f"{SANDBOX_BANNER}\n{text}" if self.sandbox and banner else text

    def json(self) -> str:
        return json.dumps(self.raw, ensure_ascii=False)

    @property
    def alert(self) -> str | None:
        """One line when a check did not pass (reconcile mismatch, balance below the minimum)."""
        alert = getattr(self.data, "alert", None)
        return alert if isinstance(alert, str) else None


#: called with each sub-call's Result while a composite operation runs (progress)
OnStep = Callable[[Result[Any]], None]


def _summary_context(args: Mapping[str, Any]) -> dict[str, Any]:
    return {"offset": args["offset"]} if "offset" in args else {}


def retry_after_seconds(value: str | None) -> float | None:
    """Parse `Retry-After` as seconds or an HTTP date; None when absent or garbled."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _detail(body: bytes) -> str:
    """The human part of a FastAPI error body, one line."""
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []) if x not in ("query", "path", "body"))
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        return "; ".join(parts)
    return ""


class _Core:
    """What both faces share: settings, request building, retry decisions, error mapping."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        retry: RetryPolicy | None = None,
        transport: Any = None,
        **overrides: Any,
    ) -> None:
        self.settings = settings if settings is not None else load_settings(**overrides)
        s = self.settings
        self.retry = retry or RetryPolicy(max_retries=s.max_retries, budget=s.retry_budget)
        if transport is None and s.sandbox:
            from .sandbox import Sandbox

            transport = httpx.MockTransport(Sandbox().handle)
        self._transport = transport

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    def _http_kwargs(self) -> dict[str, Any]:
        s = self.settings
        kwargs: dict[str, Any] = {
            "base_url": s.base_url,
            "timeout": httpx.Timeout(s.timeout, connect=s.connect_timeout),
            "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
            "follow_redirects": False,
        }
        if self._transport is not None:
            kwargs["transport"] = self._transport
        return kwargs

    def _checked(self, op: ops.Operation, args: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments to send: settings fill what the caller left out, then every one is checked."""
        given = dict(args)
        for param, setting in op.settings_defaults.items():
            if given.get(param) is None:
                given[param] = getattr(self.settings, setting)
        return op.check(given)

    def _next_delay(self, attempt: int, waited: float, retry_after: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if attempt > self.retry.max_retries:
            return None
        delay = self.retry.backoff(attempt)
        if retry_after is not None:
            delay = max(delay, retry_after)
        if waited + delay > self.retry.budget:
            return None
        return delay

    def _error_for_status(
        self, op: ops.Operation, status: int, body: bytes, headers: httpx.Headers, attempts: int
    ) -> PrimeBillingError:
        detail = redact(_detail(body), self.settings.api_key)
        said = f": {detail}" if detail else ""
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        if status == 401:
            return AuthenticationError(
                f"Prime API rejected the API key (401{said}): set a valid PRIME_API_KEY or run `prime login`",
                status=status,
            )
        if status == 402:
            return PaymentRequiredError(
                f"payment required (402{said}): add funds to the wallet in the Prime Intellect dashboard",
                status=status,
            )
        if status == 403:
            return PermissionDeniedError(
                f"access denied (403{said}): this key cannot read it; check the id, or the team (--team)",
                status=status,
            )
        if status == 404:
            what = "run" if any(p.location == "path" for p in op.params) else "wallet or team"
            return NotFoundError(f"{what} not found (404{said}): check the id", status=status)
        if status == 422:
            return UpstreamValidationError(f"Prime API refused the parameters (422{said}): fix them", status=status)
        if status == 429:
            ra = retry_after_seconds(headers.get("retry-after"))
            wait = f"wait {ra:g}s" if ra is not None else "wait a little"
            return RateLimitError(f"rate limited (429){tried}: {wait} and try again", status=status, retry_after=ra)
        if status == 504:
            # the upstream's own gateway gave up waiting: a timeout, like ours
            return UpstreamTimeoutError(f"Prime API timed out (504){tried}: try again later", status=status)
        if status >= 500:
            return UpstreamUnavailableError(
                f"Prime API unavailable ({status}){tried}: try again later",
                status=status,
                retry_after=retry_after_seconds(headers.get("retry-after")),
            )
        return APIError(f"Prime API answered {status}{said}", status=status)

    def _error_for_exception(self, exc: httpx.HTTPError, attempts: int) -> PrimeBillingError:
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return UpstreamTimeoutError(
                f"Prime API did not answer within {self.settings.timeout:g}s{tried}: "
                "try again later or raise PRIME_BILLING_TIMEOUT"
            )
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return UpstreamUnavailableError(
                f"cannot reach {self.settings.base_url}{tried}: check the network or PRIME_API_BASE_URL"
            )
        kind = type(exc).__name__
        return UpstreamUnavailableError(f"connection to Prime API failed ({kind}){tried}: try again later")

    def _result(
        self,
        op: ops.Operation,
        checked: dict[str, Any],
        response: httpx.Response,
        body: bytes,
        attempts: int,
    ) -> Result[Any]:
        ctype = response.headers.get("content-type", "")
        try:
            raw = json.loads(body)
        except ValueError:
            shown = ctype.split(";")[0] or "no content type"
            raise BadResponseError(
                f"Prime API answered {response.status_code} with a body that is not JSON ({shown}): "
                "try again later; if it persists check PRIME_API_BASE_URL",
                status=response.status_code,
            ) from None
        if not isinstance(raw, dict):
            raise BadResponseError(
                f"Prime API answered with JSON {type(raw).__name__}, not an object: "
                "try again later; if it persists report it",
                status=response.status_code,
            )
        try:
            data = op.model.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "body"
            raise BadResponseError(
                f"Prime API answer does not match the {op.model.__name__} schema ({loc}: {err['msg']}): "
                "upgrade prime-billing or report it",
                status=response.status_code,
            ) from None
        sandbox = response.headers.get(SANDBOX_HEADER) == "1" or self.settings.sandbox
        return Result(op, data, raw, checked, sandbox, attempts, body)

    def _plan(
        self, name: str, args: Mapping[str, Any], api_key: str | None, on_step: OnStep | None = None
    ) -> Generator[_Send | float, _Reply, Result[Any]]:
        """Any operation as one plan: a plain one is one exchange; a composite one runs its
        `compose` plan, feeding it the Result of each sub-call, itself a nested plan."""
        op = ops.get(name)
        checked = self._checked(op, args)
        if op.compose is None:
            return (yield from self._exchange(op, checked, api_key))
        report = op.compose(checked)
        sandbox, attempts = self.settings.sandbox, 0
        reply: Any = None
        while True:
            try:
                sub = report.send(reply)
            except StopIteration as done:
                model = done.value
                break
            reply = yield from self._plan(sub.name, sub.args, api_key, on_step)
            sandbox = sandbox or reply.sandbox
            attempts += reply.attempts
            if on_step is not None:
                on_step(reply)
        return Result(op, model, model.model_dump(mode="json"), checked, sandbox, attempts)

    def _exchange(
        self, op: ops.Operation, checked: dict[str, Any], api_key: str | None
    ) -> Generator[_Send | float, _Reply, Result[Any]]:
        """One upstream call as a plan both faces drive: yields a request to send or
        seconds to sleep, receives what the send produced, returns the Result."""
        key = api_key or self.settings.require_key()
        path, query = op.path_and_query(checked)
        request = _Send(op.method, path, query, {"Authorization": f"Bearer {key}"})
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            reply = yield request
            if isinstance(reply, httpx.HTTPError):
                delay = self._next_delay(attempt, waited, None)
                if delay is None:
                    raise self._error_for_exception(reply, attempt)
            else:
                response, body = reply
                status = response.status_code
                if status < 400:
                    return self._result(op, checked, response, body, attempt)
                delay = None
                if status in RETRY_STATUSES:
                    delay = self._next_delay(attempt, waited, retry_after_seconds(response.headers.get("retry-after")))
                if delay is None:
                    raise self._error_for_status(op, status, body, response.headers, attempt)
            yield delay
            waited += delay

    def _check_size(self, response: httpx.Response, received: int) -> None:
        length = response.headers.get("content-length", "")
        if received > MAX_BODY_BYTES or (length.isdigit() and int(length) > MAX_BODY_BYTES):
            raise BadResponseError(
                f"Prime API answer is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB: refused unread; "
                "if it persists check PRIME_API_BASE_URL"
            )


@dataclass(frozen=True)
class _Send:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


_Reply = tuple[httpx.Response, bytes] | httpx.HTTPError | None


class Client(_Core):
    """Synchronous face; thread-safe, so several runs can be fetched at once."""

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._http = httpx.Client(**self._http_kwargs())

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def call(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        api_key: str | None = None,
        on_step: OnStep | None = None,
    ) -> Result[Any]:
        plan = self._plan(name, args or {}, api_key, on_step)
        step = next(plan)
        while True:
            reply: _Reply = None
            if isinstance(step, _Send):
                reply = self._send(step)
            else:
                time.sleep(step)
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value

    def _send(self, req: _Send) -> _Reply:
        try:
            with self._http.stream(req.method, req.path, params=req.query, headers=req.headers) as response:
                self._check_size(response, 0)
                buf = bytearray()
                for chunk in response.iter_bytes():
                    buf += chunk
                    self._check_size(response, len(buf))
                return response, bytes(buf)
        except httpx.HTTPError as exc:
            return exc

    def get_run_usage(self, run_id: str) -> Result[RunUsage]:
        return self.call("get_run_usage", {"run_id": run_id})

    def get_wallet(
        self, *, limit: int | None = None, offset: int | None = None, team_id: str | None = None
    ) -> Result[Wallet]:
        return self.call("get_wallet", {"limit": limit, "offset": offset, "team_id": team_id})


class AsyncClient(_Core):
    """Async face: same plan, same behaviour, for servers and agents sharing one pool."""

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._http = httpx.AsyncClient(**self._http_kwargs())

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def call(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        api_key: str | None = None,
        on_step: OnStep | None = None,
    ) -> Result[Any]:
        import anyio

        plan = self._plan(name, args or {}, api_key, on_step)
        step = next(plan)
        while True:
            reply: _Reply = None
            if isinstance(step, _Send):
                reply = await self._send(step)
            else:
                await anyio.sleep(step)
            try:
                step = plan.send(reply)
            except StopIteration as done:
                return done.value

    async def _send(self, req: _Send) -> _Reply:
        try:
            async with self._http.stream(req.method, req.path, params=req.query, headers=req.headers) as response:
                self._check_size(response, 0)
                buf = bytearray()
                async for chunk in response.aiter_bytes():
                    buf += chunk
                    self._check_size(response, len(buf))
                return response, bytes(buf)
        except httpx.HTTPError as exc:
            return exc

    async def get_run_usage(self, run_id: str) -> Result[RunUsage]:
        return await self.call("get_run_usage", {"run_id": run_id})

    async def get_wallet(
        self, *, limit: int | None = None, offset: int | None = None, team_id: str | None = None
    ) -> Result[Wallet]:
        return await self.call("get_wallet", {"limit": limit, "offset": offset, "team_id": team_id})
