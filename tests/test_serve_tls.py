"""A TLS upstream is verified: the launcher's client (aiohttp) and the CLI's (httpx) trust
the certificate authorities named by SSL_CERT_FILE or SSL_CERT_DIR, and refuse a
certificate from an authority nobody named or one made out to another host. The upstream
is the sandbox behind TLS on loopback, its certificate from a throwaway authority (trustme)."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from conftest import LiveSandbox, run, script_env
from prime_billing.sandbox.faults import FaultySandbox
from prime_billing.sandbox.server import make_server
from serve_harness import running, sandbox_settings

WALLET = "/api/v1/billing/wallet"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def https_sandbox(cert: trustme.LeafCert) -> tuple[LiveSandbox, threading.Thread]:
    """The sandbox's own socket server, its listening socket wrapped in TLS with `cert`."""
    box = FaultySandbox()
    server = make_server(box, "127.0.0.1", 0)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    # the handshake runs as a connection is accepted: one that fails is dropped before any request
    server.socket = context.wrap_socket(server.socket, server_side=True)
    host, port = server.server_address[:2]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return LiveSandbox(f"https://{host}:{port}", box, server), thread


@pytest.fixture
def upstream(ca: trustme.CA) -> Iterator[LiveSandbox]:
    """A TLS upstream whose certificate names 127.0.0.1, signed by the test authority."""
    live, thread = https_sandbox(ca.issue_cert("127.0.0.1"))
    yield live
    live.server.shutdown()  # type: ignore[attr-defined]
    live.server.server_close()  # type: ignore[attr-defined]
    thread.join(10)


@pytest.fixture
def no_trust_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Neither variable set: only what the client trusts by default (never the test authority)."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return monkeypatch


def direct_body(live: LiveSandbox, ca_file: Path, **params: object) -> dict:
    """What the TLS upstream itself answers, fetched with the test authority trusted."""
    with httpx.Client(verify=ssl.create_default_context(cafile=str(ca_file))) as client:
        r = client.get(live.url + WALLET, params=params, headers={"Authorization": f"Bearer {live.box.api_key}"})
    r.raise_for_status()
    return r.json()


def rest_wallet(live: LiveSandbox) -> httpx.Response:
    """One wallet request through the launcher, started now (its upstream client reads the environment)."""
    with running(sandbox_settings(live.url), only="rest") as launcher:
        return httpx.get(launcher.urls["rest"] + "/v1" + WALLET, params={"limit": 3}, timeout=30)


def test_the_launcher_trusts_the_authority_in_ssl_cert_file(
    upstream: LiveSandbox, ca_file: Path, no_trust_env: pytest.MonkeyPatch
) -> None:
    no_trust_env.setenv("SSL_CERT_FILE", str(ca_file))
    r = rest_wallet(upstream)
    assert r.status_code == 200, r.text
    assert upstream.requests() == 1
    assert r.json() == direct_body(upstream, ca_file, limit=3)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to hash the folder")
def test_the_launcher_trusts_an_authority_in_ssl_cert_dir(
    upstream: LiveSandbox, ca: trustme.CA, tmp_path: Path, no_trust_env: pytest.MonkeyPatch
) -> None:
    """A folder read as OpenSSL (and so httpx) reads one: certificates found by their subject
    hash, the links `openssl rehash` (c_rehash) makes beside each file."""
    folder = tmp_path / "certs"
    folder.mkdir()
    ca.cert_pem.write_to_path(str(folder / "test-ca.pem"))
    subprocess.run(["openssl", "rehash", str(folder)], check=True, capture_output=True)
    no_trust_env.setenv("SSL_CERT_DIR", str(folder))
    r = rest_wallet(upstream)
    assert r.status_code == 200, r.text
    assert r.json()["wallet_id"] == "wal_sbx_personal" and upstream.requests() == 1


def test_the_launcher_refuses_an_authority_nobody_named(
    upstream: LiveSandbox, no_trust_env: pytest.MonkeyPatch
) -> None:
    r = rest_wallet(upstream)
    assert r.status_code == 502 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "upstream_unavailable"
    assert upstream.requests() == 0  # refused at the handshake: no request ever reached the upstream


def test_the_launcher_refuses_a_trusted_certificate_for_another_name(
    ca: trustme.CA, ca_file: Path, no_trust_env: pytest.MonkeyPatch
) -> None:
    """Trusting the authority is not enough: the certificate must name the host dialled."""
    live, thread = https_sandbox(ca.issue_cert("billing.example.test"))
    try:
        no_trust_env.setenv("SSL_CERT_FILE", str(ca_file))
        r = rest_wallet(live)
        assert r.status_code == 502 and r.json()["code"] == "upstream_unavailable"
        assert live.requests() == 0
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]
        thread.join(10)


def test_the_cli_trusts_ssl_cert_file_and_nothing_unnamed(upstream: LiveSandbox, ca_file: Path, home: Path) -> None:
    env = script_env(home, upstream.url, PRIME_BILLING_MAX_RETRIES="0")
    env.pop("SSL_CERT_DIR", None)
    env.pop("SSL_CERT_FILE", None)
    refused = run(["-m", "prime_billing", "wallet", "--json"], env)
    assert refused.returncode == 1 and upstream.requests() == 0, refused.stderr
    trusted = run(["-m", "prime_billing", "wallet", "--json"], {**env, "SSL_CERT_FILE": str(ca_file)})
    assert trusted.returncode == 0, trusted.stderr
    assert json.loads(trusted.stdout) == direct_body(upstream, ca_file)
