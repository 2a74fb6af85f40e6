"""Properties over hostile input: any run id, any upstream body.

A run id is either refused before anything is sent or travels as exactly one
path segment of the usage route; an upstream body of any shape ends as a typed
Result or one clean error, never another exception: on the client, the
LangChain tools (invoked by ToolCall), the scripts (real subprocesses against
the loopback sandbox), and the launcher's REST and MCP servers (real servers on
loopback, the official MCP client), which never answer 500 of their own.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from string import ascii_letters, digits
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import anyio
import httpx
import httpx2
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langchain_core.messages import ToolCall, ToolMessage
from mcp import Client as MCPClient
from mcp.client.streamable_http import streamable_http_client

from conftest import SCRIPTS, LiveSandbox, run, script_env, start_sandbox
from prime_billing import operations as ops
from prime_billing.client import Client, Result
from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.errors import APIError, BadResponseError, PrimeBillingError
from prime_billing.langchain import PrimeBillingTool
from prime_billing.sandbox import RUNS, Sandbox
from serve_harness import running

USAGE_ROUTE = re.compile(r"^/api/v1/billing/runs/([^/?#]+)/usage$")
WALLET_ROUTE = "/api/v1/billing/wallet"

#: ids that have broken path building elsewhere: traversal, encoded separators, query and fragment marks
TRICKY_IDS = [
    "",
    " ",
    ".",
    "..",
    "...",
    "a/b",
    "../wallet",
    "rft_sbx_running/../../wallet",
    "%2e%2e",
    "..%2f",
    "a%2Fb",
    "a?limit=1",
    "a#frag",
    "a b",
    "a\\b",
    "a\x00b",
    "rft_sbx_running\n",
    "é",
    "ｒｆｔ",
    "x" * 128,
    "x" * 129,
    ":",
    "-",
    "rft:sbx.1-2_3",
]

run_ids = st.one_of(
    st.sampled_from(TRICKY_IDS),
    st.from_regex(ops.ID_PATTERN, fullmatch=True),
    st.text(alphabet="./%?#:\\ -_aZ09é", max_size=16),
    st.text(max_size=200),
)


def _settings(url: str = "http://upstream.test", retries: int = 0) -> Settings:
    return Settings(api_key=SANDBOX_API_KEY, base_url=url, max_retries=retries)


class Recorder:
    """The in-process sandbox, remembering the raw target of every request it was sent."""

    def __init__(self) -> None:
        self.box = Sandbox()
        self.targets: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.targets.append(request.url.raw_path.decode("ascii"))
        return self.box.handle(request)


def outcome(surface: str, client: Client, op_name: str, args: dict[str, Any]) -> tuple[bool, str]:
    """(ok, text) from one call on a surface: the summary, or the one-line error it shows.

    Any exception other than the package's own error escapes and fails the test.
    """
    if surface == "client":
        try:
            result = client.call(op_name, args)
        except PrimeBillingError as exc:
            return False, str(exc)
        assert isinstance(result, Result) and result.json()
        return True, result.summary()
    tool = PrimeBillingTool(op_name, client=client)
    message = tool.invoke(ToolCall(name=tool.name, args=args, id="call_1", type="tool_call"))
    assert isinstance(message, ToolMessage) and isinstance(message.content, str)
    return message.status == "success", message.content


SURFACES = ["client", "langchain"]


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("op", [op for op in ops.OPERATIONS if any(p.location == "path" for p in op.params)])
@settings(max_examples=100, deadline=None)
@given(run_id=run_ids)
def test_a_run_id_is_refused_or_is_exactly_one_segment(surface: str, op: ops.Operation, run_id: str) -> None:
    recorder = Recorder()
    with Client(_settings(), transport=httpx.MockTransport(recorder)) as client:
        ok, text = outcome(surface, client, op.name, {"run_id": run_id})
    if not recorder.targets:
        assert not ok and "\n" not in text, "input that sent nothing must be refused"
        return
    # it reached upstream (an unknown run is then a 404 from the right route)
    usage = 0
    for target in recorder.targets:
        path = target.split("?", 1)[0]
        if path == WALLET_ROUTE and op.composite:
            continue
        match = USAGE_ROUTE.fullmatch(path)
        assert match, f"{run_id!r} reached {target!r}, not the usage route"
        segment = match.group(1)
        assert segment not in (".", "..") and unquote(segment) == run_id
        usage += 1
    assert usage == 1


@pytest.mark.parametrize("surface", SURFACES)
@settings(max_examples=80, deadline=None)
@given(team=st.one_of(st.sampled_from(TRICKY_IDS), st.text(max_size=60)))
def test_a_team_id_is_refused_or_is_exactly_the_team_query_value(surface: str, team: str) -> None:
    recorder = Recorder()
    with Client(_settings(), transport=httpx.MockTransport(recorder)) as client:
        ok, text = outcome(surface, client, "get_wallet", {"team_id": team})
    if not recorder.targets:
        assert not ok and "\n" not in text
        return
    (target,) = recorder.targets
    parts = urlsplit(target)
    assert parts.path == WALLET_ROUTE
    query = parse_qs(parts.query, keep_blank_values=True)
    assert query["teamId"] == [team] and set(query) == {"teamId", "limit", "offset"}


# --------------------------------------------------------------------------- bodies

_zones = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)), None])
dates = st.builds(lambda d, tz: d.replace(tzinfo=tz).isoformat(), st.datetimes(), _zones)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=20),
    dates,
    st.sampled_from(["", "NaN", "1e400", "-0", "rft_sbx_running", "2026-11-20T10:00:00Z"]),
)
json_values = st.recursive(
    leaves,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


@st.composite
def near_valid(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A real body with a few places replaced by arbitrary JSON or removed: schema drift."""
    body: Any = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(body))
        path = draw(st.sampled_from(paths))
        new = draw(json_values)
        if not path:
            body = new
            continue
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = new
    return body


