"""An offline agent loop: a scripted chat model calls the tools, the loop runs them against the
loopback sandbox and feeds the ToolMessages back, including an error for an unknown run."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolCall, ToolMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

from conftest import LiveSandbox
from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.langchain import PrimeBillingToolkit


class ToolCallingFakeModel(GenericFakeChatModel):
    """GenericFakeChatModel plus `bind_tools` the way real chat models do it: the tools' OpenAI
    schemas travel with every request. It records what each request carried."""

    requests: list[dict[str, Any]] = Field(default_factory=list)

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Runnable[Any, AIMessage]:
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        self.requests.append({"messages": list(messages), "tools": kwargs.get("tools", [])})
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)


def tc(name: str, args: dict[str, Any], call_id: str) -> ToolCall:
    return ToolCall(name=name, args=args, id=call_id, type="tool_call")


def scripted_model() -> ToolCallingFakeModel:
    turns = [
        AIMessage(
            content="",
            tool_calls=[
                tc("get_run_usage", {"run_id": "rft_sbx_running"}, "call_cost"),
                tc("get_wallet", {"limit": 5}, "call_wallet"),
                tc("get_run_usage", {"run_id": "rft_does_not_exist"}, "call_missing"),
            ],
        ),
        # having read the 404, it tries the other run the user might have meant
        AIMessage(content="", tool_calls=[tc("get_run_usage", {"run_id": "rft_sbx_completed"}, "call_retry")]),
        AIMessage(content="rft_sbx_running cost $17.50; the wallet holds $123.45; rft_does_not_exist is unknown."),
    ]
    return ToolCallingFakeModel(messages=iter(turns), requests=[])


def agent_loop(model: ToolCallingFakeModel, tools: list[BaseTool], question: str) -> list[BaseMessage]:
    by_name = {t.name: t for t in tools}
    llm = model.bind_tools(tools)
    messages: list[BaseMessage] = [HumanMessage(question)]
    for _ in range(6):
        reply = llm.invoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        messages += [by_name[call["name"]].invoke(call) for call in reply.tool_calls]
    raise AssertionError("the loop did not finish")


async def async_agent_loop(model: ToolCallingFakeModel, tools: list[BaseTool], question: str) -> list[BaseMessage]:
    by_name = {t.name: t for t in tools}
    llm = model.bind_tools(tools)
    messages: list[BaseMessage] = [HumanMessage(question)]
    for _ in range(6):
        reply = await llm.ainvoke(messages)
        messages.append(reply)
        if not reply.tool_calls:
            return messages
        messages += await asyncio.gather(*(by_name[call["name"]].ainvoke(call) for call in reply.tool_calls))
    raise AssertionError("the loop did not finish")


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_agent_gets_cost_and_wallet_and_survives_an_unknown_run(sandbox: LiveSandbox, mode: str) -> None:
    kit = PrimeBillingToolkit(settings=Settings(api_key=SANDBOX_API_KEY, base_url=sandbox.url))
    tools = kit.get_tools()
    model = scripted_model()
    question = "What did run rft_sbx_running cost, what is left in the wallet, and what about rft_does_not_exist?"
    if mode == "sync":
        transcript = agent_loop(model, tools, question)
    else:
        transcript = asyncio.run(async_agent_loop(model, tools, question))
    kit.close()

    results = {m.tool_call_id: m for m in transcript if isinstance(m, ToolMessage)}
    assert list(results) == ["call_cost", "call_wallet", "call_missing", "call_retry"]

    cost = results["call_cost"]
    assert cost.status == "success" and cost.name == "get_run_usage"
    assert "$17.50" in cost.content and "9,000,000 tok" in cost.content
    assert cost.artifact.total_cost_usd == 17.5

    wallet = results["call_wallet"]
    assert wallet.status == "success" and "balance $123.45 USD" in wallet.content
    assert wallet.artifact.total_billings == 46 and len(wallet.artifact.recent_billings) == 5

    missing = results["call_missing"]
    assert missing.status == "error" and missing.artifact is None
    assert missing.content.startswith("run not found (404") and missing.content.endswith("check the id")

    assert results["call_retry"].status == "success" and results["call_retry"].artifact.total_cost_usd == 40.8
    assert isinstance(transcript[-1], AIMessage) and "$17.50" in transcript[-1].content

    # The model saw every tool's schema on every request, and the tool results (error included) on the later ones.
    assert len(model.requests) == 3
    for request in model.requests:
        assert [t["function"]["name"] for t in request["tools"]] == [t.name for t in tools]
    second = [m for m in model.requests[1]["messages"] if isinstance(m, ToolMessage)]
    assert [m.status for m in second] == ["success", "success", "error"]
    assert len([m for m in model.requests[2]["messages"] if isinstance(m, ToolMessage)]) == 4
    assert sandbox.requests() == 4
