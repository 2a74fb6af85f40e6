"""The launcher: the operations table served as REST (port 8080) and MCP (port 9090).

Needs the `serve` extra (`pip install 'prime-billing-skill[serve]'`). Importing
this package is cheap; the server stack loads only in its own modules, so the
CLI can offer `serve` without paying for it on every other command.
"""

from __future__ import annotations

#: the contract's ports (capability/training-billing.yaml, `exposes`)
REST_PORT = 8080
MCP_PORT = 9090
MCP_PATH = "/mcp"
#: Prometheus metrics, on the REST port (serve/observe.py)
METRICS_PATH = "/metrics"
#: liveness and readiness, on both ports: never guarded, never calls upstream
HEALTH_PATH = "/healthz"
#: scope key: the request's `guard.Caller`, set by the guard for the routes
CALLER = "prime_billing.caller"
#: scope key: the upstream attempts a request made, set by its route for the access log
UPSTREAM_CALLS = "prime_billing.upstream_calls"