EDGE_DATES = ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "2026-02-30", "2026-11-20", "1970-01-01T00:00Z"]
#: a value of the same JSON type as the one it replaces, chosen to stress arithmetic and formatting
same_type: dict[type, st.SearchStrategy[Any]] = {
    bool: st.booleans(),
    int: st.one_of(st.integers(), st.sampled_from([0, -1, 2**63, 10**400, -(10**30)])),
    float: st.one_of(st.floats(), st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324])),
    str: st.one_of(st.text(max_size=30), st.sampled_from(EDGE_DATES), dates),
}


@st.composite
def retyped(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A real body with some leaves given other values of the same type: still valid, but extreme."""
    body: Any = copy.deepcopy(base)
    leaves_at = [p for p in _paths(body) if p and type(_at(body, p)) in same_type]
    for path in draw(st.lists(st.sampled_from(leaves_at), min_size=1, max_size=4)):
        parent = _at(body, path[:-1])
        parent[path[-1]] = draw(same_type[type(parent[path[-1]])])
    return body


def _at(body: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        body = body[step]
    return body


DATE_FIELDS = frozenset({"created_at", "updated_at", "last_billed_at"})


@st.composite
def variants(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A real body with other valid values in some leaves and unknown fields added: still an answer."""
    body: Any = copy.deepcopy(base)
    valid: dict[type, st.SearchStrategy[Any]] = {
        int: st.integers(-(2**63), 2**63 - 1),
        float: st.floats(allow_nan=False, allow_infinity=False),
        str: st.text(max_size=30),
    }
    leaves_at = [p for p in _paths(body) if p and type(_at(body, p)) in valid]
    for path in draw(st.lists(st.sampled_from(leaves_at), max_size=4)):
        parent = _at(body, path[:-1])
        parent[path[-1]] = draw(dates if path[-1] in DATE_FIELDS else valid[type(parent[path[-1]])])
    objects = [p for p in _paths(body) if isinstance(_at(body, p), dict)]
    for path in draw(st.lists(st.sampled_from(objects), max_size=2)):
        _at(body, path)[draw(st.text(min_size=1, max_size=8).map(lambda k: "x_" + k))] = draw(json_values)
    return body


#: values of another JSON type that a lenient reader would take anyway (true as 1, "5" as 5, a
#: digit string as a Unix time...), and a few it must never show as a figure
CONFUSABLE = st.sampled_from(
    [
        *(True, False, None, 0, 5, 5.0, -1.5, float("inf"), float("nan"), "5", "1.5", "nan", "", [], {}),
        *("0", "1700000000", "2026-11-20", "2026-11-20 10:00:00", "2026-11-20T10:00Z", "2026-11-20T10:00:00.1234567"),
    ]
)


@st.composite
def mistyped(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A real body with one or two leaves given a confusable value of another type."""
    body: Any = copy.deepcopy(base)
    leaves_at = [p for p in _paths(body) if p and not isinstance(_at(body, p), dict | list)]
    for path in draw(st.lists(st.sampled_from(leaves_at), min_size=1, max_size=2)):
        _at(body, path[:-1])[path[-1]] = draw(CONFUSABLE)
    return body


def _wallet_body() -> dict[str, Any]:
    api = httpx.Client(transport=httpx.MockTransport(Sandbox().handle), base_url="http://sbx")
    auth = {"Authorization": f"Bearer {SANDBOX_API_KEY}"}
    return api.get(WALLET_ROUTE, params={"limit": 3}, headers=auth).json()


RUN_BODY = {**RUNS["rft_sbx_cached"], "sandbox": True}
WALLET_BODY = _wallet_body()

CONTENT_TYPES = ["application/json", "application/json; charset=utf-8", "text/html", "text/plain", ""]
STATUSES = [200, 200, 200, 201, 204, 301, 400, 401, 404, 418, 422, 429, 500, 503]


def _encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


def bodies(base: dict[str, Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        variants(base).map(_encoded),
        mistyped(base).map(_encoded),
        mistyped(base).map(_encoded),  # twice: the likeliest drift, and the one a lenient reader hides
        retyped(base).map(_encoded),
        near_valid(base).map(_encoded),
        json_values.map(_encoded),
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.just(_encoded(base)).map(lambda b: b[: len(b) // 2]),
    )


# The oracle: the documented bodies, field by field, written by hand from UPSTREAM.md (not from the
# package's models). A 2xx body is an answer exactly when it is a JSON object with every required
# field, and every documented field it has holds the documented JSON type; anything else is
# refused as a bad response. Unknown fields are kept, whatever they hold.


@dataclass(frozen=True)
class F:
    #: "string", "integer" (within 64 bits), "count" (an integer >= 0), "number" (finite), "date-time",
    #: an object spec (dict) or a list of one object spec (an array of such objects)
    kind: Any
    required: bool = False
    nullable: bool = False
    #: the value when absent ("numbers default to 0 / null when absent")
    default: Any = None


BUCKET = {
    "tokens": F("integer", default=0),
    "input_tokens": F("integer", default=0),
    "output_tokens": F("integer", default=0),
    "cost_usd": F("number", default=0.0),
    "cached_input_tokens": F("integer", nullable=True),
}
PRICING = {
    rate: F("number", nullable=True)
    for rate in (
        "training_per_mtok",
        "inference_input_per_mtok",
        "inference_output_per_mtok",
        "inference_cached_input_per_mtok",
    )
}
RUN_SPEC = {
    "run_id": F("string", required=True),
    "run_name": F("string", nullable=True),
    "base_model": F("string", nullable=True),
    "status": F("string", nullable=True),
    "training": F(BUCKET, required=True),
    "inference": F(BUCKET, required=True),
    "total_tokens": F("integer", default=0),
    "total_cost_usd": F("number", default=0.0),
    "pricing": F(PRICING, required=True),
    "record_count": F("integer", default=0),
}
ROW = {
    "id": F("string", required=True),
    "created_at": F("date-time", required=True),
    "updated_at": F("date-time", nullable=True),
    "last_billed_at": F("date-time", nullable=True),
    "amount_usd": F("number", required=True),
    "currency": F("string", default="USD"),
    "resource_type": F("string", nullable=True),
    "resource_id": F("string", nullable=True),
}
WALLET_SPEC = {
    "wallet_id": F("string", required=True),
    "team_id": F("string", nullable=True),
    "balance_usd": F("number", required=True),
    "currency": F("string", required=True),
    "total_billings": F("count", default=0),
    "recent_billings": F([ROW], default=[]),
}

#: ISO 8601 date-time as in UPSTREAM.md's examples: seconds always, a fraction of up to 6 digits,
#: Z or a +hh:mm offset, or no offset (UTC)
DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,6}))?(Z|[+-][0-9]{2}:[0-9]{2})?"
)


def date_time(text: str) -> datetime | None:
    """The moment a date-time text names, or None when it is not one (bad shape or calendar)."""
    m = DATE_TIME.fullmatch(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    micro = int((m.group(7) or "").ljust(6, "0"))
    zone, tz = m.group(8), None
    if zone == "Z":
        tz = UTC
    elif zone:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return None
        tz = timezone((1 if zone[0] == "+" else -1) * timedelta(hours=hours, minutes=minutes))
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        return None


def fits(value: Any, kind: Any) -> bool:
    if isinstance(kind, dict):
        return isinstance(value, dict) and conforms(value, kind)
    if isinstance(kind, list):
        return isinstance(value, list) and all(fits(v, kind[0]) for v in value)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        # a count beyond 64 bits is a broken answer (the client refuses it as drift)
        return type(value) is int and -(2**63) <= value <= 2**63 - 1
    if kind == "count":  # how many things there are: an integer, and never below 0
        return type(value) is int and 0 <= value <= 2**63 - 1
    if kind == "number":
        try:
            return type(value) in (int, float) and math.isfinite(float(value))
        except OverflowError:
            return False
    assert kind == "date-time"
    return isinstance(value, str) and date_time(value) is not None


def conforms(obj: dict[str, Any], spec: dict[str, F]) -> bool:
    for name, f in spec.items():
        if name not in obj:
            if f.required:
                return False
        elif not (obj[name] is None and f.nullable) and not fits(obj[name], f.kind):
            return False
    return True


def documented(body: bytes, spec: dict[str, F]) -> bool:
    try:
        value = json.loads(body)
    except ValueError:
        return False
    return isinstance(value, dict) and conforms(value, spec)


def same(a: Any, b: Any) -> bool:
    """Equal as JSON (NaN equal to NaN, -0.0 apart from 0.0)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def assert_holds(model: Any, obj: dict[str, Any], spec: dict[str, F]) -> None:
    """Every documented field of `model` says what the body said (or its default), and the
    unknown fields are kept as they came."""
    for name, f in spec.items():
        value, held = obj.get(name, f.default), getattr(model, name)
        if value is None:
            assert held is None, name
        elif isinstance(f.kind, dict):
            assert_holds(held, value, f.kind)
        elif isinstance(f.kind, list):
            assert len(held) == len(value), name
            for row, given in zip(held, value, strict=True):
                assert_holds(row, given, f.kind[0])
        elif f.kind == "date-time":
            when = date_time(value)
            assert when is not None
            moment = when if when.tzinfo is not None else when.replace(tzinfo=UTC)  # no offset means UTC
            try:
                in_utc = moment.astimezone(UTC)  # every moment is held in UTC...
            except OverflowError:
                in_utc = moment  # ...but at the calendar's edge, where it keeps its offset
            assert held == in_utc and held.utcoffset() == in_utc.utcoffset(), (name, value, held)
        elif f.kind == "number":
            assert type(held) is float and held == float(value), (name, value, held)
        else:
            assert type(held) is type(value) and held == value, (name, value, held)
    assert same(model.model_extra, {k: v for k, v in obj.items() if k not in spec})


SPECS = {"get_run_usage": RUN_SPEC, "get_wallet": WALLET_SPEC}


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize(("op_name", "base"), [("get_run_usage", RUN_BODY), ("get_wallet", WALLET_BODY)])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_upstream_body_is_the_documented_answer_or_a_bad_response(
    surface: str, op_name: str, base: dict[str, Any], data: Any
) -> None:
    body = data.draw(bodies(base), label="body")
    status = data.draw(st.one_of(st.just(200), st.sampled_from(STATUSES)), label="status")
    ctype = data.draw(st.sampled_from(CONTENT_TYPES), label="content type")
    headers = {"content-type": ctype} if ctype else {}
    if data.draw(st.booleans(), label="retry-after"):
        headers["retry-after"] = data.draw(st.sampled_from(["0", "-1", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"]))
    sent = b"" if status == 204 else body

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, content=sent)

    answered = 200 <= status < 300
    expected = answered and documented(sent, SPECS[op_name])
    event("answer" if expected else "bad response" if answered else "error status")
    args = {"run_id": "rft_sbx_cached"} if op_name == "get_run_usage" else {}
    with Client(_settings(), transport=httpx.MockTransport(answer)) as client:
        if surface != "client":
            ok, text = outcome(surface, client, op_name, args)
            assert ok == expected and text and "Traceback" not in text
            assert ok or "\n" not in text
            return
        try:
            result = client.call(op_name, args)
        except PrimeBillingError as exc:
            assert not expected, f"refused a documented body: {exc}"
            assert str(exc) and "\n" not in str(exc)
            # a 2xx that is not the documented body is a bad response; any other status is that status
            assert isinstance(exc, BadResponseError) == answered, exc
            assert isinstance(exc, APIError) and exc.status in (status, None)
            return
    assert expected, "took a body that is not the documented answer"
    parsed = json.loads(sent)
    assert same(result.raw, parsed) and result.body == sent
    assert_holds(result.data, parsed, SPECS[op_name])
    assert result.summary() and json.loads(result.json()) is not None


# --------------------------------------------------------------------------- scripts

script_bodies = st.one_of(
    retyped(RUN_BODY).map(json.dumps),
    retyped(WALLET_BODY).map(json.dumps),
    near_valid(RUN_BODY).map(json.dumps),
    near_valid(WALLET_BODY).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=80),
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    body=script_bodies,
    status=st.sampled_from([200, 200, 404, 500]),
    script=st.sampled_from(["run_usage.py", "wallet.py"]),
    as_json=st.booleans(),
)
def test_scripts_exit_cleanly_on_any_body(
    sandbox: LiveSandbox, home: Path, body: str, status: int, script: str, as_json: bool
) -> None:
    sandbox.box.clear_faults()
    sandbox.faults(next=[{"status": status, "body": body}])
    args = [str(SCRIPTS / script), *(["rft_sbx_running"] if script == "run_usage.py" else [])]
    out = run([*args, *(["--json"] if as_json else [])], script_env(home, sandbox.url, PRIME_BILLING_MAX_RETRIES="0"))
    assert out.returncode in (0, 1), out.stderr
    assert "Traceback" not in out.stderr
    if out.returncode == 0:
        assert out.stderr == "" and out.stdout.strip()
        if as_json:
            assert json.loads(out.stdout) == json.loads(body)
    else:
        assert out.stderr.count("\n") == 1 and out.stderr.startswith(f"{script}: error: ")
        assert out.stdout == ""


def test_tricky_run_ids_in_the_script_never_leave_their_segment(sandbox: LiveSandbox, home: Path) -> None:
    env = script_env(home, sandbox.url)
    # with several ids, every one is checked before anything is sent
    out = run([str(SCRIPTS / "run_usage.py"), "--", "rft_sbx_running", "../wallet", "a/b", "%2e%2e", "a?x=1"], env)
    assert out.returncode == 2 and "'../wallet' is not a valid id" in out.stderr and out.stderr.count("\n") == 1
    assert sandbox.requests() == 0
    ok = run([str(SCRIPTS / "run_usage.py"), "rft:sbx.1-2_3"], env)
    assert ok.returncode == 1 and "not found (404" in ok.stderr
    # ':' is quoted inside the segment, and the sandbox (like Prime) decodes it back
    assert sandbox.box.stats == {"requests": 1, "GET /api/v1/billing/runs/rft%3Asbx.1-2_3/usage": 1}


def test_what_the_properties_found_stays_fixed() -> None:
    """A date at the calendar's edge is shown; a count beyond 64 bits is schema drift, not an overflow."""
    wallet = copy.deepcopy(WALLET_BODY)
    wallet["recent_billings"][0]["created_at"] = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))).isoformat()
    with Client(_settings(), transport=httpx.MockTransport(lambda r: httpx.Response(200, json=wallet))) as client:
        assert "1-01-01 00:00" in client.call("get_wallet", {}).summary()
    run_body = {**RUN_BODY, "training": {**RUN_BODY["training"], "tokens": 10**400}}
    drifted = Client(_settings(), transport=httpx.MockTransport(lambda r: httpx.Response(200, json=run_body)))
    with drifted, pytest.raises(PrimeBillingError, match=r"RunUsage schema \(training\.tokens"):
        drifted.call("get_run_usage", {"run_id": "rft_sbx_cached"})


