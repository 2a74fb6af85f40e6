"""LangChain tools for every operation in the table, and a toolkit that hands them out.

Nothing here is written per operation: each tool's name, description and args
schema come from its `Operation`, so an operation added to the table becomes a
tool with no change here. This is the only module that imports langchain-core;
`import prime_billing` and the scripts stay free of it.

A tool answers with `response_format="content_and_artifact"`: the content is
the same compact summary the scripts print (what a model reads), the artifact
is the typed upstream body (`RunUsage`, `Wallet`, ...; a pydantic model that
keeps unknown fields), which programs use and which is never sent to a model.

Failures (bad arguments, upstream errors, no key) come back by default as a
`ToolMessage` with `status="error"` whose content is the one-line explanation
the scripts print, so an agent loop keeps going. With `handle_errors=False`
they raise instead: the typed `PrimeBillingError`, or pydantic's
`ValidationError` when the arguments do not fit the schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Iterator
from functools import partial
from typing import Any, Literal, TypedDict, Unpack, cast

from langchain_core.tools import BaseTool, BaseToolkit, ToolException
from pydantic import BaseModel, PrivateAttr, ValidationError

from . import operations as ops
from .client import AsyncClient, Client
from .config import Settings, load_settings, normalize_base_url
from .errors import InvalidInputError, PrimeBillingError

__all__ = ["Connection", "PrimeBillingTool", "PrimeBillingToolkit", "args_schema"]

#: what OpenAI, Anthropic, Gemini and Bedrock all accept as a function name
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def args_schema(op: ops.Operation) -> type[BaseModel]:
    """The operation's own inputs model: a model sees the types, bounds and per-field descriptions
    every other surface shows, and a wrong argument is refused by the same checks before any request."""
    return op.inputs


class Connection(TypedDict, total=False):
    """Where the tools send their requests: the keywords a toolkit and a single tool both take.

    A `client`/`async_client` shares an application's pools (closing them stays with
    the caller); `settings` is used as it is; `api_key`, `base_url`, `team_id` override
    either. With neither, settings are found the way the scripts find them (arguments,
    environment, `~/.prime/config.json`); `sandbox=True` answers from the demo data."""

    client: Client | None
    async_client: AsyncClient | None
    settings: Settings | None
    api_key: str | None
    base_url: str | None
    team_id: str | None
    sandbox: bool


def _take_connection(kwargs: dict[str, Any]) -> Connection:
    """The `Connection` keywords, taken out of `kwargs`: what is left is for LangChain's own fields."""
    return cast(Connection, {k: kwargs.pop(k) for k in Connection.__optional_keys__ if k in kwargs})


class _Connections:
    """Settings and clients shared by the tools of one toolkit.

    Clients the caller passes in are used as they are, and stay the caller's to
    close. Clients made here are opened on first use: one sync client, closed by
    `close()` or when the toolkit is garbage collected, and one async client per
    event loop (an httpx pool cannot outlive the loop it was opened on), closed by
    `aclose()` or when the loop shuts down (`asyncio.run` ends).
    """

    def __init__(self, settings: Settings, client: Client | None, async_client: AsyncClient | None) -> None:
        self.settings = settings
        self._client = client
        self._async_client = async_client
        self._owned: Client | None = None
        self._owned_async: dict[asyncio.AbstractEventLoop, tuple[AsyncClient, AsyncGenerator[None, None]]] = {}
        self._lock = threading.Lock()

    @classmethod
    def resolve(cls, connection: Connection) -> _Connections:
        client, async_client = connection.get("client"), connection.get("async_client")
        shared = client or async_client
        base = connection.get("settings") or (shared.settings if shared else None)
        api_key, base_url, team_id = connection.get("api_key"), connection.get("base_url"), connection.get("team_id")
        if base is None:
            # The way the scripts do it: arguments, then environment, then ~/.prime/config.json.
            base = load_settings(
                api_key=api_key, base_url=base_url, team_id=team_id, sandbox=connection.get("sandbox", False)
            )
        else:
            changes: dict[str, Any] = {"api_key": api_key, "team_id": team_id}
            if base_url:
                changes["base_url"] = normalize_base_url(base_url)
            base = base.with_(**{k: v for k, v in changes.items() if v is not None})
        return cls(base, client, async_client)

    def client(self) -> Client:
        if self._client is not None:
            return self._client
        with self._lock:
            if self._owned is None:
                self._owned = Client(self.settings)
                weakref.finalize(self, self._owned.close)
            return self._owned

    async def async_client(self) -> AsyncClient:
        if self._async_client is not None:
            return self._async_client
        loop = asyncio.get_running_loop()
        with self._lock:
            for gone in [lp for lp in self._owned_async if lp.is_closed()]:
                del self._owned_async[gone]
            held = self._owned_async.get(loop)
        if held is not None:
            return held[0]
        fresh = AsyncClient(self.settings)
        # An async generator alive when the loop shuts down is closed by it
        # (`shutdown_asyncgens`): that closes the pool on its own loop.
        keeper = _close_at_loop_shutdown(fresh)
        await keeper.__anext__()
        with self._lock:
            held = self._owned_async.setdefault(loop, (fresh, keeper))
        if held[0] is not fresh:
            await keeper.aclose()
        return held[0]

    def close(self) -> None:
        with self._lock:
            owned, self._owned = self._owned, None
        if owned is not None:
            owned.close()

    async def aclose(self) -> None:
        self.close()
        with self._lock:
            held = self._owned_async.pop(asyncio.get_running_loop(), None)
        if held is not None:
            await held[1].aclose()


