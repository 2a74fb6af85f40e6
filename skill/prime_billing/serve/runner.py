"""One process, two ports: REST and MCP on one event loop, one upstream client, one state store.

Signal handlers are in place before any port listens, so SIGTERM or SIGINT at any moment stops accepting, lets the
requests in progress finish (up to `--drain` seconds) and exits 0: a rolling deploy drops nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator

import uvicorn

from ..config import SANDBOX_API_KEY, Settings
from ..errors import ConfigError
from . import MCP_PATH
from .gateway import Gateway
from .options import Options

#: how every server runs: the launcher logs, names and sizes things itself
UVICORN = dict(log_level="warning", access_log=False, lifespan="on", server_header=False, proxy_headers=False)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling (its public `capture_signals` hook): the launcher stops both ports
    together, and exits 0 after draining instead of re-raising."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another port") from None


@contextlib.contextmanager
def upstream(settings: Settings) -> Iterator[Settings]:
    """The settings to call upstream with; with `--sandbox`, the demo API's on a loopback port of its own while this
    lasts, so its answers travel the way Prime's do."""
    if not settings.sandbox:
        yield settings
        return
    from ..sandbox.server import running

    with running() as url:
        yield settings.with_(base_url=url, api_key=SANDBOX_API_KEY, sandbox=False)


class Launcher:
    def __init__(self, options: Options, settings: Settings) -> None:
        if not options.passthrough:
            settings.require_key()
        self.options, self.settings = options, settings
        self.gateway: Gateway | None = None
        self.urls: dict[str, str] = {}
        self._servers: list[_Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping, self._resources = False, contextlib.AsyncExitStack()

    async def start(self) -> None:
        from .guard import Guard
        from .observe import Metrics, Observe, Scrape, setup_logs
        from .rest import build_rest_app
        from .state import State

        o = self.options
        setup_logs(o.access_log)
        settings = self._resources.enter_context(upstream(self.settings))
        state = State(o, lock_ttl=settings.timeout)
        self._resources.push_async_callback(state.aclose)
        m = Metrics(lambda: float(state.up), lambda: float(gateway.waiting))
        self.gateway = gateway = Gateway(settings, state, o, on_shared=m.shared, on_reply=m.reply)
        self._resources.push_async_callback(gateway.aclose)
        apps = {}
        if o.only != "mcp":
            apps["rest"] = (o.rest_port, build_rest_app(gateway, Scrape(m, gateway), bool(o.token)))
        if o.only != "rest":
            from .mcp_app import build_mcp_app  # the SDK loads only for the port that serves it

            apps["mcp"] = (o.mcp_port, build_mcp_app(gateway, m.tool_call, o.max_body))
        sockets = {name: _listen(o.host, port) for name, (port, _) in apps.items()}
        config = dict(UVICORN, timeout_graceful_shutdown=o.drain, h11_max_incomplete_event_size=o.max_header or None)
        for name, (_, app) in apps.items():
            app.add_middleware(Guard, options=o, state=state, surface=name, on_limited=m.rate_limited.labels(name).inc)
            app.add_middleware(Observe, surface=name, routes=app.routes, metrics=m)
            server = _Server(uvicorn.Config(app, **config))
            server.should_exit = self._stopping
            self._servers.append(server)
            self._tasks.append(asyncio.ensure_future(server.serve(sockets=[sockets[name]])))
            host, port = sockets[name].getsockname()[:2]
            self.urls[name] = f"http://{f'[{host}]' if ':' in host else host}:{port}{MCP_PATH if name == 'mcp' else ''}"
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
            s.should_exit, s.force_exit = True, s.force_exit or force

    async def wait(self) -> None:
        async with self._resources:
            await asyncio.gather(*self._tasks)

    async def run(self, *, announce: Callable[[str], None] | None = None) -> None:
        loop = asyncio.get_running_loop()
        # before any port listens: a probe that saw /healthz may signal at once
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: self.stop(force=self._stopping))  # a second signal: no drain
        await self.start()
        # what start-up made lives as long as the process: a full garbage collection need not scan it again, and
        # pausing the loop for it would stall every request in the middle of a long report
        gc.freeze()
        if announce is not None and not self._stopping:
            o = self.options
            auth = "passthrough (callers' own keys)" if o.passthrough else ("token" if o.token else "none (loopback)")
            upstream = "built-in sandbox" if self.settings.sandbox else self.settings.base_url
            listening = ", ".join(f"{k.upper()} on {v}" for k, v in self.urls.items())
            state = "shared (Redis)" if o.state_url else "this process"
            announce(
                f"prime-billing serving {listening}; upstream {upstream}; auth {auth}; state {state}; SIGTERM stops"
            )
        await self.wait()


def event_loop_runner() -> asyncio.Runner:
    """uvloop when installed: its loop makes every request cheaper."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def serve(options: Options, settings: Settings, *, announce: Callable[[str], None] | None = None) -> None:
    launcher = Launcher(options, settings)
    # a report built in a worker thread hands the interpreter back to the event loop every 0.5 ms instead of every
    # 5 ms, so requests keep being answered meanwhile
    sys.setswitchinterval(0.0005)
    with event_loop_runner() as runner:
        runner.run(launcher.run(announce=announce))


def serve_stdio(settings: Settings) -> None:
    """Starts with or without a key: a client that launches the command shows only "failed to connect" for a server
    that exits at start, so each tool call says what to set instead."""
    from .mcp_app import run_stdio
    from .state import State

    def stop() -> None:
        # The client is done with us. The SDK reads stdin in a worker thread that no cancellation reaches, so a
        # clean shutdown would wait for the client to close stdin: leave at once; no request is worth finishing.
        sys.stdout.flush()
        os._exit(0)

    async def main() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop)
        with upstream(settings) as reached:
            gateway = Gateway(reached, State(Options()), Options())
            try:
                await run_stdio(gateway)
            finally:
                await gateway.aclose()

    with event_loop_runner() as runner:
        runner.run(main())
