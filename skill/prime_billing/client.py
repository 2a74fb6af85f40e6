"""One client, sync and async: `Client` and `AsyncClient`.

Both share request building, the retry decision and error mapping
(`_Core`, one plan); each only does its own I/O and sleeping. Reads are
idempotent, so 429/502/503/504, timeouts and dropped connections are retried
with exponential backoff and jitter, honouring `Retry-After`, within a bounded
total wait.

The seam: `send(request) -> Reply` is one attempt and nothing else. A subclass
that sends another way (another HTTP library, a pool of its own) overrides
`send` only: it sends `DEFAULT_HEADERS` plus `request.headers` to
`url_for(base_url, request)`, calls `check_size` on the head and after each
chunk of raw bytes, and raises an `httpx.TransportError` subclass when the
transport fails (`ConnectError`, `ConnectTimeout`, `ReadTimeout`,
`ReadError`...). Retries, the per-attempt deadline, error mapping and
validation stay here.
"""

from __future__ import annotations

import contextvars
import functools
import json
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Generic, NamedTuple, TypeVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, ValidationError

from . import operations as ops
from .__version__ import __version__
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
from .plan import SubCall
from .wording import Surface, mark, phrase

M = TypeVar("M", bound=BaseModel)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: bodies above this are refused without being read whole
MAX_BODY_BYTES = 8 * 1024 * 1024
SANDBOX_HEADER = "x-prime-sandbox"
#: most characters of an upstream error detail an error quotes (escapes count whole)
DETAIL_CHARS = 200
USER_AGENT = f"prime-billing/{__version__}"
#: sent with every request. No compression: a compressed body's size on the wire says nothing
#: of its size once inflated (1 MB of gzip can be 1 GiB), so the body cap could not hold.
DEFAULT_HEADERS: Mapping[str, str] = {
    "User-Agent": USER_AGENT,
    "Accept": "application/json",
    "Accept-Encoding": "identity",
}


