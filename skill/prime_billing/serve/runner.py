"""One process, two ports: REST and MCP on one event loop, one upstream client.

Start-up refuses what would be unsafe (a non-loopback address with no token:
whoever reaches the port would spend the key). The signal handlers are in
place before any port listens, so a SIGTERM or SIGINT at any moment stops
accepting, lets requests in progress finish (up to `drain_seconds`) and exits 0:
a rolling deploy drops nothing. `--sandbox` serves the demo API on a loopback
port of its own, so sandbox answers travel the same way as real ones. The REST
port also serves `/metrics` (serve/metrics.py), counting both ports' traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import uvicorn

from ..config import SANDBOX_API_KEY, Settings
from ..errors import ConfigError
from . import MCP_PATH, MCP_PORT, REST_PORT, accesslog
from .gateway import Gateway
from .limits import Limits, is_loopback
from .security import HEALTH_PATH, Guard, Policy

if TYPE_CHECKING:
    from .metrics import Metrics


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    rest_port: int = REST_PORT
    mcp_port: int = MCP_PORT
    #: "rest" or "mcp" to serve that server only
    only: str | None = None
    token: str | None = field(default=None, repr=False)
    #: callers send their own Prime key as the bearer token; the server holds none
    passthrough: bool = False
    #: seconds to reuse a success for identical requests; 0 = off
    cache_ttl: float = 0.0
    #: extra Host names (and browser Origins) to accept; "*" accepts any
    allow_hosts: tuple[str, ...] = ()
    allow_origins: tuple[str, ...] = ()
    drain_seconds: float = 30.0
    access_log: bool = True
    #: upstream concurrency, per-caller rate, request size and client pace (limits.py)
    limits: Limits = field(default_factory=Limits)

    def check(self, settings: Settings) -> None:
        """Refuse unsafe or impossible combinations before binding anything."""
        self.limits.check()
        if self.only not in (None, "rest", "mcp"):
            raise ConfigError(f"--only {self.only!r}: use rest or mcp")
        if self.cache_ttl < 0:
            raise ConfigError("--cache-ttl must be >= 0 seconds")
        if self.passthrough and self.token:
            raise ConfigError(
                "--auth passthrough and a token exclude each other: in passthrough the bearer is the caller's "
                "own Prime key; unset PRIME_BILLING_TOKEN or drop --auth passthrough"
            )
        if not is_loopback(self.host) and not self.token and not self.passthrough:
            raise ConfigError(
                f"refusing to listen on {self.host} without a token: anyone who reaches the port would spend "
                "the Prime key; set PRIME_BILLING_TOKEN (or --token-file), or use --auth passthrough"
            )
        if not self.passthrough:
            settings.require_key()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (its public `capture_signals` hook): the
    launcher stops both ports together, and exits 0 after draining instead of re-raising."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another port") from None


def sandbox_upstream(settings: Settings) -> tuple[Settings, Any]:
    """With `--sandbox`, the demo API on a loopback port of its own (and its server, to shut
    down), so the one upstream client calls it as it calls Prime; otherwise the settings as they are."""
    if not settings.sandbox:
        return settings, None
    from ..sandbox.faults import FaultySandbox
    from ..sandbox.server import make_server

    server = make_server(FaultySandbox(), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    host, port = server.server_address[:2]
    return settings.with_(base_url=f"http://{host}:{port}", api_key=SANDBOX_API_KEY, sandbox=False), server


def stop_sandbox(server: Any) -> None:
    """Stop and close what `sandbox_upstream` started, if it started anything."""
    if server is not None:
        server.shutdown()
        server.server_close()


class Launcher:
    """Binds, serves and drains the two servers (REST and MCP); usable in-process (tests) or from the CLI."""

    def __init__(self, options: ServeOptions, settings: Settings) -> None:
        options.check(settings)
        self.options = options
        self.settings = settings
        self.gateway: Gateway | None = None
        #: what /metrics shows (when the REST server is served)
        self.metrics: Metrics | None = None
        self.urls: dict[str, str] = {}
        self._servers: list[_Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._sandbox: Any = None

    async def start(self) -> None:
        from .mcp_app import build_mcp_app
        from .metrics import Metrics
        from .rest import build_rest_app, route_templates

        o = self.options
        if o.access_log:
            accesslog.setup()
        policy = Policy.build(
            bind_host=o.host,
            token=o.token,
            passthrough=o.passthrough,
            extra_hosts=o.allow_hosts,
            extra_origins=o.allow_origins,
        )
        upstream, self._sandbox = sandbox_upstream(self.settings)
        self.gateway = Gateway(
            upstream,
            passthrough=o.passthrough,
            cache_ttl=o.cache_ttl,
            max_upstream=o.limits.max_upstream,
            max_report_rows=o.limits.max_report_rows,
        )
        # each port: its server (rest/mcp), number, app, uvicorn's lifespan setting, and routes as metrics label them
        ports: list[tuple[str, int, Any, str, list[str]]] = []
        if o.only in (None, "rest"):
            metrics = self.metrics = Metrics(self.gateway, ttl=o.limits.metrics_ttl)
            rest = build_rest_app(self.gateway, secured=bool(o.token), metrics=metrics.endpoint)
            ports.append(("rest", o.rest_port, rest, "auto", route_templates()))
        if o.only in (None, "mcp"):
            on_call = self.metrics.tool_call if self.metrics is not None else None
            mcp = build_mcp_app(self.gateway, on_call=on_call)
            ports.append(("mcp", o.mcp_port, mcp, "on", [MCP_PATH, HEALTH_PATH]))
        sockets = [_listen(o.host, port[1]) for port in ports]
        for (name, _, app, lifespan, routes), sock in zip(ports, sockets, strict=True):
            served = guarded = Guard(app, policy, o.limits, host=o.host)
            if self.metrics is not None:
                self.metrics.guards[name] = guarded
                served = self.metrics.observe(guarded, name, routes)
            config = uvicorn.Config(
                accesslog.AccessLog(served, name) if o.access_log else served,
                log_level="warning",
                access_log=False,
                lifespan=lifespan,
                timeout_graceful_shutdown=o.drain_seconds,
                timeout_keep_alive=30,
                server_header=False,
                proxy_headers=False,
                h11_max_incomplete_event_size=o.limits.max_header or None,
            )
            server = _Server(config)
            server.should_exit = self._stopping
            self._servers.append(server)
            self._tasks.append(asyncio.ensure_future(server.serve(sockets=[sock])))
            host, port = sock.getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            self.urls[name] = f"http://{shown}:{port}" + (MCP_PATH if name == "mcp" else "")
        while not all(s.started for s in self._servers):
            if any(t.done() for t in self._tasks):
                await asyncio.gather(*self._tasks)
                if self._stopping:
                    return
                raise ConfigError("the server stopped while starting: see the log above")
            await asyncio.sleep(0.01)

    def stop(self, force: bool = False) -> None:
        self._stopping = True
        for s in self._servers:
            s.should_exit = True
            s.force_exit = s.force_exit or force

    async def wait(self) -> None:
        try:
            await asyncio.gather(*self._tasks)
        finally:
            if self.gateway is not None:
                await self.gateway.aclose()
            stop_sandbox(self._sandbox)

    async def run(self, *, announce: Callable[[str], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        # before any port listens: a probe that saw /healthz may signal at once
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self.stop(force=self._stopping))  # a second signal: no drain
        await self.start()
        # what start-up made lives as long as the process: a full garbage collection need not
        # scan it again, and pausing the loop for it would stall every request in the middle of a long report
        gc.freeze()
        if announce is not None and not self._stopping:
            announce(self.describe())
        await self.wait()

    def describe(self) -> str:
        o = self.options
        auth = "passthrough (callers' own keys)" if o.passthrough else ("token" if o.token else "none (loopback)")
        upstream = "built-in sandbox" if self.settings.sandbox else self.settings.base_url
        listening = ", ".join(f"{k.upper()} on {v}" for k, v in self.urls.items())
        return f"prime-billing serving {listening}; upstream {upstream}; auth {auth}; SIGTERM or Ctrl-C stops"


def event_loop_runner() -> asyncio.Runner:
    """uvloop when installed: its loop makes every request cheaper."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def serve(options: ServeOptions, settings: Settings, *, announce: Callable[[str], None] | None = None) -> None:
    launcher = Launcher(options, settings)
    # a report built in a worker thread hands the interpreter back to the event loop every
    # 0.5 ms instead of every 5 ms, so requests keep being answered meanwhile
    sys.setswitchinterval(0.0005)
    with event_loop_runner() as runner:
        runner.run(launcher.run(announce=announce))


def serve_stdio(settings: Settings) -> None:
    """Starts with or without a key: a client that launches the command shows only "failed to
    connect" for a server that exits at start, so each tool call says what to set instead."""
    from .mcp_app import run_stdio

    def stop() -> None:
        # The client is done with us. The SDK reads stdin in a worker thread that no
        # cancellation reaches, so a clean shutdown would wait for the client to close stdin:
        # leave at once instead; no request of ours is worth finishing for nobody.
        sys.stdout.flush()
        os._exit(0)

    async def main() -> None:
        upstream, sandbox = sandbox_upstream(settings)
        gateway = Gateway(upstream)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        try:
            await run_stdio(gateway)
        finally:
            await gateway.aclose()
            stop_sandbox(sandbox)

    with event_loop_runner() as runner:
        runner.run(main())
