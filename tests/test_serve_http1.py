"""The upstream connection pool against a real loopback server that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import ssl

import httpx
import pytest
import trustme

from prime_billing.serve.http1 import Http1Pool, TooLarge


async def _server(answers: list[bytes], close_after: bool = False) -> tuple[asyncio.Server, list[int]]:
    """Answers each request with the next of `answers`; counts connections."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while answers:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(answers.pop(0))
                await writer.drain()
                if close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, connections


def _ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nX-Prime-Sandbox: 1\r\n\r\n%s" % (len(body), body)


def _pool(server: asyncio.Server, cap: int = 1 << 20) -> Http1Pool:
    port = server.sockets[0].getsockname()[1]
    return Http1Pool(f"http://127.0.0.1:{port}", connect_timeout=2, read_timeout=2, cap=cap)


def test_reuses_the_connection_and_retries_one_the_upstream_dropped_while_idle() -> None:
    async def main() -> None:
        server, connections = await _server([_ok(b"{}"), _ok(b'{"a": 1}')], close_after=True)
        pool = _pool(server)
        head = pool.head("GET", "/x", {})
        status, headers, body = await pool.request(head)
        assert (status, body, headers.get("X-PRIME-SANDBOX")) == (200, b"{}", "1")
        await asyncio.sleep(0.05)  # the server has closed the idle connection by now
        assert (await pool.request(head))[2] == b'{"a": 1}'
        assert len(connections) == 2
        await pool.aclose()
        server.close()

    asyncio.run(main())


def test_an_answer_sized_by_the_close_and_a_chunked_one() -> None:
    async def main() -> None:
        chunked = b'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n'
        server, _ = await _server([chunked])
        pool = _pool(server)
        assert (await pool.request(pool.head("GET", "/x", {})))[2] == b'{"a": 1}'
        server.close()
        server, _ = await _server([b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{}"], close_after=True)
        pool = _pool(server)
        assert (await pool.request(pool.head("GET", "/x", {})))[2] == b"{}"
        server.close()

    asyncio.run(main())


def test_refuses_an_oversized_answer_and_reports_refused_and_broken_connections() -> None:
    async def main() -> None:
        server, _ = await _server([_ok(b"x" * 100)])
        pool = _pool(server, cap=10)
        with pytest.raises(TooLarge):
            await pool.request(pool.head("GET", "/x", {}))
        server.close()
        server, _ = await _server([b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"], close_after=True)
        pool = _pool(server)
        with pytest.raises(httpx.ReadError):
            await pool.request(pool.head("GET", "/x", {}))
        port = server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = Http1Pool(f"http://127.0.0.1:{port}", connect_timeout=2, read_timeout=2, cap=10)
        with pytest.raises(httpx.ConnectError):
            await pool.request(pool.head("GET", "/x", {}))
        with pytest.raises(httpx.LocalProtocolError):
            pool.head("GET", "/x", {"Authorization": "Bearer a\r\nX-Evil: 1"})

    asyncio.run(main())


def test_https_upstream_is_verified() -> None:
    """The production upstream is https: the pool speaks TLS and checks the certificate."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def main() -> None:
        answers = [_ok(b'{"tls": true}'), _ok(b'{"tls": 2}')]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while answers:
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(answers.pop(0))
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
                pass
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        trusted = Http1Pool(
            f"https://localhost:{port}", connect_timeout=2, read_timeout=2, cap=1 << 20, ssl_context=client_ctx
        )
        head = trusted.head("GET", "/x", {})
        assert head.startswith(b"GET /x HTTP/1.1\r\nHost: localhost:")
        assert (await trusted.request(head))[2] == b'{"tls": true}'
        assert (await trusted.request(head))[2] == b'{"tls": 2}'  # same TLS connection, kept alive
        await trusted.aclose()
        # without the CA the certificate is refused: no answer is read from an unverified peer
        untrusted = Http1Pool(f"https://localhost:{port}", connect_timeout=2, read_timeout=2, cap=1 << 20)
        with pytest.raises(httpx.ConnectError, match="cannot connect to localhost"):
            await untrusted.request(untrusted.head("GET", "/x", {}))
        await untrusted.aclose()
        server.close()

    asyncio.run(main())
