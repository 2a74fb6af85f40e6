"""README.md's commands, run as written in a fresh clone: a newcomer's first hour.

One walk through the README per module: every fenced command in order, in a `git clone` of the
repository (`conftest.fresh_clone`), each block with its own scratch HOME, so whatever a command
writes lands in the clone or in that HOME. Commands run under bash exactly as written. A server
(`serve`, `sandbox`) runs until the block's next server or the block's end, the block's other
commands running against it, then gets SIGTERM (it must exit 0); a `--watch` is stopped the same
way once it has printed; the stdio MCP server is driven by the official MCP client. From the first
`pip install` on, the clone's `.venv` (made by the first command at the top) is the active
virtualenv, as the README says. Every process gets a key and a base URL on which nothing listens,
so a command that would read a real account fails here instead of leaving the machine.

What cannot run here is checked by its structure instead: the suite command at the top and
`bash .ci/run` (they are what runs this file), and Claude Code's `/plugin` slash commands.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from conftest import CLAUDE_ENV, ROOT, UV, fresh_clone, uv_cache_env

README = ROOT / "README.md"
SKILL = "prime-intellect-billing"
#: the whole walk, builds included, runs inside the first test that asks for it
pytestmark = pytest.mark.timeout(900)
#: what the README's servers bind, as written: held by one walk at a time on this machine
FIXED_PORTS = {"prime-billing serve": (8080, 9090)}
#: a key for every command, so the stdio server starts (it needs one today) and nothing reads a real account
KEY, NOWHERE = "pk-readme-walk", "http://127.0.0.1:9"
#: how long a server or a watch may take to print its first line before the walk gives up on it
FIRST_LINE_GUARD = 180.0
#: where the Claude Desktop snippet puts the clone
DESKTOP_PLACEHOLDER = "/path/to/prime-billing"


@dataclass(frozen=True)
class Command:
    """One line of a fenced block (or the whole block, for JSON and Python)."""

    block: int
    number: int
    lang: str
    text: str

    @property
    def key(self) -> str:
        return f"{self.block}.{self.number}: {self.text.splitlines()[0][:70]}"

    @property
    def exit_code(self) -> int:
        """`# exit N` in the line's comment says what it exits with; 0 otherwise."""
        said = re.search(r"#\s*exit (\d+)", self.text)
        return int(said.group(1)) if said else 0

    @property
    def kind(self) -> str:
        text = self.text
        if self.lang == "json":
            return "desktop"
        if self.lang == "python":
            return "python"
        if (self.block == 0 and self.number == 1) or text == "bash .ci/run":
            return "structure"  # the test suite, this file included: see test_the_suite_command_is_what_ci_runs
        if text.startswith("/"):
            return "slash"
        if re.match(r"(uv run --script \S*mcp_server\.py|prime-billing mcp)\b", text):
            return "stdio"
        if re.match(r"prime-billing (serve|sandbox)\b", text):
            return "server"
        if "--watch" in text:
            return "watch"
        return "shell"


def _blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)]


def readme_commands(text: str) -> list[Command]:
    commands = []
    for block, (lang, body) in enumerate(_blocks(text)):
        if lang in ("json", "python"):
            commands.append(Command(block, 0, lang, body))
        else:
            lines = [line.rstrip() for line in body.splitlines() if line.strip()]
            commands += [Command(block, n, lang, line) for n, line in enumerate(lines)]
    return commands


COMMANDS = readme_commands(README.read_text())


# --------------------------------------------------------------------------- the walk


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    skipped: str | None = None


@dataclass
class Walk:
    clone: Path
    bin: Path
    claude: Path | str
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    venv_active: bool = False

    def env(self, home: Path) -> dict[str, str]:
        drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRIME_") and k not in drop}
        path = [str(self.bin), *(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not _ours(p))]
        if self.venv_active:
            venv = self.clone / ".venv"
            path.insert(0, str(venv / "bin"))
            env["VIRTUAL_ENV"] = str(venv)
        env.update(uv_cache_env())
        env.update(CLAUDE_ENV)
        env.update(
            HOME=str(home),
            PATH=os.pathsep.join(path),
            PRIME_API_KEY=KEY,
            PRIME_API_BASE_URL=NOWHERE,
            PYTHONNOUSERSITE="1",
        )
        return env

    def shell(self, line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", line],
            cwd=self.clone,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )


