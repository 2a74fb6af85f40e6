"""The skill as people install it: from a wheel with no checkout, into a skills folder
or a zip, as a Claude Code plugin and as an MCP registry entry."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import struct
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pydantic
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from skills_ref.validator import validate

import prime_billing
from conftest import (
    CLAUDE_ENV,
    ROOT,
    SCRIPTS,
    UV,
    LiveSandbox,
    assert_one_line_error,
    fresh_clone,
    run,
    script_env,
    upstream_body,
    uv_cache_env,
)
from prime_billing import bundle
from prime_billing.sandbox import FORBIDDEN_RUNS, RUNS

SKILL = bundle.SKILL_NAME
#: what an installed bundle holds, no more (the manifest is the installer's own record)
EXPECTED = {
    "SKILL.md",
    "LICENSE",
    bundle.MANIFEST,
    *(
        f"scripts/{s}"
        for s in ("run_usage.py", "wallet.py", "reconcile.py", "spend.py", "runway.py", "pace.py", "doctor.py")
    ),
    *(f"reference/{r}" for r in ("fields.md", "reports.md", "sandbox.md")),
    *(f"skill/prime_billing/{m}" for m in bundle.MODULES),
}
#: a script run for every question SKILL.md answers, each with what its answer must say
RUNS_FROM_BUNDLE = [
    (["wallet.py", "--sandbox"], 0, "wallet wal_sbx_personal (personal) · balance $123.45"),
    (["wallet.py", "--min-balance", "200", "--sandbox"], 3, "BELOW MINIMUM: balance $123.45 of wallet"),
    (["run_usage.py", "rft_sbx_cached", "--sandbox"], 0, "billed                $41.20"),
    (["reconcile.py", "rft_sbx_mismatch", "--sandbox"], 3, "MISMATCH by $0.37"),
    (["spend.py", "--sandbox"], 0, "top runs (5)"),
    (["spend.py", "--by", "week", "--sandbox"], 0, "2026-W46                   $50.04    10 rows"),
    (["runway.py", "--as-of", "2026-11-21", "--sandbox"], 0, "runway: 3.9 days: wallet wal_sbx_personal empties on"),
    (["pace.py", "--budget", "400", "--as-of", "2026-11-20T11:00:00Z", "--sandbox"], 0, "ON PACE: $221.52 of $400.00"),
    (["run_usage.py", "rft_sbx_completed", "--watch", "--json", "--sandbox"], 0, '"status": "COMPLETED"'),
    (["doctor.py", "--sandbox"], 0, "holds 46 billing rows\nall set\n"),
]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _clean_env(home: Path) -> dict[str, str]:
    """No checkout on any path: no PYTHONPATH, no active venv, an empty HOME."""
    env = {k: v for k, v in script_env(home).items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep __pycache__ out of the folders the tests compare
    return env


def _uv(*args: str, cwd: Path | None = None) -> None:
    """Run uv from its cache when it can (no network), else from the registry."""
    assert UV, "uv is missing: install the dev extra"
    for offline in ("1", "0"):
        out = subprocess.run(
            [UV, *args],
            env={**os.environ, "UV_OFFLINE": offline},
            capture_output=True,
            text=True,
            timeout=300,
            cwd=cwd,
        )
        if out.returncode == 0:
            return
    raise AssertionError(f"uv {' '.join(args)} failed: {out.stderr}")


def _venv(path: Path, *requirements: str, no_deps: bool = False) -> Path:
    _uv("venv", "--quiet", "--python", sys.executable, str(path))
    python = path / "bin" / "python"
    if requirements:
        _uv("pip", "install", "--quiet", "--python", str(python), *(["--no-deps"] if no_deps else []), *requirements)
    return python


@dataclass
class Installed:
    """A wheel installed into a fresh venv, and what its `skill install` wrote."""

    tool: Path  # the venv's bin/
    bare_python: Path  # a venv with only httpx and pydantic
    dest: Path
    out: subprocess.CompletedProcess[str]
    env: dict[str, str]
    work: Path

    @property
    def folder(self) -> Path:
        return self.dest / SKILL


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("bundle")
    _uv("build", "--wheel", "--quiet", "--out-dir", str(work / "dist"), str(ROOT), cwd=work)
    (wheel,) = (work / "dist").glob("prime_billing_skill-*.whl")
    only = (f"httpx=={httpx.__version__}", f"pydantic=={pydantic.VERSION}")
    bare = _venv(work / "bare", *only)
    tool = _venv(work / "tool", *only).parent
    _uv("pip", "install", "--quiet", "--no-deps", "--python", str(tool / "python"), str(wheel))
    home = work / "home"
    home.mkdir()
    env = _clean_env(home)
    dest = work / "skills"
    out = subprocess.run(
        [str(tool / "prime-billing"), "skill", "install", "--dest", str(dest)],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return Installed(tool, bare, dest, out, env, work)


@pytest.fixture(scope="session")
def bundle_runs(installed: Installed) -> list[tuple[list[str], int, str, str, list[str]]]:
    """Each script of the installed bundle run by a Python that has only httpx and
    pydantic, with the `prime_billing` modules it imported (a real import walk)."""
    probe = """