async def _close_at_loop_shutdown(client: AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


class PrimeBillingTool(BaseTool):
    """One operation of the table as a LangChain tool (sync through `Client`, async through `AsyncClient`)."""

    response_format: Literal["content", "content_and_artifact"] = "content_and_artifact"

    _operation: ops.Operation = PrivateAttr()
    _connections: _Connections = PrivateAttr()

    def __init__(
        self,
        operation: ops.Operation | str,
        *,
        handle_errors: bool = True,
        name_prefix: str = "",
        connections: _Connections | None = None,
        **kwargs: Any,
    ) -> None:
        """`kwargs`: the `Connection` keywords (where requests go), and any other `BaseTool` field."""
        connection = _take_connection(kwargs)
        op = operation if isinstance(operation, ops.Operation) else ops.get(operation)
        name = name_prefix + op.name
        if not TOOL_NAME.fullmatch(name):
            raise InvalidInputError(
                f"tool name {name!r} is not accepted by function-calling APIs: use 1-64 letters, digits, '_', '-'"
            )
        # the words the scripts, REST and MCP use for the same bad argument, not pydantic's
        handle_validation: bool | Callable[[ValidationError], str] = (
            partial(ops.explain, op) if handle_errors else False
        )
        kwargs.setdefault("handle_tool_error", handle_errors)
        kwargs.setdefault("handle_validation_error", handle_validation)
        super().__init__(name=name, description=_description(op), args_schema=args_schema(op), **kwargs)
        self._operation = op
        self._connections = connections or _Connections.resolve(connection)

    @property
    def operation(self) -> ops.Operation:
        return self._operation

    @property
    def settings(self) -> Settings:
        return self._connections.settings

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        # A bare string input (single-argument tools) arrives positionally.
        if args and self._operation.params:
            kwargs = {self._operation.params[0].name: args[0], **kwargs}
        return kwargs

    @contextlib.contextmanager
    def _tool_errors(self) -> Iterator[None]:
        """As a ToolException the model reads the one-line message; otherwise the typed error."""
        try:
            yield
        except PrimeBillingError as exc:
            if self.handle_tool_error:
                raise ToolException(str(exc)) from exc
            raise

    def _run(self, *args: Any, **kwargs: Any) -> tuple[str, BaseModel]:
        with self._tool_errors():
            result = self._connections.client().call(self._operation.name, self._arguments(args, kwargs))
        return result.summary(), result.data

    async def _arun(self, *args: Any, **kwargs: Any) -> tuple[str, BaseModel]:
        with self._tool_errors():
            client = await self._connections.async_client()
            result = await client.call(self._operation.name, self._arguments(args, kwargs))
        return result.summary(), result.data


def _description(op: ops.Operation) -> str:
    note = "Read-only; safe to call again." if op.hints.read_only and op.hints.idempotent else ""
    return f"{op.description} {note}".strip()


class PrimeBillingToolkit(BaseToolkit):
    """Every operation of the table as a tool, all sharing one set of settings and connection pools.

    Where the requests go is said by the `Connection` keywords; with none, settings come
    from the environment and `~/.prime/config.json` like the scripts.
    """

    handle_errors: bool = True
    #: prepended to every tool name, for agents that mix tools from many vendors
    name_prefix: str = ""

    _connections: _Connections = PrivateAttr()

    def __init__(self, *, handle_errors: bool = True, name_prefix: str = "", **connection: Unpack[Connection]) -> None:
        super().__init__(handle_errors=handle_errors, name_prefix=name_prefix)
        self._connections = _Connections.resolve(connection)

    @property
    def settings(self) -> Settings:
        return self._connections.settings

    def get_tools(self) -> list[BaseTool]:
        return [
            PrimeBillingTool(
                op,
                connections=self._connections,
                handle_errors=self.handle_errors,
                name_prefix=self.name_prefix,
            )
            for op in ops.OPERATIONS
        ]

    def close(self) -> None:
        """Close the sync pool this toolkit opened (pools passed in are the caller's to close)."""
        self._connections.close()

    async def aclose(self) -> None:
        """Close the pools this toolkit opened, including the running loop's async one."""
        await self._connections.aclose()
