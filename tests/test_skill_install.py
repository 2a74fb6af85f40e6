"""Installing the skill over what is already there: a manifest read as untrusted, links that lead
out of the folder refused, edits kept, and `skill pack` writing only a regular file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from prime_billing import bundle

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
