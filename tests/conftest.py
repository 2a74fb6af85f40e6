"""Shared fixtures: the sandbox served on a real loopback socket, and subprocess runners."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from prime_billing.config import SANDBOX_API_KEY
from prime_billing.sandbox import NOW_ENV
from prime_billing.sandbox.faults import FaultySandbox
from prime_billing.sandbox.server import make_server

ROOT = Path(__file__).resolve().parent.parent

#: The suite runs its scripts, CLI and servers as hundreds of processes: each compiles a module once
#: for the whole suite, into a cache outside the tree, even where the environment says to write no
#: bytecode (what a user's own Python does by default)
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault(
    "PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), f"prime-billing-tests-pyc-{os.getuid()}")
)
SCRIPTS = ROOT / "scripts"

#: The sandbox's "now" in every test: its newest row is dated 2026-11-20T10:00:00Z, the date the
#: tests' hand-worked figures (and reference/reports.md's) are worked out for. Pinned three ways,
#: so no test depends on the day it runs: `_pinned_sandbox_now` sets NOW_ENV for the test process
#: (the in-process `--sandbox`, LangChain's `sandbox=True`, launchers started in process),
#: `script_env` passes it to subprocesses, and `start_sandbox` gives it to the FaultySandbox it
#: builds. A test of the sandbox alive today unsets it (`monkeypatch.delenv(NOW_ENV)`,
#: `script_env(..., sandbox_now=None)`) and brackets the current time, or passes its own.
SANDBOX_NOW = "2026-11-20T10:00:00Z"


@pytest.fixture(scope="session", autouse=True)
def _pinned_sandbox_now() -> Iterator[None]:
    """Every sandbox the tests make, in this process, dated as the hand-worked figures are."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(NOW_ENV, SANDBOX_NOW)
        yield


@dataclass
class LiveSandbox:
    """The sandbox behind a real HTTP server on 127.0.0.1 (ephemeral port)."""

    url: str
    box: FaultySandbox
    server: object

    def faults(self, **spec: object) -> None:
        self.box.set_faults(spec)

    def requests(self, path_part: str = "") -> int:
        """Upstream requests seen so far (optionally only those whose key contains path_part)."""
        if not path_part:
            return self.box.stats["requests"]
        return sum(n for k, n in self.box.stats.items() if k != "requests" and path_part in k)


def start_sandbox(box: FaultySandbox | None = None) -> tuple[LiveSandbox, threading.Thread]:
    box = box or FaultySandbox(now=datetime.fromisoformat(SANDBOX_NOW))
    server = make_server(box, "127.0.0.1", 0)
    host, port = server.server_address[:2]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return LiveSandbox(f"http://{host}:{port}", box, server), thread


@pytest.fixture(scope="session")
def _live_sandbox() -> Iterator[LiveSandbox]:
    live, _ = start_sandbox()
    yield live
    live.server.shutdown()  # type: ignore[attr-defined]
    live.server.server_close()  # type: ignore[attr-defined]


@pytest.fixture
def sandbox(_live_sandbox: LiveSandbox) -> Iterator[LiveSandbox]:
    """A live sandbox with no faults and fresh counters for each test. The sandbox is the session's:
    a page a failed scan abandoned may still be answered after its test, so each test ends once no
    request is in flight (and the next one's counts are its own)."""
    _live_sandbox.box.clear_faults()
    _live_sandbox.box.stats.clear()
    yield _live_sandbox
    _live_sandbox.box.clear_faults()
    until(lambda: _live_sandbox.box.inflight == 0, "the sandbox answering its last request")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty HOME, so no real ~/.prime/config.json leaks into a test."""
    h = tmp_path / "home"
    h.mkdir()
    return h


def script_env(
    home: Path, base_url: str | None = None, *, sandbox_now: str | None = SANDBOX_NOW, **extra: str
) -> dict[str, str]:
    """Environment for a subprocess: clean of PRIME_* vars, fast retries, a given HOME, the
    sandbox's now pinned (`sandbox_now=None`: the sandbox dated from the current time)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_")}
    env["HOME"] = str(home)
    env["PRIME_BILLING_MAX_RETRIES"] = "2"
    if sandbox_now is not None:
        env[NOW_ENV] = sandbox_now
    if base_url is not None:
        env["PRIME_API_BASE_URL"] = base_url
        env["PRIME_API_KEY"] = SANDBOX_API_KEY
    env.update(extra)
    return env


