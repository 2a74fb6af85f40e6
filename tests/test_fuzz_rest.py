"""schemathesis against the REST adapter's own OpenAPI document, with every default check.

Upstream is the loopback sandbox, so generated requests reach a real upstream
and its real answers (200, 403, 404, 422) come back through the adapter; each
must match the document: status, content type, headers and body schema. A longer
run of the same is `benchmarks/fuzz_rest.py`.

The schema is the document the adapter builds (loaded at collection, as
schemathesis wants it then); a test checks it is exactly what `/openapi.json`
serves.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from conftest import start_sandbox
from prime_billing.config import SANDBOX_API_KEY, Settings
from prime_billing.operations import OPERATIONS
from prime_billing.serve.openapi import document
from serve_harness import running

DOCUMENT = document(OPERATIONS, secured=False)
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def rest_url() -> Iterator[str]:
    live, _ = start_sandbox()
    upstream = Settings(api_key=SANDBOX_API_KEY, base_url=live.url, max_retries=0, timeout=5.0)
    try:
        with running(upstream, only="rest") as launcher:
            yield launcher.urls["rest"]
    finally:
        live.server.shutdown()  # type: ignore[attr-defined]
        live.server.server_close()  # type: ignore[attr-defined]


def test_the_fuzzed_document_is_the_served_one(rest_url: str) -> None:
    assert httpx.get(rest_url + "/openapi.json").json() == DOCUMENT


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_rest_adapter_conforms_to_its_openapi_document(case: Any, rest_url: str) -> None:
    case.call_and_validate(base_url=rest_url)