class Request(NamedTuple):
    """One upstream request as the plan asks for it: a path under the base URL, its query,
    and the per-call headers (the key); `DEFAULT_HEADERS` go with it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class Reply(NamedTuple):
    """What one attempt got back. `headers` is any case-insensitive mapping with `.get`
    (httpx.Headers, aiohttp's CIMultiDictProxy...): the plan only reads a few by name."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def url_for(base_url: str, request: Request) -> str:
    """The absolute URL of `request`: both clients and every `send` build it this one way."""
    url = base_url + request.path
    return f"{url}?{urlencode(request.query, quote_via=quote)}" if request.query else url


def check_size(headers: Mapping[str, str], received: int = 0) -> None:
    """Refuse an answer that may not fit under `MAX_BODY_BYTES`, before reading more of it.

    Call it with the head (`received=0`), then with the running count of raw bytes
    after each chunk. A compressed answer is refused too, although none is asked for:
    its inflated size is unknown until it is inflated, which is the harm.
    """
    encoding = (headers.get("content-encoding") or "").strip()
    if encoding and encoding.lower() != "identity":
        from .untrusted import shown  # upstream text, in an error only

        raise BadResponseError(
            f"Prime API answered with a compressed body (Content-Encoding: {shown(encoding, 40)}) though none was "
            "asked for: refused unread; if it persists check PRIME_API_BASE_URL"
        )
    length = headers.get("content-length") or ""
    stated = length.isascii() and length.isdigit() and (len(length) > 18 or int(length) > MAX_BODY_BYTES)
    if received > MAX_BODY_BYTES or stated:
        raise BadResponseError(
            f"Prime API answer is larger than {MAX_BODY_BYTES // (1024 * 1024)} MiB: refused unread; "
            "if it persists check PRIME_API_BASE_URL"
        )


class RetryPolicy(NamedTuple):
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
    """A typed answer, with the upstream body exactly as it came (unknown fields kept)."""

    operation: ops.Operation
    data: M
    args: dict[str, Any] = field(default_factory=dict)
    #: the answer came from the sandbox, not Prime's API
    sandbox: bool = False
    attempts: int = 1
    #: the upstream body's bytes as they came, when the answer is one upstream body (a server
    #: passes them on unchanged instead of encoding `raw` again); None for composite operations
    body: bytes | None = field(default=None, repr=False, compare=False)
    _raw: dict[str, Any] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def raw(self) -> dict[str, Any]:
        """The answer as JSON data: the body parsed (on first use only, since a server that
        passes `body` on never needs it), or a composite operation's model dumped."""
        if self._raw is None:
            self._raw = json.loads(self.body) if self.body is not None else self.data.model_dump(mode="json")
        return self._raw

    def summary(self, *, banner: bool = True, surface: Surface = "tool", bars: bool = False) -> str:
        """Compact text, its advice in `surface`'s terms; sandbox answers say so on their first line.
        `bars`: a bar per period (for a person at a terminal; the CLI knows when stdout is one)."""
        from .render import SANDBOX_BANNER, render  # only for text: `--json` never loads it

        text = phrase(render(self.data, bars=bars, **_summary_context(self.args)).text(), surface)
        return f"{SANDBOX_BANNER}\n{text}" if self.sandbox and banner else text

    def json(self) -> str:
        """The answer as JSON text: the upstream body exactly as it came, or a composite answer's
        model encoded by pydantic in one pass (a report of thousands of rows, never dumped to
        Python objects and encoded again)."""
        if self.body is not None:
            return self.body.decode()
        return self.data.model_dump_json()

    @property
    def alert(self) -> str | None:
        """One line when a check did not pass (reconcile mismatch, balance below the minimum)."""
        return self.alert_in("tool")

    def alert_in(self, surface: Surface) -> str | None:
        failure = getattr(self.data, "failure", None)
        text = failure() if callable(failure) else None
        return phrase(text, surface) if text else None


#: called with each sub-call's Result while a composite operation runs (progress)
OnStep = Callable[[Result[Any]], None]


def _summary_context(args: Mapping[str, Any]) -> dict[str, Any]:
    return {"offset": args["offset"]} if "offset" in args else {}


#: the longest wait a `Retry-After` is read as: a day, a daily quota's window. Longer (`1e308`, a
#: date centuries ahead) or not a number at all (`inf`, `nan`) is garbage, read as this, so every
#: wait is a finite number of seconds to print or pass on; the retry budget still ends the retries.
MAX_RETRY_AFTER = 86_400.0


def retry_after_seconds(value: str | None) -> float | None:
    """Parse `Retry-After` as seconds or an HTTP date, within [0, MAX_RETRY_AFTER]; None when absent
    or neither."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    return MAX_RETRY_AFTER if math.isnan(seconds) else min(max(0.0, seconds), MAX_RETRY_AFTER)


def _detail(body: bytes) -> str:
    """The human part of a FastAPI error body, one line; "" when there is none to read."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
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


class _Batch(NamedTuple):
    """Sub-plans a composite plan asked for together: the client runs them at once and answers with
    their Results in order; the first to fail abandons the others and is raised as itself."""

    plans: list[Generator[Any, Any, Result[Any]]]


#: what a plan asks its driver for: a request to send, seconds to sleep, or sub-plans to run at once
Step = Request | float | _Batch
#: what a driver hands back to the plan after a step: the attempt's Reply or why it failed
#: (a transport error, or the deadline: TimeoutError); None after a sleep; a batch's Results
Outcome = Reply | httpx.RequestError | TimeoutError | list[Result[Any]] | None


class _Core:
    """What both clients share: settings, request building, retry decisions, error mapping."""

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

    @property
    def base_url(self) -> str:
        """Where requests go: `url_for(self.base_url, request)`."""
        return self.settings.base_url

    @property
    def timeout(self) -> float:
        """Seconds one attempt may take in all (connect, head and body): the deadline."""
        return self.settings.timeout

    @property
    def connect_timeout(self) -> float:
        return self.settings.connect_timeout

    def _http_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "timeout": httpx.Timeout(self.timeout, connect=self.connect_timeout),
            "headers": DEFAULT_HEADERS,
            "follow_redirects": False,
        }
        if self._transport is not None:
            kwargs["transport"] = self._transport
        return kwargs

    def checked(self, op: ops.Operation, args: Mapping[str, Any]) -> dict[str, Any]:
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

    def _error_for_status(self, op: ops.Operation, reply: Reply, attempts: int) -> PrimeBillingError:
        status, headers = reply.status, reply.headers
        from .untrusted import quoted  # upstream text, in an error only

        detail = redact(_detail(reply.body), self.settings.api_key)
        said = f": {quoted(detail, DETAIL_CHARS)}" if detail else ""
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        if 300 <= status < 400:
            # never followed: a redirect would carry the key to wherever it points
            return APIError(
                f"Prime API answered {status} (a redirect, not followed): check PRIME_API_BASE_URL", status=status
            )
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
            team = f", or the team ({mark('team_id')})" if any(p.name == "team_id" for p in op.params) else ""
            return PermissionDeniedError(
                f"access denied (403{said}): this key cannot read it; check the id{team}", status=status
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

    def _error_for_exception(self, exc: BaseException, attempts: int) -> PrimeBillingError:
        tried = f" after {attempts} attempts" if attempts > 1 else ""
        # TimeoutError: the attempt's deadline (async driver); ReadTimeout & co: httpx's own, or the sync deadline
        if isinstance(exc, TimeoutError) or (
            isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout)
        ):
            return UpstreamTimeoutError(
                f"Prime API did not answer within {self.timeout:g}s{tried}: "
                "try again later or raise PRIME_BILLING_TIMEOUT"
            )
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
            return UpstreamUnavailableError(
                f"cannot reach {self.base_url}{tried}: check the network or PRIME_API_BASE_URL"
            )
        kind = type(exc).__name__
        return UpstreamUnavailableError(f"connection to Prime API failed ({kind}){tried}: try again later")

    def _result(self, op: ops.Operation, checked: dict[str, Any], reply: Reply, attempts: int) -> Result[Any]:
        """The body validated straight from its bytes, in one pass (half the cost of parsing, then
        validating); what that refuses is read again the long way, which says exactly what is wrong."""
        try:
            data = op.model.model_validate_json(reply.body)
        except ValidationError:
            return self._result_explained(op, checked, reply, attempts)
        return Result(op, data, checked, self._from_sandbox(reply), attempts, reply.body)

    def _result_explained(self, op: ops.Operation, checked: dict[str, Any], reply: Reply, attempts: int) -> Result[Any]:
        """Parse, then validate, so the refusal names its cause: not JSON, too deep, not an
        object, or the first field that does not match the schema."""
        status = reply.status
        try:
            raw = json.loads(reply.body)
        except RecursionError:
            raise BadResponseError(
                f"Prime API answered {status} with JSON nested too deeply to read: "
                "try again later; if it persists report it",
                status=status,
            ) from None
        except ValueError:
            from .untrusted import shown

            kind = (reply.headers.get("content-type") or "").split(";")[0].strip()
            said = shown(kind, 60) if kind else "no content type"
            raise BadResponseError(
                f"Prime API answered {status} with a body that is not JSON ({said}): "
                "try again later; if it persists check PRIME_API_BASE_URL",
                status=status,
            ) from None
        if not isinstance(raw, dict):
            raise BadResponseError(
                f"Prime API answered with JSON {type(raw).__name__}, not an object: "
                "try again later; if it persists report it",
                status=status,
            )
        try:
            data = op.model.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err["loc"]) or "body"
            raise BadResponseError(
                f"Prime API answer does not match the {op.model.__name__} schema ({loc}: {err['msg']}): "
                "upgrade prime-billing or report it",
                status=status,
            ) from None
        result = Result(op, data, checked, self._from_sandbox(reply), attempts, reply.body)
        result._raw = raw
        return result

    def _from_sandbox(self, reply: Reply) -> bool:
        return reply.headers.get(SANDBOX_HEADER) == "1" or self.settings.sandbox

    def _plan(
        self, name: str, args: Mapping[str, Any], api_key: str | None, on_step: OnStep | None = None
    ) -> Generator[Step, Outcome, Result[Any]]:
        """Any operation as one plan: a plain one is one exchange; a composite one runs its
        `compose` plan, feeding it the Result of each sub-call, itself a nested plan. Sub-calls
        asked for together go to the client as one `_Batch`, which runs them at once; `on_step`
        then sees their Results in the order they were asked for, before the plan goes on."""
        op = ops.get(name)
        checked = self.checked(op, args)
        if op.compose is None:
            return (yield from self._exchange(op, checked, api_key))
        report = op.compose(checked)
        sandbox, attempts = self.settings.sandbox, 0
        answer: Any = None
        while True:
            try:
                ask = report.send(answer)
            except StopIteration as done:
                return Result(op, done.value, checked, sandbox, attempts)
            answer = None  # the plan has them: no page it has placed is held here while the next ones come
            subs = [ask] if isinstance(ask, SubCall) else list(ask)
            plans = [self._plan(sub.name, sub.args, api_key, on_step) for sub in subs]
            results = [(yield from plans[0])] if len(plans) == 1 else (yield _Batch(plans))
            for result in results:
                sandbox = sandbox or result.sandbox
                attempts += result.attempts
                if on_step is not None:
                    on_step(result)
            answer = results[0] if isinstance(ask, SubCall) else results
            results = result = None  # `answer` alone holds them now, until the plan has them

    def _exchange(
        self, op: ops.Operation, checked: dict[str, Any], api_key: str | None
    ) -> Generator[Step, Outcome, Result[Any]]:
        """One upstream call as a plan both clients drive: yields a request to send or
        seconds to sleep, receives what the send produced, returns the Result."""
        key = api_key or self.settings.require_key()
        path, query = op.path_and_query(checked)
        request = Request(op.method, path, query, {"Authorization": f"Bearer {key}"})
        attempt, waited = 0, 0.0
        while True:
            attempt += 1
            reply = yield request
            if isinstance(reply, Reply):
                if 200 <= reply.status < 300:
                    return self._result(op, checked, reply, attempt)
                delay = None
                if reply.status in RETRY_STATUSES:
                    delay = self._next_delay(attempt, waited, retry_after_seconds(reply.headers.get("retry-after")))
                if delay is None:
                    raise self._error_for_status(op, reply, attempt)
            else:
                assert reply is not None, "a driver answers a request with a Reply or an exception"
                delay = self._next_delay(attempt, waited, None)
                if delay is None:
                    raise self._error_for_exception(reply, attempt)
            yield delay
            waited += delay


