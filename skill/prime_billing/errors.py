"""Typed errors, so callers branch on the kind of failure rather than parse text.

An error carries facts: its kind (the class and a stable `code`), the upstream
status that caused it, how long the upstream asked us to wait, and a one-line
message whose advice is marked, not worded. Each surface decides the rest in
its own terms: the CLI its exit code, the REST server its HTTP status, every
surface the words of its advice (`worded`). None of them ever holds the API key.
"""

from __future__ import annotations

import re

from .wording import Surface, mark, phrase


class PrimeBillingError(Exception):
    """Base of every error this package raises on purpose."""

    #: short stable code for programs (`problem+json` type, tool error code)
    code: str = "error"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None):
        super().__init__(_one_line(message))
        self.message = str(self.args[0])
        #: the upstream HTTP status that caused it, when there was one
        self.status = status
        #: seconds the upstream asked us to wait (429 / 503)
        self.retry_after = retry_after

    def __str__(self) -> str:
        return phrase(self.message, "tool")

    def worded(self, surface: Surface) -> str:
        """The message with its advice in `surface`'s terms (a flag, an argument, a query parameter)."""
        return phrase(self.message, surface)


class ConfigError(PrimeBillingError):
    """Missing or unusable configuration (no key, bad base URL, bad config file)."""

    code = "config"


class InvalidInputError(PrimeBillingError, ValueError):
    """A parameter was refused before any request was sent."""

    code = "invalid_input"


class APIError(PrimeBillingError):
    """The upstream answered with an error status."""

    code = "api_error"


class AuthenticationError(APIError):
    code = "unauthorized"


class PaymentRequiredError(APIError):
    code = "payment_required"


class PermissionDeniedError(APIError):
    code = "forbidden"


class NotFoundError(APIError):
    code = "not_found"


class UpstreamValidationError(APIError):
    code = "upstream_validation"


class RateLimitError(APIError):
    code = "rate_limited"


class UpstreamUnavailableError(APIError):
    """5xx or no connection, after the retries ran out."""

    code = "upstream_unavailable"


class UpstreamTimeoutError(UpstreamUnavailableError):
    code = "upstream_timeout"


class BadResponseError(APIError):
    """The upstream answered 2xx with something that is not the documented body."""

    code = "bad_upstream_response"


class ReportTooLargeError(PrimeBillingError):
    """A report would read more wallet rows than the server allows one request."""

    code = "report_too_large"

    def __init__(self, rows: int, cap: int, *, narrowed_by: str | None = "since") -> None:
        """`narrowed_by`: the input that makes the report read fewer rows (a start date, fewer days), if any."""
        narrow = f"narrow it with {mark(narrowed_by)}, or " if narrowed_by else ""
        super().__init__(
            f"this report would read {rows} wallet rows; this server reads at most {cap} for one request: "
            f"{narrow}ask the server's operator to raise its cap on report rows"
        )
        self.rows = rows
        self.cap = cap


_BEARER = re.compile(r"(?i)(bearer\s+)\S+")


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact(text: str, *secrets: str | None) -> str:
    """Remove anything that looks like a credential before text leaves the process."""
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return _BEARER.sub(r"\1***", text)
