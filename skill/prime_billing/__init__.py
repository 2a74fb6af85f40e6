"""prime-billing: what an RFT run cost and what is in the wallet, on Prime Intellect.

Importing the package is cheap: names load on first use, and nothing here pulls
in LangChain, MCP or a server stack (those live in `prime_billing.langchain`
and `prime_billing.serve`).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .__version__ import __version__

_LAZY = {
    "Client": "client",
    "AsyncClient": "client",
    "Result": "client",
    "RetryPolicy": "client",
    "Settings": "config",
    "load_settings": "config",
    "RunUsage": "models",
    "Wallet": "models",
    "BillingEntry": "models",
    "OPERATIONS": "operations",
    "PrimeBillingError": "errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from .client import AsyncClient, Client, Result, RetryPolicy
    from .config import Settings, load_settings
    from .errors import PrimeBillingError
    from .models import BillingEntry, RunUsage, Wallet
    from .operations import OPERATIONS


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'prime_billing' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