def _ours(entry: str) -> bool:
    """A PATH entry of the test's own virtualenv: a newcomer's shell has none of it."""
    return Path(entry).resolve().is_relative_to(Path(sys.prefix).resolve())


def _bin(where: Path, claude: Path | str) -> Path:
    """uv, uvx and ruff (the dev extra's) on PATH, and nothing else of this virtualenv."""
    where.mkdir()
    tools = {"ruff": Path(sys.executable).parent / "ruff"}
    if UV:
        tools |= {"uv": Path(UV), "uvx": Path(UV).with_name("uvx")}
    if isinstance(claude, Path):
        tools["claude"] = claude
    for name, target in tools.items():
        if target.exists():
            (where / name).symlink_to(target)
    return where


@contextlib.contextmanager
def _machine_lock() -> Iterator[None]:
    """Fixed ports are the machine's: one walk at a time holds them."""
    with open(Path(tempfile.gettempdir()) / "prime-billing-readme-ports.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _busy(ports: tuple[int, ...]) -> int | None:
    for port in ports:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return port
    return None


def _ports(text: str) -> tuple[int, ...]:
    for prefix, ports in FIXED_PORTS.items():
        if text.startswith(prefix):
            return ports
    named = re.search(r"--port (\d+)", text)
    return (int(named.group(1)),) if named else ()


class Background:
    """A command left running (a server, a watch): started, read up to its first line, stopped."""

    def __init__(self, walk: Walk, command: Command, env: dict[str, str]) -> None:
        self.command = command
        self.proc = subprocess.Popen(
            ["bash", "-c", command.text],
            cwd=walk.clone,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        # servers say they listen, a watch prints its first poll: wait for that line (or the end), with a
        # guard so that a command which never prints cannot hang the walk
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.append(self.proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(FIRST_LINE_GUARD)
        self.first_line = lines[0] if lines else ""

    def stop(self) -> Outcome:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        _, err = self.proc.communicate(timeout=60)
        problems = []
        if not self.first_line:
            problems.append(f"printed nothing (in {FIRST_LINE_GUARD:.0f} s, or before it ended): {err[-2000:]}")
        if self.proc.returncode != 0:
            problems.append(f"exit {self.proc.returncode} after SIGTERM, not 0: {err[-2000:]}")
        if "Traceback" in err:
            problems.append(f"a traceback: {err[-2000:]}")
        return Outcome(problems)


def _stdio_check(command: str, args: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """initialize and tools/list through the official client, over the server's stdin/stdout."""
    names: list[str] = []

    async def go() -> None:
        params = StdioServerParameters(command=command, args=args, env=env, cwd=cwd)
        async with Client(params, mode="legacy") as client:
            names.extend(t.name for t in (await client.list_tools()).tools)

    try:
        anyio.run(go)
    except Exception as exc:
        return [f"the MCP client could not list the tools: {exc!r}"]
    return [] if "prime-intellect-getwallet" in names else [f"tools/list named {names}"]


def _connected(listed: str, name: str | None = None) -> list[str]:
    """What `claude mcp list` printed: the servers it health-checked (`name`'s, or all) say Connected."""
    lines = [line for line in listed.splitlines() if re.match(r"\S+: .* - ", line)]
    if name is not None:
        lines = [line for line in lines if line.split(":")[0] == name]
    if not lines:
        return [f"`claude mcp list` shows no such server: {listed}"]
    return [f"not connected: {line}" for line in lines if "✔ Connected" not in line]


def _shell_checks(
    walk: Walk, command: Command, out: subprocess.CompletedProcess[str], home: Path, env: dict[str, str]
) -> list[str]:
    """What the command must have done beyond its exit code."""
    text, problems = command.text, []
    if re.search(r"\bskill install\b", text):
        folder = home / ".claude" / "skills" / SKILL
        if not out.stdout.startswith(f"installed {SKILL} into {folder} (") or not (folder / "SKILL.md").is_file():
            problems.append(f"no skill folder in HOME: {out.stdout}")
    if packed := re.search(r"\bskill pack (\S+)", text):
        try:
            with zipfile.ZipFile(walk.clone / packed.group(1)) as archive:
                assert f"{SKILL}/SKILL.md" in archive.namelist()
        except (OSError, zipfile.BadZipFile, AssertionError) as exc:
            problems.append(f"no skill zip: {exc!r}")
    if text.startswith("claude mcp list"):
        problems += _connected(out.stdout + out.stderr)
    if added := re.match(r"claude mcp add (?:--transport \S+ )?(\S+)", text):
        listed = walk.shell("claude mcp list", env)
        problems += _connected(listed.stdout + listed.stderr, added.group(1))
    if text.startswith("curl "):
        try:
            json.loads(out.stdout)
        except ValueError:
            problems.append(f"not a JSON answer: {out.stdout[:300]!r}")
    return problems


def _run_shell(walk: Walk, command: Command, home: Path) -> Outcome:
    if command.text.startswith("pip install"):
        walk.venv_active = True
    env = walk.env(home)
    if command.text.startswith("claude ") and isinstance(walk.claude, str):
        return Outcome(skipped=walk.claude)
    out = walk.shell(command.text, env)
    problems = []
    if out.returncode != command.exit_code:
        problems.append(f"exit {out.returncode}, not {command.exit_code}: {out.stderr[-3000:]}")
    if "Traceback" in out.stderr:
        problems.append(f"a traceback: {out.stderr[-3000:]}")
    return Outcome(problems + _shell_checks(walk, command, out, home, env))


def _run_python(walk: Walk, command: Command, home: Path) -> Outcome:
    # the one name the README leaves to the reader: a chat model that binds tools
    stand_in = (
        "class _ChatModel:\n"
        "    def bind_tools(self, tools):\n"
        "        from langchain_core.tools import BaseTool\n"
        "        assert tools and all(isinstance(t, BaseTool) for t in tools)\n"
        "        return self\n"
        "chat_model = _ChatModel()\n"
    )
    script = home / f"block{command.block}.py"
    script.write_text((stand_in if "chat_model" in command.text else "") + command.text)
    out = walk.shell(f"python {shlex.quote(str(script))}", walk.env(home))
    if out.returncode != 0:
        return Outcome([f"exit {out.returncode}: {out.stderr[-3000:]}"])
    return Outcome([] if out.stdout.strip() else ["printed nothing"])


def _run_desktop(walk: Walk, command: Command, home: Path) -> Outcome:
    config = json.loads(command.text.replace(DESKTOP_PLACEHOLDER, str(walk.clone)))
    server = config["mcpServers"]["prime-billing"]
    env = {**walk.env(home), **server.get("env", {})}
    return Outcome(_stdio_check(server["command"], server["args"], env, home))


def walk_readme(walk: Walk, tmp: Path) -> None:
    background: Background | None = None

    def stop_background() -> None:
        nonlocal background
        if background is not None:
            walk.outcomes[background.command.key] = background.stop()
            background = None

    with _machine_lock():
        for block in sorted({c.block for c in COMMANDS}):
            home = tmp / f"home-{block}"
            home.mkdir()
            for command in (c for c in COMMANDS if c.block == block):
                kind = command.kind
                if kind == "structure":
                    continue
                if kind in ("server", "watch"):
                    stop_background()
                    if (port := _busy(_ports(command.text))) is not None:
                        walk.outcomes[command.key] = Outcome(skipped=f"port {port} is taken by another process")
                        continue
                    background = Background(walk, command, walk.env(home))
                elif kind == "stdio":
                    argv = shlex.split(command.text, comments=True)
                    problems = _stdio_check(argv[0], argv[1:], walk.env(home), walk.clone)
                    walk.outcomes[command.key] = Outcome(problems)
                elif kind == "slash":
                    walk.outcomes[command.key] = Outcome(
                        [
                            "a Claude Code slash command runs in no shell: write it in the prose, where "
                            "test_plugin_slash_commands_name_the_marketplace_and_the_plugin checks it"
                        ]
                    )
                elif kind == "python":
                    walk.outcomes[command.key] = _run_python(walk, command, home)
                elif kind == "desktop":
                    walk.outcomes[command.key] = _run_desktop(walk, command, home)
                else:
                    walk.outcomes[command.key] = _run_shell(walk, command, home)
            stop_background()


@pytest.fixture(scope="module")
def walk(tmp_path_factory: pytest.TempPathFactory, claude_cli: Path | str) -> Walk:
    tmp = tmp_path_factory.mktemp("readme")
    done = Walk(fresh_clone(tmp / "clone"), _bin(tmp / "bin", claude_cli), claude_cli)
    walk_readme(done, tmp)
    return done


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.kind != "structure"], ids=lambda c: c.key)
def test_readme_command_works_as_written(command: Command, walk: Walk) -> None:
    outcome = walk.outcomes[command.key]
    if outcome.skipped:
        pytest.skip(outcome.skipped)
    assert outcome.problems == [], "\n".join(outcome.problems)


# --------------------------------------------------------------------------- checked by structure


def test_the_suite_command_is_what_ci_runs() -> None:
    top = [c.text for c in COMMANDS if c.block == 0]
    assert len(top) == 2  # the README opens with exactly two commands: the sandbox demo and the test suite
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == top[1]
    assert "bash .ci/run" in {c.text for c in COMMANDS}


def test_plugin_slash_commands_name_the_marketplace_and_the_plugin() -> None:
    """`/plugin` runs inside Claude Code only: its arguments must name what the manifests declare."""
    market = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text())
    (plugin,) = market["plugins"]
    slash = re.findall(r"`(/plugin [^`]+)`", README.read_text())
    assert slash == ["/plugin marketplace add ./", f"/plugin install {plugin['name']}@{market['name']}"]
    assert plugin["source"] == "./"  # the marketplace added from ./ holds the plugin at its root
    shell = {c.text.split("#")[0].strip() for c in COMMANDS}
    assert f"claude plugin install {plugin['name']} --marketplace ./" in shell


def test_the_published_forms_stand_beside_their_working_twins() -> None:
    text = " ".join(README.read_text().split())
    assert (
        "`--from prime-billing-skill` in place of `--from .`, and `pip install prime-billing-skill` "
        "in place of `pip install .`"
    ) in text
    shell = " ".join(c.text for c in COMMANDS)
    # no command fetches the package by name: it is not published (and in the walk, a venv that
    # already holds it would let `pip install prime-billing-skill` pass for the wrong reason)
    assert "prime-billing-skill" not in shell
    assert "uvx --from . " in shell and "pip install ." in shell


INLINE_COMMAND = re.compile(r"`((?:prime-billing|python3?|uvx?|pip|claude|curl|bash) [^`]*)`")


def test_every_command_in_the_prose_is_one_the_walk_runs() -> None:
    """A command written inline must be one of the fenced commands (or a part of one), which run."""
    text = README.read_text()
    fenced = "\n".join(body for _, body in _blocks(text))
    prose = re.sub(r"^```\w*\n.*?^```", "", text, flags=re.M | re.S)
    published = {"pip install prime-billing-skill"}  # the published package's form: see the test above
    inline = {" ".join(m.split()) for m in INLINE_COMMAND.findall(prose)} - published
    assert {m for m in inline if m not in fenced} == set()


def test_readme_links_and_files_exist() -> None:
    text = README.read_text()
    for link in re.findall(r"\]\(([^)#:]+)\)", text):
        assert (ROOT / link).exists(), link
    for path in re.findall(r"`((?:benchmarks|scripts|reference|docs|capability|deploy)/[\w./-]+)`", text):
        assert (ROOT / path).exists(), path