import json, runpy, sys
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
except BaseException as exc:  # a module missing from the bundle: say which, as the result
    code = f"{type(exc).__name__}: {exc}"
mods = sorted(m for m in sys.modules if m == "prime_billing" or m.startswith("prime_billing."))
files = sorted({sys.modules[m].__file__ for m in mods})
print(json.dumps({"code": code, "modules": mods, "files": files}), file=sys.stderr)
"""
    results = []
    for args, _, _ in RUNS_FROM_BUNDLE:
        script = installed.folder / "scripts" / args[0]
        out = subprocess.run(
            [str(installed.bare_python), "-c", f"import sys; sys.argv = {[str(script), *args[1:]]!r}\n{probe}"],
            env=installed.env,
            cwd=installed.work,
            capture_output=True,
            text=True,
            timeout=60,
        )
        info = json.loads(out.stderr.strip().splitlines()[-1])
        results.append((args, info["code"], out.stdout, info["modules"], info["files"]))
    return results


# --------------------------------------------------------------------------- install from a wheel


def test_install_from_a_wheel_writes_the_skill_and_nothing_else(installed: Installed) -> None:
    folder = installed.folder
    written = len(EXPECTED) - 1
    assert installed.out.stdout == f"installed {SKILL} into {folder} ({written} files written, 0 unchanged)\n"
    assert installed.out.stderr == ""
    files = _files(folder)
    assert set(files) == EXPECTED
    for rel in files:
        assert not re.search(r"(^|/)(tests|benchmarks|deploy|serve|__pycache__)(/|$)|langchain", rel), rel
    assert files["SKILL.md"] == (ROOT / "SKILL.md").read_bytes()
    for module in bundle.MODULES:
        assert files[f"skill/prime_billing/{module}"] == (ROOT / "skill" / "prime_billing" / module).read_bytes()
    assert all(os.access(folder / "scripts" / s, os.X_OK) for s in ("wallet.py", "run_usage.py"))
    assert validate(folder) == []


def test_installed_skill_links_resolve_inside_the_bundle(installed: Installed) -> None:
    text = (installed.folder / "SKILL.md").read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (installed.folder / link).is_file(), link
    for script in set(re.findall(r"scripts/[a-z_]+\.py", text)):
        assert (installed.folder / script).is_file(), script


def test_bundle_scripts_answer_with_only_httpx_and_pydantic(installed: Installed, bundle_runs: list) -> None:
    nothing_else = subprocess.run(
        [str(installed.bare_python), "-c", "import prime_billing"], env=installed.env, capture_output=True
    )
    assert nothing_else.returncode != 0  # the bundle's own copy is the only one there is
    for (args, code, stdout, _, files), (_, want_code, needle) in zip(bundle_runs, RUNS_FROM_BUNDLE, strict=True):
        assert code == want_code, (args, stdout)
        assert needle in stdout, (args, stdout)
        assert all(f.startswith(str(installed.folder / "skill" / "prime_billing")) for f in files), files


def test_bundle_holds_exactly_the_modules_the_scripts_import(bundle_runs: list) -> None:
    imported = {m for *_, modules, _ in bundle_runs for m in modules}
    names = {
        ".".join(["prime_billing", *Path(m).with_suffix("").parts]).removesuffix(".__init__") for m in bundle.MODULES
    }
    assert names == imported


def test_bundle_scripts_run_through_uv_run(installed: Installed) -> None:
    assert UV
    out = subprocess.run(
        [UV, "run", "--quiet", "--no-project", str(installed.folder / "scripts" / "wallet.py"), "--sandbox"],
        env=installed.env,
        cwd=installed.work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "balance $123.45" in out.stdout


def test_pack_from_a_wheel_unpacks_to_the_installed_folder(installed: Installed) -> None:
    zips = [installed.work / "a" / "skill.zip", installed.work / "b.zip"]
    for target in zips:
        out = subprocess.run(
            [str(installed.tool / "prime-billing"), "skill", "pack", str(target)],
            env=installed.env,
            cwd=installed.work,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert re.fullmatch(rf"packed {SKILL} into {re.escape(str(target))} \(\d+ files, \d+ KiB\)\n", out.stdout)
    assert zips[0].read_bytes() == zips[1].read_bytes()  # the same bundle packs to the same bytes
    with zipfile.ZipFile(zips[0]) as archive:
        names = archive.namelist()
        assert f"{SKILL}/SKILL.md" in names
        assert all(n.startswith(f"{SKILL}/") for n in names)
        mode = archive.getinfo(f"{SKILL}/scripts/wallet.py").external_attr >> 16
        assert stat.S_IMODE(mode) == 0o755
        archive.extractall(installed.work / "unpacked")
    unpacked = installed.work / "unpacked" / SKILL
    assert _files(unpacked) == {k: v for k, v in _files(installed.folder).items() if k != bundle.MANIFEST}
    assert validate(unpacked) == []


# --------------------------------------------------------------------------- installing again, and failing


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest(folder: Path) -> dict:
    return json.loads((folder / bundle.MANIFEST).read_text())


def test_reinstall_updates_in_place_and_removes_only_what_it_wrote(tmp_path: Path) -> None:
    first = bundle.install(tmp_path)
    folder = tmp_path / SKILL
    assert first.written and not first.unchanged
    assert set(_manifest(folder)["files"]) == set(first.written)

    # the person's own files, an older SKILL.md, and a file an earlier version wrote that
    # this one no longer ships, untouched since
    (retired,) = bundle.RETIRED
    (folder / "notes.md").write_text("mine")
    (folder / "scripts" / "mine.py").write_text("print('mine')")
    (folder / "SKILL.md").write_text("an older SKILL.md")
    (folder / retired).write_text("shipped before")
    (folder / "reference" / "edited.md").write_text("edited by the person")
    (tmp_path / "outside.txt").write_text("not the installer's")
    (folder / "linked").symlink_to(tmp_path)  # a link out of the folder: nothing is removed through it
    manifest = _manifest(folder)
    manifest["files"].update(
        {
            "SKILL.md": _sha256(b"an older SKILL.md"),
            retired: _sha256(b"shipped before"),
            "reference/edited.md": _sha256(b"as shipped"),
            "../outside.txt": _sha256(b"not the installer's"),
            "linked/outside.txt": _sha256(b"not the installer's"),
        }
    )
    (folder / bundle.MANIFEST).write_text(json.dumps(manifest))

    again = bundle.install(tmp_path)
    assert again.written == ["SKILL.md"]
    assert len(again.unchanged) == len(first.written) - 1
    assert again.removed == [retired]
    assert again.kept == []
    assert (folder / "SKILL.md").read_bytes() == (ROOT / "SKILL.md").read_bytes()
    for left in (folder / "notes.md", folder / "scripts" / "mine.py", folder / "reference" / "edited.md"):
        assert left.is_file(), left
    assert (tmp_path / "outside.txt").is_file()  # a manifest never reaches out of the folder
    assert set(_manifest(folder)["files"]) == set(first.written)
    assert again.summary() == (
        f"installed {SKILL} into {folder} (1 files written, {len(again.unchanged)} unchanged, 1 removed: {retired})"
    )


def test_install_and_pack_into_an_unwritable_place_is_one_line(tmp_path: Path, home: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = script_env(home)
    out = run(["-m", "prime_billing", "skill", "install", "--dest", str(blocker)], env, cwd=tmp_path)
    assert_one_line_error(out, 2, f"prime-billing: error: cannot write {blocker / SKILL}: ")
    assert out.stderr.endswith("; pick a --dest folder you can write to\n")
    out = run(["-m", "prime_billing", "skill", "pack", str(blocker / "x.zip")], env, cwd=tmp_path)
    assert_one_line_error(out, 2, f"prime-billing: error: cannot write {blocker / 'x.zip'}: ")
    assert out.stderr.endswith("; pick an OUT.zip path you can write to\n")
    out = run(["-m", "prime_billing", "skill", "install", "--dest", "x", "--project"], env, cwd=tmp_path)
    assert_one_line_error(out, 2, "not allowed with argument --dest")


@pytest.mark.parametrize(("flags", "where"), [([], "home"), (["--project"], "cwd")])
def test_install_defaults_to_the_user_or_project_skills_folder(
    flags: list[str], where: str, tmp_path: Path, home: Path
) -> None:
    cwd = tmp_path / "project"
    cwd.mkdir()
    out = run(["-m", "prime_billing", "skill", "install", *flags], script_env(home), cwd=cwd)
    assert out.returncode == 0, out.stderr
    folder = {"home": home, "cwd": cwd}[where] / ".claude" / "skills" / SKILL
    assert out.stdout.startswith(f"installed {SKILL} into {folder} (")
    assert (folder / "SKILL.md").is_file()


def test_sandbox_help_names_every_demo_run(home: Path) -> None:
    out = run([str(SCRIPTS / "run_usage.py"), "--help"], script_env(home))
    text = " ".join(out.stdout.split())
    for run_id in (*RUNS, *FORBIDDEN_RUNS, "team_sbx_demo"):
        assert run_id in text, run_id


# --------------------------------------------------------------------------- plugin and registry manifests


def _json(name: str) -> dict:
    return json.loads((ROOT / name).read_text())


def test_server_json_describes_this_package() -> None:
    server = _json("server.json")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    version = prime_billing.__version__
    assert server["version"] == version
    assert re.fullmatch(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", server["name"])
    assert len(server["description"]) <= 100
    (package,) = server["packages"]
    assert (package["registryType"], package["identifier"], package["version"]) == ("pypi", project["name"], version)
    assert package["transport"] == {"type": "stdio"} and package["runtimeHint"] == "uvx"
    assert [a["value"] for a in package["runtimeArguments"]] == [f"{project['name']}[serve]=={version}"]
    assert [a["value"] for a in package["packageArguments"]] == ["mcp", "--stdio"]
    (remote,) = server["remotes"]
    assert remote["type"] == "streamable-http" and remote["url"].endswith("/mcp")
    assert f"mcp-name: {server['name']}" in (ROOT / "README.md").read_text()


def test_plugin_and_marketplace_agree_with_the_package() -> None:
    plugin = _json(".claude-plugin/plugin.json")
    market = _json(".claude-plugin/marketplace.json")
    version = prime_billing.__version__
    assert plugin["name"] == SKILL and plugin["version"] == version and plugin["license"] == "MIT"
    assert plugin["description"] and plugin["author"]["name"]
    assert plugin["skills"] == ["./"]
    (entry,) = market["plugins"]
    assert (entry["name"], entry["source"], entry["version"]) == (SKILL, "./", version)
    assert market["owner"]["name"]


def test_plugin_icon_is_a_square_png_the_directory_takes() -> None:
    icon = ROOT / _json(".claude-plugin/plugin.json")["icon"]
    data = icon.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == height and 512 <= width <= 2048 and len(data) < 2 * 1024 * 1024


PLUGIN_ROOT = "${CLAUDE_PLUGIN_ROOT}"


def _plugin_server(root: Path) -> tuple[str, list[str]]:
    """The plugin's MCP server command as Claude Code runs it from `root`: ${CLAUDE_PLUGIN_ROOT} expanded."""
    (server,) = json.loads((root / ".claude-plugin" / "plugin.json").read_text())["mcpServers"].values()
    return server["command"], [a.replace(PLUGIN_ROOT, str(root)) for a in server["args"]]


