"""Several launchers, one state: real `serve` processes sharing a real `redis-server` (--state-url).

Three sets of replicas, started once for the module: key mode with a cache (`shared`), key mode
with a token and a small per-caller rate (`limited`), and passthrough with a cache (`tenants`),
all in front of one sandbox of this module's own, which also serves two more tenants (each its
own key and wallet). Overlap comes from the sandbox's gate (`hold`/`release`), never from a
sleep; what is waited for is polled (the replicas' own /metrics, the sandbox's counters).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import LiveSandbox, assert_one_line_error, run, script_env, start_sandbox, until, upstream_body
from prime_billing.config import SANDBOX_API_KEY
from prime_billing.sandbox.faults import FaultReply, FaultySandbox
from redis_harness import RedisServer, Replica, replicas

WALLET = "/v1/api/v1/billing/wallet"
UPSTREAM_WALLET = "/api/v1/billing/wallet"
TOKEN = "tok-replicas-5b1e7d9c"
#: the passthrough tenants: each key, its wallet id and balance (the sandbox's rows, another wallet)
TENANTS = {
    "pk-alpha-0c9f3b2a11": ("wal_alpha", 111.25),
    "pk-beta-7d44e1a9b2": ("wal_beta", 222.5),
    "pk-gamma-3a8e5c0d77": ("wal_gamma", 333.75),
}
SECRETS = (SANDBOX_API_KEY, TOKEN, *TENANTS)
IN_PROGRESS = "prime_billing_http_requests_in_progress"
STATE_UP = "prime_billing_state_up"


class TenantSandbox(FaultySandbox):
    """The sandbox, also answering each tenant's key with the demo data under that tenant's wallet."""

    def dispatch(self, method: str, target: str, headers: Mapping[str, str], body: bytes = b"") -> FaultReply:
        tenant = TENANTS.get((headers.get("authorization") or "")[7:])
        if tenant is None:
            return super().dispatch(method, target, headers, body)
        reply = super().dispatch(method, target, {**headers, "authorization": f"Bearer {SANDBOX_API_KEY}"}, body)
        if reply.status != 200 or not isinstance(reply.body, bytes):
            return reply
        data = json.loads(reply.body)
        data["wallet_id"], data["balance_usd"] = tenant
        return FaultReply(reply.status, reply.headers, json.dumps(data).encode(), reply.delay)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def upstream() -> Iterator[LiveSandbox]:
    live, _ = start_sandbox(TenantSandbox())
    yield live
    live.server.shutdown()  # type: ignore[attr-defined]
    live.server.server_close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def sets(
    redis_server: RedisServer, upstream: LiveSandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, list[Replica]]]:
    """The three sets of replicas, started together."""
    home = tmp_path_factory.mktemp("home")
    logs = tmp_path_factory.mktemp("logs")
    env = script_env(home, upstream.url, PRIME_BILLING_STATE_URL=redis_server.url)
    keyless = {k: v for k, v in env.items() if k != "PRIME_API_KEY"}
    quiet = "--no-access-log"
    started = {
        "shared": replicas(3, env, logs / "shared", "--cache-ttl", "5", quiet),
        "limited": replicas(
            3, {**env, "PRIME_BILLING_TOKEN": TOKEN}, logs / "limited", "--rate-limit", "0.01", "--rate-burst", "4",
            quiet, auth=bearer(TOKEN),
        ),
        "tenants": replicas(
            2, keyless, logs / "tenants", "--auth", "passthrough", "--cache-ttl", "5", "--state-url",
            redis_server.url, quiet,
        ),
    }  # fmt: skip
    yield started
    codes = [r.stop() for group in started.values() for r in group]
    assert codes == [0] * len(codes)


def test_150_identical_reads_over_3_replicas_make_one_upstream_call(
    sets: dict[str, list[Replica]], upstream: LiveSandbox
) -> None:
    """While the one upstream call is held, all 150 reads are in the replicas (their own gauge says
    so); released, every one is answered with the upstream's body, and the upstream saw one call."""
    shared, box = sets["shared"], upstream.box
    want = upstream_body(upstream, UPSTREAM_WALLET, offset=7)
    for r in shared:  # the wallet reading /metrics shows is read now, so scrapes call nothing upstream meanwhile
        r.metric(STATE_UP)
    box.clear_stats()
    box.set_faults({"hold": True})
    with httpx.Client(limits=httpx.Limits(max_connections=200), timeout=60) as client, ThreadPoolExecutor(150) as pool:
        try:
            futures = [pool.submit(client.get, shared[i % 3].url + WALLET, params={"offset": 7}) for i in range(150)]
            # each replica's gauge counts the scrape asking too
            until(lambda: sum(r.metric(IN_PROGRESS, surface="rest") - 1 for r in shared) == 150, "150 reads in")
            until(lambda: box.inflight == 1, "the one upstream call held")
            assert box.stats["requests"] == 1
        finally:
            box.release()
        answers = [f.result() for f in futures]
    assert [a.status_code for a in answers] == [200] * 150
    assert all(a.json() == want for a in answers)
    assert box.stats["requests"] == 1


