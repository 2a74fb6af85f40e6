"""The launcher: the operations table served as REST (port 8080) and MCP (port 9090).

Needs the `serve` extra. Importing this package is cheap: the server stack loads only in its own
modules, so the CLI offers `serve` without paying for it on every other command.
"""

#: the contract's ports (capability/training-billing.yaml, `exposes`)
REST_PORT, MCP_PORT = 8080, 9090
MCP_PATH, METRICS_PATH, HEALTH_PATH = "/mcp", "/metrics", "/healthz"
#: scope keys: the request's `gateway.Caller` (the guard's), and the upstream attempts it made (the access log's)
CALLER, UPSTREAM_CALLS = "prime_billing.caller", "prime_billing.upstream_calls"