# --------------------------------------------------------------------------- the launcher's servers


@dataclass
class Served:
    """The launcher (REST and MCP) in front of a sandbox of its own, for a whole module."""

    live: LiveSandbox
    rest: str
    mcp: str
    http: httpx.Client

    def reset(self) -> None:
        self.live.box.clear_faults()
        self.live.box.stats.clear()

    def upstream_targets(self) -> list[str]:
        return [k.split(" ", 1)[1] for k in self.live.box.stats if k.startswith("GET ")]


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    live, _ = start_sandbox()
    settings = Settings(api_key=SANDBOX_API_KEY, base_url=live.url, max_retries=0, timeout=5.0)
    try:
        with running(settings) as launcher, httpx.Client(timeout=30) as http:
            yield Served(live, launcher.urls["rest"], launcher.urls["mcp"], http)
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]


def _every_byte_escaped(text: str) -> str:
    """Percent-encode all but letters and digits, so no client normalises `..` or `/` away."""
    keep = set(ascii_letters + digits)
    return "".join(ch if ch in keep else "".join(f"%{b:02X}" for b in ch.encode()) for ch in text)


def rest_call(served: Served, op: ops.Operation, args: dict[str, Any]) -> tuple[bool, str]:
    path = op.rest_path
    query = {}
    for p in op.params:
        if p.name not in args:
            continue
        if p.location == "path":
            path = path.replace("{" + p.name + "}", _every_byte_escaped(str(args[p.name])))
        else:
            query[p.wire] = args[p.name]
    r = served.http.get(served.rest + path, params=query)
    assert r.status_code != 500, r.text  # never the adapter's own failure
    if r.status_code == 200:
        assert r.headers["content-type"] == "application/json"
        return True, r.text
    assert r.headers["content-type"] == "application/problem+json", r.text
    problem = r.json()
    assert problem["status"] == r.status_code and "\n" not in problem["detail"]
    return False, problem["detail"]