def test_plugin_mcp_server_runs_from_the_plugins_own_files() -> None:
    """No package index in the command: what runs is a file of the plugin, its own copy of the package."""
    plugin = _json(".claude-plugin/plugin.json")
    (server,) = plugin["mcpServers"].values()
    assert set(re.findall(r"\$\{[^}]*\}", json.dumps(server))) == {PLUGIN_ROOT}
    command, args = _plugin_server(ROOT)
    assert command == "uv" and args[:3] == ["run", "--quiet", "--script"]
    (script,) = args[3:]
    assert Path(script).resolve().is_relative_to(ROOT) and Path(script).is_file()
    assert Path(script).relative_to(ROOT).as_posix() == "scripts/mcp_server.py"
    assert "mcp_server.py" not in bundle.SCRIPTS  # the server stack stays out of the skill folder
    assert "--from" not in args and "--with" not in args


def test_plugin_mcp_server_answers_from_a_fresh_clone(sandbox: LiveSandbox, tmp_path: Path) -> None:
    """Run as written, CLAUDE_PLUGIN_ROOT at a clone: initialize, tools/list and one call, through
    the official MCP client over stdio."""
    assert UV
    clone = fresh_clone(tmp_path / "clone")
    home = tmp_path / "home"
    home.mkdir()
    command, args = _plugin_server(clone)
    env = {
        **script_env(home, sandbox.url),  # a key, until the stdio server starts without one
        **uv_cache_env(),
        "CLAUDE_PLUGIN_ROOT": str(clone),
        "PATH": os.pathsep.join([str(Path(UV).parent), os.environ.get("PATH", "")]),
    }
    env.pop("VIRTUAL_ENV", None)
    params = StdioServerParameters(command=command, args=args, env=env, cwd=tmp_path)

    async def go() -> None:
        async with Client(params, mode="legacy") as client:  # the initialize handshake, as Claude Code does
            assert client.server_info is not None and client.server_info.version == prime_billing.__version__
            tools = {t.name for t in (await client.list_tools()).tools}
            wallet = await client.call_tool("prime-intellect-getwallet", {"limit": 1})
        assert {"prime-intellect-getrunusage", "prime-intellect-getwallet"} <= tools
        assert not wallet.is_error
        assert wallet.structured_content == upstream_body(sandbox, "/api/v1/billing/wallet", limit=1)

    anyio.run(go)


def test_claude_plugin_validate_passes_with_the_directory_profile(claude: Path, tmp_path: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **CLAUDE_ENV}
    cmd = [str(claude), "plugin", "validate", "--profile", "directory", "--json", "."]
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    if "--profile" in out.stderr and "unknown option" in out.stderr:
        pytest.skip(f"this Claude Code has no `plugin validate --profile`: {out.stderr.strip()}")
    assert out.returncode == 0, out.stdout + out.stderr
    report = json.loads(out.stdout)
    assert report["success"] is True
    assert report["manifest"]["errors"] == [] and report["manifest"]["warnings"] == []
    assert [f["code"] for f in report["directory"]["findings"] if f["blocking"]] == []
    assert report["provides"]["skills"] == [f"{SKILL}:{SKILL}"]
    (server,) = report["provides"]["mcpServers"]
    assert (server["name"], server["type"], server["target"]) == ("prime-billing", "stdio", "uv")
    assert server["args"][-1] == "${CLAUDE_PLUGIN_ROOT}/scripts/mcp_server.py"
