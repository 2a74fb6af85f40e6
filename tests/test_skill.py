"""The skill bundle as Claude (or a person) receives it: SKILL.md, scripts, docs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from skills_ref.validator import validate

from conftest import ROOT, SCRIPTS, LiveSandbox, run, script_env

SKILL = ROOT / "SKILL.md"
HEAVY = ("langchain_core", "langchain", "mcp", "starlette", "uvicorn", "sse_starlette")


def _frontmatter() -> dict[str, str]:
    text = SKILL.read_text()
    head = text.split("---")[1]
    return {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in head.strip().splitlines())}


def test_skill_md_is_valid_under_the_agent_skills_spec(tmp_path: Path) -> None:
    # the validator wants the folder to carry the skill's name
    bundle = tmp_path / "prime-intellect-billing"
    bundle.mkdir()
    shutil.copy(SKILL, bundle / "SKILL.md")
    assert validate(bundle) == []
    meta = _frontmatter()
    assert meta["name"] == "prime-intellect-billing"
    for word in ("RFT", "wallet", "balance", "Prime Intellect", "Use when"):
        assert word in meta["description"]
    assert len(SKILL.read_text().splitlines()) < 500


def test_skill_links_and_commands_exist() -> None:
    text = SKILL.read_text()
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / link).is_file(), link
    for script in set(re.findall(r"scripts/[a-z_]+\.py", text)):
        assert (ROOT / script).is_file(), script


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.py")))
def test_every_script_has_help(script: str, home: Path) -> None:
    out = run([str(SCRIPTS / script), "--help"], script_env(home))
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.startswith("usage: " + script)


def _loaded_modules(script: Path, args: list[str], env: dict[str, str], drop: str | None = None) -> dict:
    """Run a script in a fresh interpreter and report what it imported and from where."""
    probe = f"""
import json, runpy, sys
drop = {drop!r}
if drop:
    sys.path[:] = [p for p in sys.path if p != drop]
sys.argv = [{str(script)!r}, *{args!r}]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
import prime_billing
print(json.dumps({{"code": code, "modules": sorted(sys.modules), "pkg": prime_billing.__file__}}), file=sys.stderr)
"""
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    return json.loads(out.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("script", ["wallet.py", "run_usage.py"])
def test_scripts_import_no_agent_or_server_stack(script: str, sandbox: LiveSandbox, home: Path) -> None:
    args = ["rft_sbx_running", "--json"] if script == "run_usage.py" else ["--json"]
    info = _loaded_modules(SCRIPTS / script, args, script_env(home, sandbox.url))
    assert info["code"] == 0
    loaded = {m.split(".")[0] for m in info["modules"]}
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_scripts_run_from_the_bundle_alone(sandbox: LiveSandbox, home: Path, tmp_path: Path) -> None:
    """A copied skill folder works with only httpx and pydantic importable."""
    bundle = tmp_path / "prime-intellect-billing"
    shutil.copytree(ROOT / "scripts", bundle / "scripts")
    shutil.copytree(ROOT / "skill", bundle / "skill", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(SKILL, bundle / "SKILL.md")
    env = script_env(home, sandbox.url)
    # hide the installed (editable) package so only the bundle's copy can be found
    info = _loaded_modules(bundle / "scripts" / "wallet.py", ["--limit", "2"], env, drop=str(ROOT / "skill"))
    assert info["code"] == 0
    assert info["pkg"].startswith(str(bundle / "skill"))
    out = run([str(bundle / "scripts" / "run_usage.py"), "rft_sbx_completed"], env)
    assert out.returncode == 0 and "$40.80" in out.stdout


def test_scripts_declare_their_dependencies_for_uv() -> None:
    for script in SCRIPTS.glob("*.py"):
        text = script.read_text()
        block = re.search(r"# /// script\n(.*?)# ///", text, re.S)
        assert block, f"{script.name} has no PEP 723 header"
        header = block.group(1)
        assert "httpx" in header and "pydantic" in header and 'requires-python = ">=3.11"' in header


def test_uv_run_script(home: Path) -> None:
    """`uv run scripts/x.py` resolves the PEP 723 header on its own (uv is a dev dependency)."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert uv, "uv is missing: install the dev extra"
    out = subprocess.run(
        [uv, "run", "--quiet", "--no-project", str(SCRIPTS / "wallet.py"), "--sandbox", "--limit", "1"],
        env=script_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "$123.45" in out.stdout
