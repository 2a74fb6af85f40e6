"""LangChain's own standard tool tests (`langchain-tests`), for every tool of the table.

One unit class and one integration class per operation are generated from
`OPERATIONS`; the integration ones invoke the tool against the sandbox served
on loopback. The async standard tests need pytest-asyncio (a dependency of
langchain-tests); the classes carry the asyncio mark themselves so the rest of
the suite keeps pytest-asyncio's strict mode.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.tools import BaseTool
from langchain_tests.integration_tests import ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

from conftest import LiveSandbox
from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.langchain import PrimeBillingTool
from prime_billing.operations import OPERATIONS, Operation
from test_langchain import example_args

ASYNC_MARKS = [
    pytest.mark.asyncio,
    # the class-wide asyncio mark also lands on the synchronous standard tests
    pytest.mark.filterwarnings("ignore:The test .* is not an async function:pytest.PytestWarning"),
]

ENV = {
    "PRIME_API_KEY": "sk-from-env",
    "PRIME_API_BASE_URL": "http://127.0.0.1:9/api/v1",
    "PRIME_TEAM_ID": "team_from_env",
    "PRIME_BILLING_TIMEOUT": "30",
    "PRIME_BILLING_MAX_RETRIES": "3",
    "HOME": "/nonexistent-home-for-prime-billing-tests",
}


def _unit_class(op: Operation, example: dict[str, Any]) -> type:
    class Unit(ToolsUnitTests):
        @property
        def tool_constructor(self) -> type[BaseTool]:
            return PrimeBillingTool

        @property
        def tool_constructor_params(self) -> dict[str, Any]:
            return {"operation": op.name, "sandbox": True}

        @property
        def tool_invoke_params_example(self) -> dict[str, Any]:
            return example

        @property
        def init_from_env_params(self) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
            # no arguments: the tool finds its settings where the scripts do
            expected = Settings(api_key="sk-from-env", base_url="http://127.0.0.1:9", team_id="team_from_env")
            return ENV, {"operation": op.name}, {"name": op.name, "settings": expected}

    return Unit


def _integration_class(op: Operation, example: dict[str, Any]) -> type:
    class Integration(ToolsIntegrationTests):
        pytestmark = ASYNC_MARKS

        @property
        def tool_constructor(self) -> type[BaseTool]:
            return PrimeBillingTool

        @property
        def tool_invoke_params_example(self) -> dict[str, Any]:
            return example

        @pytest.fixture
        def tool(self, sandbox: LiveSandbox) -> BaseTool:
            settings = Settings(api_key=SANDBOX_API_KEY, base_url=sandbox.url, max_retries=0)
            # raising on error, so a failing call fails the standard test rather than passing as an error message
            return PrimeBillingTool(op, settings=settings, handle_errors=False)

    return Integration


for _op in OPERATIONS:
    _example = example_args(_op)
    if _example is None:
        continue
    for _kind, _make in (("Unit", _unit_class), ("Integration", _integration_class)):
        _cls = _make(_op, _example)
        _cls.__name__ = _cls.__qualname__ = f"Test{_kind}_{_op.name}"
        globals()[_cls.__name__] = _cls


def test_core_operations_have_standard_tests() -> None:
    for name in ("get_run_usage", "get_wallet"):
        assert f"TestUnit_{name}" in globals() and f"TestIntegration_{name}" in globals()