def mcp_call(served: Served, op: ops.Operation, args: dict[str, Any]) -> tuple[bool, str]:
    async def go() -> Any:
        http = httpx2.AsyncClient(timeout=30)
        async with MCPClient(streamable_http_client(served.mcp, http_client=http)) as client:
            return await client.call_tool(op.mcp_tool, args)

    result = anyio.run(go)
    text = "".join(getattr(c, "text", "") for c in result.content)
    if result.is_error:
        assert "\n" not in text
        return False, text
    assert isinstance(result.structured_content, dict)
    return True, json.dumps(result.structured_content)


SERVED = {"rest": rest_call, "mcp": mcp_call}


#: examples per surface: an MCP call opens a session each time, so it gets fewer
EXAMPLES = {"rest": 40, "mcp": 12}


@pytest.mark.parametrize("surface", list(SERVED))
def test_launcher_a_run_id_is_refused_or_is_exactly_one_segment(served: Served, surface: str) -> None:
    op = ops.get("get_run_usage")

    @settings(max_examples=EXAMPLES[surface], deadline=None)
    @given(run_id=run_ids)
    def check(run_id: str) -> None:
        served.reset()
        ok, _ = SERVED[surface](served, op, {"run_id": run_id})
        targets = served.upstream_targets()
        if not targets:
            assert not ok, "input that sent nothing must be refused"
            return
        (target,) = targets
        match = USAGE_ROUTE.fullmatch(target)
        assert match and unquote(match.group(1)) == run_id, f"{run_id!r} reached {target!r}"

    check()


@pytest.mark.parametrize("surface", list(SERVED))
def test_launcher_any_upstream_body_is_the_body_or_one_clean_error(served: Served, surface: str) -> None:
    op = ops.get("get_run_usage")

    @settings(max_examples=EXAMPLES[surface], deadline=None)
    @given(
        body=script_bodies,
        status=st.sampled_from([200, 200, 200, 404, 422, 500]),
        ctype=st.sampled_from(CONTENT_TYPES),
    )
    def check(body: str, status: int, ctype: str) -> None:
        served.reset()
        served.live.faults(next=[{"status": status, "body": body, "content_type": ctype}])
        ok, text = SERVED[surface](served, op, {"run_id": "rft_sbx_running"})
        event("body" if ok else "error")
        if ok:
            assert status == 200 and json.loads(text) == json.loads(body)

    check()
