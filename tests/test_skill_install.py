"""Installing the skill over what is already there: a manifest read as untrusted, links that lead
out of the folder refused, edits kept, and `skill pack` writing only a regular file."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT, assert_one_line_error, run, run_tty, script_env
from prime_billing import bundle
from prime_billing.errors import InvalidInputError

SKILL = bundle.SKILL_NAME


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _manifest(folder: Path) -> dict:
    return json.loads((folder / bundle.MANIFEST).read_text())


def _plant_manifest(folder: Path, entries: dict[str, str]) -> None:
    manifest = _manifest(folder)
    manifest["files"].update(entries)
    (folder / bundle.MANIFEST).write_text(json.dumps(manifest))


# --------------------------------------------------------------------------- a manifest is not trusted


def test_a_manifest_entry_through_dotdot_is_ignored_even_when_it_lands_inside(tmp_path: Path) -> None:
    bundle.install(tmp_path)
    folder = tmp_path / SKILL
    skill_md = (folder / "SKILL.md").read_bytes()
    # `scripts/../SKILL.md` is SKILL.md itself, unedited: only the check on `..` in the entry keeps it
    # (it resolves inside the folder and is no link, so the check on where it resolves passes it)
    _plant_manifest(folder, {"scripts/../SKILL.md": _sha256(skill_md)})
    again = bundle.install(tmp_path)
    assert (again.removed, again.kept) == ([], [])
    assert (folder / "SKILL.md").read_bytes() == skill_md


def test_a_forged_manifest_removes_nothing_the_bundle_never_shipped(tmp_path: Path) -> None:
    bundle.install(tmp_path)
    folder = tmp_path / SKILL
    # empty files planted everywhere in the folder, and a manifest saying the install wrote them, unedited
    planted = [folder / "notes" / f"{i}.md" for i in range(200)]
    planted += [folder / "scripts" / "mine.py", folder / "reference" / "mine.md", folder / "skill" / "mine.py"]
    for path in planted:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    _plant_manifest(folder, {p.relative_to(folder).as_posix(): _sha256(b"") for p in planted})
    again = bundle.install(tmp_path)
    assert (again.removed, again.kept) == ([], [])
    assert all(p.is_file() for p in planted)


def test_a_file_an_earlier_bundle_shipped_is_removed_only_when_unedited(tmp_path: Path) -> None:
    # skill/prime_billing/sandbox.py was shipped until the sandbox became a package
    (retired,) = bundle.RETIRED
    folder = tmp_path / SKILL
    bundle.install(tmp_path)
    (folder / retired).write_text("as an earlier install wrote it")
    _plant_manifest(folder, {retired: _sha256(b"as an earlier install wrote it")})
    assert bundle.install(tmp_path).removed == [retired]
    assert not (folder / retired).exists()

    (folder / retired).write_text("edited since")
    _plant_manifest(folder, {retired: _sha256(b"as an earlier install wrote it")})
    again = bundle.install(tmp_path)
    assert (again.removed, again.kept) == ([], [retired])
    assert (folder / retired).read_text() == "edited since"


def _shipped_by(source: str) -> set[str]:
    """The paths one version of bundle.py shipped, read from its SCRIPTS, REFERENCE and MODULES."""
    lists = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name in ("SCRIPTS", "REFERENCE", "MODULES"):
                lists[name] = ast.literal_eval(node.value)
    return {
        "SKILL.md",
        "LICENSE",
        *(f"scripts/{s}" for s in lists.get("SCRIPTS", ())),
        *(f"reference/{r}" for r in lists.get("REFERENCE", ())),
        *(f"skill/prime_billing/{m}" for m in lists.get("MODULES", ())),
    }


def test_every_path_an_earlier_bundle_shipped_is_still_shipped_or_retired() -> None:
    """A path that leaves the bundle goes into RETIRED, or installs made before never lose it;
    RETIRED holds only paths some version really shipped."""
    git = shutil.which("git")
    log = subprocess.run(
        [git or "git", "log", "--format=%H", "--", "skill/prime_billing/bundle.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    shallow = subprocess.run(
        [git or "git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True
    )
    if git is None or log.returncode != 0 or not log.stdout.split() or shallow.stdout.strip() != "false":
        pytest.skip("no full git history of skill/prime_billing/bundle.py here (not a full clone)")
    ever: set[str] = set()
    for commit in log.stdout.split():
        shown = subprocess.run(
            ["git", "show", f"{commit}:skill/prime_billing/bundle.py"], cwd=ROOT, capture_output=True, text=True
        )
        if shown.returncode == 0:
            ever |= _shipped_by(shown.stdout)
    now = set(bundle.bundle_files())
    assert "skill/prime_billing/sandbox.py" in ever  # the history was read
    assert ever - now == set(bundle.RETIRED)
    assert not set(bundle.RETIRED) & now


def test_removing_a_retired_file_removes_the_folders_it_leaves_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle, "RETIRED", ("reference/old/gone.md",))
    bundle.install(tmp_path)
    folder = tmp_path / SKILL
    (folder / "reference" / "old").mkdir()
    (folder / "reference" / "old" / "gone.md").write_text("shipped before")
    _plant_manifest(folder, {"reference/old/gone.md": _sha256(b"shipped before")})
    assert bundle.install(tmp_path).removed == ["reference/old/gone.md"]
    assert not (folder / "reference" / "old").exists()
    assert (folder / "reference" / "fields.md").is_file()


# --------------------------------------------------------------------------- links that lead out


def _install(args: list[str], home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(["-m", "prime_billing", "skill", "install", *args], script_env(home), cwd=cwd)


def _tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize(
    ("link", "to"),
    [
        (".claude/skills/prime-intellect-billing", "../../../elsewhere"),  # a link committed in the project
        (".claude/skills", "../../elsewhere"),
        (".claude", "../elsewhere"),
    ],
)
def test_project_install_refuses_a_link_that_leads_out_of_the_project(
    link: str, to: str, tmp_path: Path, home: Path
) -> None:
    project, elsewhere = tmp_path / "project", tmp_path / "elsewhere"
    (project / link).parent.mkdir(parents=True)
    (project / link).symlink_to(to)
    elsewhere.mkdir()
    (elsewhere / "SKILL.md").write_text("not the installer's")
    out = _install(["--project"], home, project)
    assert_one_line_error(out, 2, f"prime-billing: error: {project / link} is a link to {elsewhere}")
    assert out.stderr.endswith(
        f", outside the project {project}; remove the link, or install elsewhere with --dest DIR\n"
    )
    assert _tree(elsewhere) == ["SKILL.md"] and (elsewhere / "SKILL.md").read_text() == "not the installer's"


def test_project_install_through_a_link_that_stays_inside_the_project(tmp_path: Path, home: Path) -> None:
    project = tmp_path / "project"
    (project / "config" / "claude").mkdir(parents=True)
    (project / ".claude").symlink_to("config/claude")
    out = _install(["--project"], home, project)
    assert out.returncode == 0, out.stderr
    assert (project / "config" / "claude" / "skills" / SKILL / "SKILL.md").is_file()


@pytest.mark.parametrize("linked", [".claude", ".claude/skills"])
def test_home_install_through_linked_dotfiles(
    linked: str, tmp_path: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dotfiles kept in a repository elsewhere and linked into HOME: a normal setup
    dotfiles = tmp_path / "dotfiles" / "claude-config"
    dotfiles.mkdir(parents=True)
    (home / linked).parent.mkdir(parents=True, exist_ok=True)
    (home / linked).symlink_to(dotfiles)
    monkeypatch.setenv("HOME", str(home))
    bundle.install(bundle.skills_dir(None, project=False))
    installed = dotfiles / ("skills" if linked == ".claude" else "") / SKILL
    assert (installed / "SKILL.md").read_bytes() == (ROOT / "SKILL.md").read_bytes()


@pytest.mark.parametrize("inner", ["skill", "skill/prime_billing", "skill/prime_billing/sandbox", "scripts"])
def test_install_refuses_a_folder_inside_the_skill_that_links_out_of_it(inner: str, tmp_path: Path) -> None:
    dest, elsewhere = tmp_path / "skills", tmp_path / "elsewhere"
    folder = dest / SKILL
    bundle.install(dest)
    before = _files(folder)
    elsewhere.mkdir()
    shutil.rmtree(folder / inner)
    (folder / inner).symlink_to(elsewhere)
    (folder / "SKILL.md").write_text("an older SKILL.md")  # what a refused install must not touch either
    want = (
        f"{folder / inner} is a link to {elsewhere}, outside the skill folder {folder}; "
        "remove the link and install again"
    )
    with pytest.raises(InvalidInputError) as refused:
        bundle.install(dest)
    assert str(refused.value) == want
    assert _tree(elsewhere) == []
    assert (folder / "SKILL.md").read_text() == "an older SKILL.md"
    assert set(_files(folder)) == {r for r in before if not r.startswith(f"{inner}/")}


def test_install_refusing_a_link_out_is_one_line_on_the_cli(tmp_path: Path, home: Path) -> None:
    dest = tmp_path / "skills"
    (dest / SKILL).mkdir(parents=True)
    (dest / SKILL / "reference").symlink_to(tmp_path)
    out = _install(["--dest", str(dest)], home, tmp_path)
    assert_one_line_error(out, 2, f"prime-billing: error: {dest / SKILL / 'reference'} is a link to {tmp_path}, ")
    assert _tree(dest) == [SKILL, f"{SKILL}/reference"]


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- skill pack OUT


def _pack(out: str, home: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run(["-m", "prime_billing", "skill", "pack", out], script_env(home), cwd=cwd)


@pytest.mark.parametrize("kind", ["directory", "FIFO", "symbolic link"])
def test_pack_writes_only_a_regular_file(kind: str, tmp_path: Path, home: Path) -> None:
    out, target = tmp_path / "out.zip", tmp_path / "target"
    target.write_text("kept")
    if kind == "directory":
        out.mkdir()
    elif kind == "FIFO":
        os.mkfifo(out)
    else:
        out.symlink_to(target)
    result = _pack(str(out), home, tmp_path)
    assert_one_line_error(
        result,
        2,
        f"prime-billing: error: {out} is a {kind}, not a regular file; "
        "give OUT.zip as the path of a new or regular file, or - for stdout\n",
    )
    assert {
        "directory": out.is_dir() and not out.is_symlink(),
        "FIFO": stat.S_ISFIFO(out.lstat().st_mode),
        "symbolic link": out.is_symlink(),
    }[kind]
    assert target.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out.zip", "target"]  # no temporary left


def test_pack_to_stdout_writes_the_zip_there_and_says_so_on_stderr(tmp_path: Path, home: Path) -> None:
    to_file = tmp_path / "skill.zip"
    assert _pack(str(to_file), home, tmp_path).returncode == 0
    out = subprocess.run(
        [sys.executable, "-m", "prime_billing", "skill", "pack", "-"],
        env=script_env(home),
        cwd=tmp_path,
        capture_output=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == to_file.read_bytes()  # binary, byte for byte the zip a path gets
    with zipfile.ZipFile(io.BytesIO(out.stdout)) as archive:
        assert f"{SKILL}/SKILL.md" in archive.namelist()
    count = len(bundle.bundle_files())
    assert re.fullmatch(rf"packed {SKILL} to stdout \({count} files, \d+ KiB\)\n", out.stderr.decode())


def test_pack_to_stdout_refuses_a_terminal(home: Path) -> None:
    code, shown, err = run_tty(["-m", "prime_billing", "skill", "pack", "-"], script_env(home), stream="stdout")
    assert (code, shown) == (2, "")
    assert err == (
        "prime-billing: error: stdout is a terminal, not a place for a zip; "
        "redirect it (skill pack - > FILE.zip) or give OUT.zip\n"
    )


# --------------------------------------------------------------------------- edits survive a reinstall


def test_reinstall_keeps_an_edited_file_and_writes_the_new_one_beside_it(tmp_path: Path, home: Path) -> None:
    dest = tmp_path / "skills"
    folder = dest / SKILL
    assert _install(["--dest", str(dest)], home, tmp_path).returncode == 0
    shipped = (ROOT / "SKILL.md").read_bytes()
    edited = shipped + b"\nAlways answer with the team wallet.\n"
    (folder / "SKILL.md").write_bytes(edited)
    count = len(bundle.bundle_files())

    out = _install(["--dest", str(dest)], home, tmp_path)
    assert (out.returncode, out.stderr) == (0, "")
    assert out.stdout == (
        f"installed {SKILL} into {folder} (0 files written, {count - 1} unchanged, "
        "1 edited since installed, kept: SKILL.md, the new version beside it as SKILL.md.new)\n"
    )
    assert (folder / "SKILL.md").read_bytes() == edited
    assert (folder / "SKILL.md.new").read_bytes() == shipped

    # taking the new version by hand: the next install finds it as shipped and has nothing to keep
    (folder / "SKILL.md.new").replace(folder / "SKILL.md")
    again = bundle.install(dest)
    assert (again.written, again.edited, len(again.unchanged)) == ([], [], count)
    assert not (folder / "SKILL.md.new").exists()


def test_a_file_no_install_wrote_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / SKILL
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "wallet.py").write_text("# my own wallet script\n")  # there before any install
    (tmp_path / "notes.md").write_text("mine")
    (folder / "SKILL.md").symlink_to(tmp_path / "notes.md")  # a link: kept as it is, never written through
    report = bundle.install(tmp_path)
    assert report.edited == ["SKILL.md", "scripts/wallet.py"]
    assert (folder / "scripts" / "wallet.py").read_text() == "# my own wallet script\n"
    assert (folder / "SKILL.md").is_symlink() and (tmp_path / "notes.md").read_text() == "mine"
    assert (folder / "SKILL.md.new").read_bytes() == (ROOT / "SKILL.md").read_bytes()
    new_script = folder / "scripts" / "wallet.py.new"
    assert new_script.read_bytes() == (ROOT / "scripts" / "wallet.py").read_bytes()
    assert stat.S_IMODE(new_script.stat().st_mode) == 0o755
    # the manifest records what the bundle ships, so a file later made to match it is the installer's again
    assert _manifest(folder)["files"]["SKILL.md"] == _sha256((ROOT / "SKILL.md").read_bytes())


def test_a_file_unedited_since_the_last_install_is_updated(tmp_path: Path) -> None:
    bundle.install(tmp_path)
    folder = tmp_path / SKILL
    (folder / "reference" / "fields.md").write_text("the version an earlier install wrote")
    _plant_manifest(folder, {"reference/fields.md": _sha256(b"the version an earlier install wrote")})
    report = bundle.install(tmp_path)
    assert (report.written, report.edited) == (["reference/fields.md"], [])
    assert (folder / "reference" / "fields.md").read_bytes() == (ROOT / "reference" / "fields.md").read_bytes()
    assert not (folder / "reference" / "fields.md.new").exists()