def test_one_callers_requests_over_3_replicas_pass_only_its_burst(
    sets: dict[str, list[Replica]], upstream: LiveSandbox
) -> None:
    """The token is one caller whichever replica it calls: 4 requests pass (its burst), then 429s."""
    limited = sets["limited"]
    before = upstream.requests()
    answers = [httpx.get(limited[i % 3].url + WALLET, params={"offset": 11}, headers=bearer(TOKEN)) for i in range(12)]
    assert [a.status_code for a in answers] == [200] * 4 + [429] * 8
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers[4:])
    assert upstream.requests() - before == 4


def test_two_passthrough_tenants_never_see_each_others_data(
    sets: dict[str, list[Replica]], upstream: LiveSandbox
) -> None:
    """Alpha's answer is cached where both replicas find it; beta asking the same on the other replica gets
    beta's; a key the upstream refuses gets 401, not the cache; each tenant's /metrics shows its wallet."""
    first, second = sets["tenants"]
    alpha, beta = list(TENANTS)[:2]
    before = upstream.requests()
    a1 = httpx.get(first.url + WALLET, params={"limit": 3}, headers=bearer(alpha))
    b2 = httpx.get(second.url + WALLET, params={"limit": 3}, headers=bearer(beta))
    a2 = httpx.get(second.url + WALLET, params={"limit": 3}, headers=bearer(alpha))
    b1 = httpx.get(first.url + WALLET, params={"limit": 3}, headers=bearer(beta))
    stranger = httpx.get(second.url + WALLET, params={"limit": 3}, headers=bearer("pk-nobody-00000000"))
    assert [r.status_code for r in (a1, b2, a2, b1)] == [200] * 4 and stranger.status_code == 401
    assert (a1.json()["wallet_id"], a1.json()["balance_usd"]) == TENANTS[alpha]
    assert (b2.json()["wallet_id"], b2.json()["balance_usd"]) == TENANTS[beta]
    assert a2.json() == a1.json() and b1.json() == b2.json()
    assert upstream.requests() - before == 3  # alpha, beta, the stranger: the second reads came from Redis
    scrapes = {}
    for who, replica in ((alpha, first), (beta, second), (alpha, second), (beta, first)):
        got = httpx.get(replica.url + "/metrics", headers=bearer(who), timeout=30)
        assert got.status_code == 200, got.text
        scrapes.setdefault(who, []).append(got.text)
    for who, texts in scrapes.items():
        wallet_id, balance = TENANTS[who]
        for text in texts:
            assert f'prime_wallet_balance_usd{{wallet_id="{wallet_id}"}} {balance}' in text
            assert not any(other in text for other, _ in TENANTS.values() if other != wallet_id)
    assert upstream.requests() - before == 3 + 2  # one wallet reading per tenant, for both replicas