def run(
    args: list[str], env: Mapping[str, str], timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command (script path or `-m` target) with this interpreter."""
    return subprocess.run(
        [sys.executable, *args], env=dict(env), capture_output=True, text=True, timeout=timeout, cwd=cwd or ROOT
    )


def upstream_body(live: LiveSandbox, path: str, **params: object) -> dict:
    """What the upstream itself answers, fetched directly, for comparison."""
    r = httpx.get(live.url + path, params=params, headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"})
    r.raise_for_status()
    return r.json()


def assert_one_line_error(out: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    """The failure contract: the exit code, nothing on stdout, one stderr line that says it, no traceback."""
    assert (out.returncode, out.stdout) == (code, ""), out.stderr
    assert needle in out.stderr and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr


def all_rows(live: LiveSandbox, **params: object) -> list[dict]:
    """Every wallet row, read straight from the upstream, for an independent sum."""
    rows: list[dict] = []
    while True:
        page = upstream_body(live, "/api/v1/billing/wallet", limit=100, offset=len(rows), **params)
        rows += page["recent_billings"]
        if not page["recent_billings"] or len(rows) >= page["total_billings"]:
            return rows


def until(condition: Callable[[], bool], what: str = "the awaited state", guard: float = 10.0) -> None:
    """Wait for a state the test can observe (not for time to pass); `guard` only stops a broken
    test from hanging."""
    deadline = time.monotonic() + guard
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


def cents(value: float) -> int:
    return round(value * 100)


def run_tty(
    args: list[str], env: Mapping[str, str], *, stream: str = "stderr", timeout: float = 60
) -> tuple[int, str, str]:
    """Run with `stream` ("stdout" or "stderr") on a pseudo-terminal, as a person at a
    terminal would; returns (exit code, what the terminal showed, the other stream)."""
    import pty

    master, slave = pty.openpty()
    other = subprocess.PIPE
    proc = subprocess.Popen(
        [sys.executable, *args],
        env=dict(env),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=slave if stream == "stdout" else other,
        stderr=slave if stream == "stderr" else other,
    )
    os.close(slave)
    shown = bytearray()
    piped: list[bytes] = []
    pipe = proc.stderr if stream == "stdout" else proc.stdout
    reader = threading.Thread(target=lambda: piped.append(pipe.read() if pipe else b""), daemon=True)
    reader.start()
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    code = proc.wait(timeout=timeout)
    reader.join(timeout)
    return code, shown.decode(errors="replace"), b"".join(piped).decode(errors="replace")


def start_sandbox_command(home: Path) -> tuple[subprocess.Popen[str], str]:
    """`prime-billing sandbox --port 0` as a process, once it has announced its URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "prime_billing", "sandbox", "--port", "0"],
        env=script_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    assert line.startswith("sandbox serving on http://127.0.0.1:"), line
    return proc, line.split()[3]


# --------------------------------------------------------------------------- a newcomer's clone, uv, Claude Code

UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")


def fresh_clone(dest: Path) -> Path:
    """`git clone` of this repository into `dest`, with the working tree's edits to tracked files
    laid over it: what a newcomer's clone holds (no venv, no build output, no untracked file), as
    of the code under test. Skips where this is no git checkout (an unpacked sdist)."""
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    subprocess.run([git, "clone", "--quiet", "--no-hardlinks", str(ROOT), str(dest)], check=True, capture_output=True)
    tracked = subprocess.run([git, "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True).stdout
    for name in filter(None, tracked.split(b"\0")):
        src, dst = ROOT / os.fsdecode(name), dest / os.fsdecode(name)
        if src.is_symlink() or src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.unlink(missing_ok=True)
            shutil.copy2(src, dst, follow_symlinks=False)
        else:  # deleted in the working tree, not yet committed
            dst.unlink(missing_ok=True)
    return dest


def uv_cache_env() -> dict[str, str]:
    """The machine's own uv and pip caches, for a subprocess whose HOME is a scratch folder: the
    packages come from there instead of the registry each time."""
    return dict(_cache_dirs())


@functools.cache
def _cache_dirs() -> tuple[tuple[str, str], ...]:
    found: list[tuple[str, str]] = []
    if UV:
        uv = subprocess.run([UV, "cache", "dir"], capture_output=True, text=True, env=dict(os.environ))
        if uv.returncode == 0 and uv.stdout.strip():
            found.append(("UV_CACHE_DIR", uv.stdout.strip()))
    pip = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True)
    if pip.returncode == 0 and pip.stdout.strip():
        found.append(("PIP_CACHE_DIR", pip.stdout.strip()))
    return tuple(found)


#: what Claude Code's CLI needs to run in a test: no updates, no traffic beyond what the command asks
CLAUDE_ENV = {"DISABLE_AUTOUPDATER": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"}


@pytest.fixture(scope="session")
def claude_cli(tmp_path_factory: pytest.TempPathFactory) -> Path | str:
    """Claude Code's own CLI, from npm into a scratch prefix; or why it could not be had."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not installed: run Claude Code's commands by hand"
    prefix = tmp_path_factory.mktemp("claude-code")
    try:
        out = subprocess.run(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "@anthropic-ai/claude-code@latest"],
            capture_output=True,
            text=True,
            timeout=240,
        )
    except subprocess.TimeoutExpired:
        return "npm did not install @anthropic-ai/claude-code within 240 s"
    binary = prefix / "node_modules" / ".bin" / "claude"
    if out.returncode != 0 or not binary.exists():
        return f"npm could not install @anthropic-ai/claude-code: {out.stderr.strip()[-300:]}"
    return binary


@pytest.fixture(scope="session")
def claude(claude_cli: Path | str) -> Path:
    """Claude Code's CLI, or the test is skipped saying why."""
    if isinstance(claude_cli, str):
        pytest.skip(claude_cli)
    return claude_cli


#: modules whose fixtures take most of a minute on their own (a fresh clone, a virtualenv and its
#: installs): started first, on a worker of their own, they run beside the rest rather than after it
LONG_MODULES = ("test_readme.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name not in LONG_MODULES)