def _advance(plan: Generator[Step, Outcome, Result[Any]], outcome: Outcome) -> tuple[bool, Any]:
    """The plan's next step, or (True, its Result): a StopIteration cannot cross a thread's future."""
    try:
        return False, plan.send(outcome)
    except StopIteration as finished:
        return True, finished.value


class _Workers:
    """The sync client's threads for its batches: started as work needs them, up to `size`, and kept
    (a thread started per page costs more than the page).

    Daemon threads, because the interpreter joins `concurrent.futures.ThreadPoolExecutor`'s and
    `multiprocessing.pool.ThreadPool`'s workers when it exits: a page abandoned when another of
    its batch failed may be blocked in a read that nothing here can wake (closing an httpx client
    does not), and a joined worker holds the process, its error already reported, until that read
    times out. A daemon ends with the process. Jobs report their own outcome and never raise.
    """

    def __init__(self, size: int, name: str) -> None:
        import queue

        self.size, self.name = size, name
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._started = 0
        #: one permit per thread waiting for a job: a job takes one, or starts a thread
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self._closed = False

    def run(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            self._jobs.put(job)
            if not self._idle.acquire(blocking=False) and self._started < self.size:
                self._started += 1
                threading.Thread(target=self._work, name=f"{self.name}-{self._started}", daemon=True).start()

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()
            del job  # an idle thread holds nothing of its last job
            self._idle.release()

    def close(self) -> None:
        """Each thread ends after the jobs queued so far; none is waited for."""
        with self._lock:
            self._closed = True
            for _ in range(self._started):
                self._jobs.put(None)


class Client(_Core):
    """Synchronous client; thread-safe, so several runs can be fetched at once."""

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._http = httpx.Client(**self._http_kwargs())
        #: the threads a batch's sub-plans run in, made on first use and kept; every caller's batches
        #: share them, so no more than `compose.PAGES_IN_FLIGHT` sub-calls of this client are in flight
        #: at once. Daemon threads (`workers`): a page abandoned mid-read never holds the process.
        self._pool: _Workers | None = None
        self._pool_lock = threading.Lock()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self._http.close()

    def call(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        api_key: str | None = None,
        on_step: OnStep | None = None,
    ) -> Result[Any]:
        return self._drive(self._plan(name, args or {}, api_key, on_step), threading.Event())

    def _drive(
        self, plan: Generator[Step, Outcome, Result[Any]], abandon: threading.Event, pooled: bool = False
    ) -> Any:
        """Run `plan` to its Result in this thread (`pooled`: one of the client's); once `abandon` is
        set (a sibling in a batch failed) it stops at its next step and gives None."""
        outcome: Outcome = None
        while not abandon.is_set():
            done, step = _advance(plan, outcome)
            if done:
                return step
            outcome = None  # the plan has it (a batch's pages, a body): not held while the next step runs
            if isinstance(step, Request):
                try:
                    outcome = self.send(step)
                except httpx.RequestError as exc:
                    outcome = exc
            elif isinstance(step, _Batch):
                outcome = self._gather(step.plans, pooled)
            else:
                outcome = None
                abandon.wait(step)  # a sleep that a failing sibling cuts short
        return None

    def _gather(self, plans: list[Generator[Step, Outcome, Result[Any]]], pooled: bool) -> list[Result[Any]]:
        """A batch, its sub-plans on the client's threads (each with the caller's context); the first
        failure is raised at once, and the others stop at their next step, their answers unread (one
        blocked in a read is left to it: a daemon thread, it never holds the process)."""
        import queue

        abandon = threading.Event()
        if pooled:  # a batch inside a batch: its parents may hold every thread, so it runs right here
            return [self._drive(p, abandon, True) for p in plans]
        #: each sub-plan's (place, failure, Result) as it ends
        ended: queue.SimpleQueue[tuple[int, BaseException | None, Any]] = queue.SimpleQueue()

        def job(place: int, plan: Generator[Step, Outcome, Result[Any]], context: contextvars.Context) -> None:
            try:
                ended.put((place, None, context.run(self._drive, plan, abandon, True)))
            except BaseException as exc:
                ended.put((place, exc, None))

        pool = self._threads()
        for place, plan in enumerate(plans):
            pool.run(functools.partial(job, place, plan, contextvars.copy_context()))
        results: list[Any] = [None] * len(plans)
        try:
            for _ in plans:
                place, failure, result = ended.get()
                if failure is not None:
                    raise failure
                results[place] = result
            return results
        finally:
            abandon.set()

    def _threads(self) -> _Workers:
        with self._pool_lock:
            if self._pool is None:
                from . import compose

                self._pool = _Workers(compose.PAGES_IN_FLIGHT, "prime-billing")
            return self._pool

    def send(self, request: Request) -> Reply:
        """One attempt: the seam a subclass overrides to send another way (see the module).

        The deadline (`timeout`) is checked after each chunk of the body, so a body
        trickled byte by byte ends at most one read later. Connect and each read of the
        head are bounded by httpx's own timeouts (`connect_timeout`, `timeout` per read):
        a head trickled byte by byte is bounded per read only. The async client bounds the
        whole attempt, head included.
        """
        deadline = time.monotonic() + self.timeout
        url = url_for(self.base_url, request)
        with self._http.stream(request.method, url, headers=request.headers) as response:
            check_size(response.headers)
            if response.is_stream_consumed:  # a transport that answered from memory (MockTransport)
                check_size(response.headers, len(response.content))
                return Reply(response.status_code, response.headers, response.content)
            body = bytearray()
            for chunk in response.iter_raw():
                body += chunk
                check_size(response.headers, len(body))
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout("the answer outlasted the deadline", request=response.request)
            return Reply(response.status_code, response.headers, bytes(body))

    def get_run_usage(self, run_id: str) -> Result[RunUsage]:
        return self.call("get_run_usage", {"run_id": run_id})

    def get_wallet(
        self, *, limit: int | None = None, offset: int | None = None, team_id: str | None = None
    ) -> Result[Wallet]:
        return self.call("get_wallet", {"limit": limit, "offset": offset, "team_id": team_id})


#: awaited before each attempt of one call (`AsyncClient.call(on_send=...)`): a server paces or counts them
OnSend = Callable[[Request], Awaitable[None]]


class AsyncClient(_Core):
    """Async client: same plan, same behaviour, for servers and agents sharing one pool.

    Its httpx pool is made on the first `send`, so a subclass that sends another way
    (overriding `send`) never pays for one it does not use."""

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def call(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        api_key: str | None = None,
        on_step: OnStep | None = None,
        on_send: OnSend | None = None,
    ) -> Result[Any]:
        """`on_send` is awaited before each attempt (retries and a report's pages included), outside
        the attempt's deadline: a server paces a caller's upstream calls there, or counts them."""
        plan = self._plan(name, args or {}, api_key, on_step)
        # A report's steps (parsing pages, summing thousands of rows, building the answer) run
        # in a worker thread, so an event loop serving others is never held up by one report.
        return await self._drive(plan, offload=ops.get(name).composite, on_send=on_send)

    async def _drive(
        self, plan: Generator[Step, Outcome, Result[Any]], *, offload: bool, on_send: OnSend | None = None
    ) -> Any:
        """Run `plan` to its Result: its steps in a worker thread when `offload`, its I/O here."""
        import anyio

        outcome: Outcome = None
        while True:
            done, step = await anyio.to_thread.run_sync(_advance, plan, outcome) if offload else _advance(plan, outcome)
            if done:
                return step
            outcome = None  # as in the sync driver: the plan has it
            if isinstance(step, Request):
                if on_send is not None:
                    await on_send(step)
                outcome = await self._attempt(step)
            elif isinstance(step, _Batch):
                outcome = await self._gather(step.plans, offload=offload, on_send=on_send)
            else:
                outcome = None
                await anyio.sleep(step)

    async def _gather(
        self, plans: list[Generator[Step, Outcome, Result[Any]]], *, offload: bool, on_send: OnSend | None = None
    ) -> list[Any]:
        """A batch, each sub-plan a task on this event loop (an anyio task group: each inherits
        the caller's context); the first failure cancels the others and is raised as itself."""
        import anyio

        results: list[Any] = [None] * len(plans)
        failures: list[Exception] = []

        async def run(i: int) -> None:
            try:
                results[i] = await self._drive(plans[i], offload=offload, on_send=on_send)
            except Exception as exc:
                failures.append(exc)
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for i in range(len(plans)):
                group.start_soon(run, i)
        if failures:
            raise failures[0]
        return results

    async def _attempt(self, request: Request) -> Outcome:
        """`send` under the attempt's deadline. It is kept here, in the driver, so an overriding
        `send` has it too. On asyncio its own timeout, at half the cost of anyio's scope per call."""
        import asyncio  # here, not at the top: the sync client and the scripts never load it

        try:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # another event loop (trio): anyio's scope works everywhere
                import anyio

                with anyio.fail_after(self.timeout):
                    return await self.send(request)
            async with asyncio.timeout(self.timeout):
                return await self.send(request)
        except (httpx.RequestError, TimeoutError) as exc:
            return exc

    async def send(self, request: Request) -> Reply:
        """One attempt: the seam a subclass overrides to send another way (see the module).
        `call` runs it under the attempt's deadline; it need not keep one itself."""
        url = url_for(self.base_url, request)
        if self._http is None:
            self._http = httpx.AsyncClient(**self._http_kwargs())
        async with self._http.stream(request.method, url, headers=request.headers) as response:
            check_size(response.headers)
            if response.is_stream_consumed:  # a transport that answered from memory (MockTransport)
                check_size(response.headers, len(response.content))
                return Reply(response.status_code, response.headers, response.content)
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                check_size(response.headers, len(body))
            return Reply(response.status_code, response.headers, bytes(body))

    async def get_run_usage(self, run_id: str) -> Result[RunUsage]:
        return await self.call("get_run_usage", {"run_id": run_id})

    async def get_wallet(
        self, *, limit: int | None = None, offset: int | None = None, team_id: str | None = None
    ) -> Result[Wallet]:
        return await self.call("get_wallet", {"limit": limit, "offset": offset, "team_id": team_id})