def test_redis_killed_under_load_loses_no_request_and_sharing_resumes(
    sets: dict[str, list[Replica]], upstream: LiveSandbox, redis_server: RedisServer
) -> None:
    """Readers keep going while Redis is killed and started again: every answer is 200, each replica
    says once that it lost the store and once that it is back, and then shares again."""
    shared = sets["shared"]
    answers: list[int | str] = []
    stop = threading.Event()

    def load(n: int) -> None:
        with httpx.Client(timeout=30) as client:
            i = n
            while not stop.is_set():
                try:
                    answers.append(client.get(shared[i % 3].url + WALLET, params={"offset": 100 + i % 5}).status_code)
                except httpx.HTTPError as exc:
                    answers.append(type(exc).__name__)
                i += 1

    def more(n: int, what: str) -> None:
        mark = len(answers)
        until(lambda: len(answers) >= mark + n, what, guard=60)

    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(4)]
    for t in threads:
        t.start()
    try:
        more(60, "answers before the outage")
        redis_server.kill()
        until(lambda: all(r.metric(STATE_UP) == 0 for r in shared), "every replica saw the outage", guard=60)
        more(60, "answers during the outage")
        redis_server.start()
        until(lambda: all(r.metric(STATE_UP) == 1 for r in shared), "every replica back on the store", guard=60)
        more(60, "answers after the outage")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert set(answers) == {200}, {a for a in answers if a != 200}
    for r in shared:
        said = r.said()
        assert said.count("the state store failed") == 1 and said.count("the state store is back") == 1, said
    before = upstream.requests()
    for r in shared:
        assert httpx.get(r.url + WALLET, params={"offset": 31}).status_code == 200
    assert upstream.requests() - before == 1  # the first replica's answer, shared again through Redis


def test_nothing_in_redis_holds_a_key_or_a_token(sets: dict[str, list[Replica]], redis_server: RedisServer) -> None:
    """With every kind of shared state written (cached answers, locks, limits, accepted keys, wallet
    readings), no Redis key or value holds the Prime key, the token or a tenant's key."""
    gamma = list(TENANTS)[2]
    assert httpx.get(sets["shared"][0].url + WALLET, params={"offset": 41}).status_code == 200
    assert sets["shared"][1].metric(STATE_UP) == 1  # a wallet reading
    assert httpx.get(sets["limited"][0].url + WALLET, headers=bearer("junk")).status_code == 401  # counted
    assert httpx.get(sets["tenants"][0].url + WALLET, headers=bearer(gamma)).status_code == 200
    assert httpx.get(sets["tenants"][1].url + "/metrics", headers=bearer(gamma), timeout=30).status_code == 200
    client = redis_server.client()
    stored: list[bytes] = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        value: Any = {
            b"string": client.get, b"list": lambda k: client.lrange(k, 0, -1), b"hash": client.hgetall,
            b"set": client.smembers, b"zset": lambda k: client.zrange(k, 0, -1),
        }[kind](key)  # fmt: skip
        stored += [key, repr(value).encode()]
    names = {k.split(b":")[0] + b":" + k.split(b":")[1] for k in stored[::2] if k.startswith(b"prime-billing:")}
    assert {b"prime-billing:answers", b"prime-billing:accepted", b"prime-billing:readings"} <= names
    assert any(k.startswith(b"LIMITS") for k in stored[::2])
    for secret in SECRETS:
        assert not [s for s in stored if secret.encode() in s], secret


def test_the_state_url_comes_from_a_file_and_its_password_is_never_shown(
    redis_server: RedisServer, upstream: LiveSandbox, tmp_path: Path
) -> None:
    """--state-url-file: the URL read from the file. A password the store refuses is an outage like any
    other (the replica answers from its own memory) and appears in no output; a file that is empty or
    names no Redis URL is a one-line start-up error that does not echo it."""
    secret = "pw-never-shown-4c1d"
    path = tmp_path / "state-url"
    path.write_text(f"redis://launcher:{secret}@127.0.0.1:{redis_server.port}/0\n", encoding="utf-8")
    env = script_env(tmp_path, upstream.url)
    (replica,) = replicas(1, env, tmp_path / "logs", "--state-url-file", str(path))
    try:
        answer = httpx.get(replica.url + WALLET, params={"offset": 51})
        until(lambda: replica.metric(STATE_UP) == 0, "the store refused and the replica went on alone")
    finally:
        assert replica.stop() == 0
    assert answer.status_code == 200
    said = replica.said()
    assert said.count("the state store failed") == 1 and secret not in said + replica.announcement
    assert "state shared (Redis)" in replica.announcement
    path.write_text(" \n", encoding="utf-8")
    empty = run(["-m", "prime_billing", "serve", "--state-url-file", str(path)], env)
    assert_one_line_error(empty, 2, "--state-url-file")
    path.write_text(f"http://:{secret}@127.0.0.1/\n", encoding="utf-8")
    wrong = run(["-m", "prime_billing", "serve", "--state-url-file", str(path)], env)
    assert_one_line_error(wrong, 2, "--state-url must be a redis://")
    assert secret not in wrong.stderr
