"""Settings, found the way Prime's own tools find them, so `prime login` is enough.

Precedence: explicit arguments (flags) > environment > `~/.prime/config.json` >
defaults. The key is held in a field that never shows in a repr; where each
setting came from is kept beside it (`Settings.sources`), so an error about the
key names the variable or file to fix, never the key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from .errors import ConfigError
from .wording import mark

DEFAULT_BASE_URL = "https://api.primeintellect.ai"
#: the key the sandbox accepts; it guards nothing, it only makes 401 testable
SANDBOX_API_KEY = "sbx-demo-key"
SANDBOX_BASE_URL = "http://sandbox.invalid"
#: `Settings.sources` values that are not a variable's name or the config file's path
ARGUMENT, DEFAULT, SANDBOX = "argument", "default", "sandbox"


@dataclass(frozen=True)
class Settings:
    api_key: str | None = field(default=None, repr=False)
    base_url: str = DEFAULT_BASE_URL
    team_id: str | None = None
    #: serve from the in-process sandbox instead of the network
    sandbox: bool = False
    #: seconds to wait for a response (each attempt)
    timeout: float = 30.0
    connect_timeout: float = 5.0
    #: retries after the first attempt, for 429/502/503/504 and connection errors
    max_retries: int = 3
    #: ceiling on all the waiting between retries of one call, in seconds
    retry_budget: float = 30.0
    #: where `api_key`, `base_url` and `team_id` came from: the variable's name (`PRIME_API_KEY`),
    #: the config file's path, `ARGUMENT`, `DEFAULT` or `SANDBOX`; a setting not listed was given directly
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __repr__(self) -> str:
        key = "set" if self.api_key else "missing"
        return (
            f"Settings(api_key=<{key}>, base_url={self.base_url!r}, team_id={self.team_id!r}, "
            f"sandbox={self.sandbox}, timeout={self.timeout}, max_retries={self.max_retries})"
        )

    def with_(self, **changes: object) -> Settings:
        given = {name: ARGUMENT for name in ("api_key", "base_url", "team_id") if name in changes}
        if given and "sources" not in changes:
            changes["sources"] = {**self.sources, **given}
        return replace(self, **changes)  # type: ignore[arg-type]

    def require_key(self) -> str:
        """The key, or a `ConfigError` saying what to set: none was found, or the one found cannot be
        a key (blank, or holding whitespace or a control character, which no Prime key does)."""
        key = self.api_key
        if not key:
            raise ConfigError(
                f"no Prime API key: set PRIME_API_KEY or run `prime login` (try {mark('sandbox')} for demo data)"
            )
        refusal = key_refusal(key, self.sources.get("api_key", ARGUMENT))
        if refusal:
            raise ConfigError(refusal)
        return key


def key_refusal(key: str, source: str) -> str | None:
    """Why `key`, found in `source`, cannot be a Prime key, naming the source and never the key; None if it can."""
    if key.strip() and not any(c.isspace() or not c.isprintable() for c in key):
        return None
    if source == ARGUMENT:
        where, fix = "the API key given", "pass the key alone"
    elif source.startswith("PRIME_"):
        where, fix = source, f"set {source} to the key alone, or unset it"
    else:
        where, fix = f"the api_key in {source}", "run `prime login` again or fix the file"
    if not key.strip():
        return f"{where} is blank: {fix}"
    return f"{where} holds a space, line break or control character, which no Prime API key does: {fix}"


def config_file() -> Path:
    return Path.home() / ".prime" / "config.json"


def normalize_base_url(url: str) -> str:
    """Accept the forms users paste (with or without `/api/v1`, trailing slash)."""
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")].rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"base URL {url!r} is not an http(s) URL: fix PRIME_API_BASE_URL or {mark('base_url')}")
    return url


def _read_file(path: Path) -> dict[str, object]:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}; fix its permissions or remove it") from None
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ConfigError(f"{path} is not valid JSON: run `prime login` again or fix the file") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} should hold a JSON object: run `prime login` again or fix the file")
    return data


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < 0:
        raise ConfigError(f"{name}={raw!r} is not a non-negative number: fix or unset it")
    return value


def load_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    team_id: str | None = None,
    sandbox: bool = False,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings; arguments that are None fall through to env, file, default."""
    env = os.environ if env is None else env
    file = _read_file(config_file())

    sources: dict[str, str] = {}

    def pick(name: str, arg: str | None, env_names: tuple[str, ...], file_key: str) -> str | None:
        if arg:
            sources[name] = ARGUMENT
            return arg
        for var in env_names:
            if env.get(var):
                sources[name] = var
                return env[var]
        value = file.get(file_key)
        if isinstance(value, str) and value:
            sources[name] = str(config_file())
            return value
        sources[name] = DEFAULT
        return None

    timeout = _float(env, "PRIME_BILLING_TIMEOUT", 30.0)
    retries = int(_float(env, "PRIME_BILLING_MAX_RETRIES", 3))
    if sandbox:
        # the demo data answers in process: its own key and URL, whatever is configured
        key, url, team = SANDBOX_API_KEY, SANDBOX_BASE_URL, team_id
        sources.update(api_key=SANDBOX, base_url=SANDBOX, team_id=ARGUMENT if team_id else DEFAULT)
    else:
        key = pick("api_key", api_key, ("PRIME_API_KEY",), "api_key")
        url = pick("base_url", base_url, ("PRIME_API_BASE_URL", "PRIME_BASE_URL"), "base_url") or DEFAULT_BASE_URL
        url = normalize_base_url(url)
        team = pick("team_id", team_id, ("PRIME_TEAM_ID",), "team_id")
    return Settings(
        api_key=key,
        base_url=url,
        team_id=team,
        sandbox=sandbox,
        timeout=timeout,
        max_retries=retries,
        sources=sources,
    )
