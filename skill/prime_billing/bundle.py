"""The skill as an agent receives it: `prime-billing skill install` and `skill pack`.

The bundle is SKILL.md, the scripts it names, the reference pages it links and the
part of this package those scripts import; nothing else (no server stack, LangChain
tools, tests, benchmarks or deployment files), so the agent reading the folder sees
only what it may run. The package sits at `skill/prime_billing/` inside the bundle,
where the scripts look for it.

A wheel carries SKILL.md, `scripts/`, `reference/` and LICENSE under
`prime_billing/_bundle/` (pyproject.toml, `force-include`); a checkout has them at
the repository root, beside `skill/`. Standard library only: installing the skill
must not need anything the scripts do not.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from .__version__ import __version__
from .errors import ConfigError, InvalidInputError

#: the folder name the skills spec requires: the `name` in SKILL.md's front matter
SKILL_NAME = "prime-intellect-billing"
#: the scripts SKILL.md tells the agent to run (not serve.py: the server stack stays out)
SCRIPTS = ("run_usage.py", "wallet.py", "reconcile.py", "spend.py", "runway.py", "pace.py", "doctor.py")
#: the pages SKILL.md links (langchain.md and serve.md are for developers, in README)
REFERENCE = ("fields.md", "reports.md", "sandbox.md")
#: what the scripts import: `cli` and what it loads lazily for the operations,
#: `--sandbox` (the demo data and its dispatcher, not the fault injector or the socket
#: server: no script serves the sandbox), `--watch` and `doctor`; tests run every script
#: from a bundle holding only these
MODULES = (
    "__init__.py",
    "__version__.py",
    "budget.py",
    "cli.py",
    "client.py",
    "compose.py",
    "config.py",
    "dates.py",
    "doctor.py",
    "errors.py",
    "models.py",
    "money.py",
    "operations.py",
    "pace.py",
    "plan.py",
    "reconcile.py",
    "render.py",
    "report.py",
    "runway.py",
    "sandbox/__init__.py",
    "sandbox/data.py",
    "spend.py",
    "subcommand.py",
    "watch.py",
    "wording.py",
)
#: written last into an installed folder: the files the install wrote and their digests
MANIFEST = ".prime-billing-install.json"
#: a fixed time for every zip entry, so the same bundle always packs to the same bytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class InstallReport:
    """What one install did, by path relative to the skill folder."""

    target: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: files an earlier install wrote that this bundle no longer has, edited since: left alone
    kept: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.written)} files written", f"{len(self.unchanged)} unchanged"]
        if self.removed:
            parts.append(f"{len(self.removed)} removed: {', '.join(self.removed)}")
        if self.kept:
            parts.append(f"{len(self.kept)} no longer shipped but edited, kept: {', '.join(self.kept)}")
        return f"installed {SKILL_NAME} into {self.target} ({', '.join(parts)})"


def bundle_files() -> dict[str, bytes]:
    """Every file of the bundle: its path inside the skill folder (POSIX) and its bytes."""
    root = _skill_root()
    package = files(__package__)
    out: dict[str, bytes] = {"SKILL.md": _read(root / "SKILL.md")}
    license_file = root / "LICENSE"
    if license_file.is_file():
        out["LICENSE"] = license_file.read_bytes()
    out.update({f"scripts/{name}": _read(root / "scripts" / name) for name in SCRIPTS})
    out.update({f"reference/{name}": _read(root / "reference" / name) for name in REFERENCE})
    out.update({f"skill/prime_billing/{name}": _read(package.joinpath(*name.split("/"))) for name in MODULES})
    return out


def skills_dir(dest: str | None, project: bool) -> Path:
    """Where skills live: `--dest`, this project's `.claude/skills`, or the user's."""
    if dest:
        return Path(dest).expanduser()
    return (Path.cwd() if project else Path.home()) / ".claude" / "skills"


def install(parent: Path) -> InstallReport:
    """Write the bundle into `parent/prime-intellect-billing/`, updating it in place.

    Only files the bundle holds are written (unchanged ones are left untouched), and
    only files an earlier install wrote, that this bundle no longer has and that
    nobody edited since, are removed: a file this command did not write is never
    deleted, whatever else the folder holds."""
    target = parent / SKILL_NAME
    bundle = bundle_files()
    report = InstallReport(target)
    old = _read_manifest(target)
    try:
        for rel, data in sorted(bundle.items()):
            path = target / rel
            mode = _mode(rel)
            if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
                if path.stat().st_mode & 0o777 != mode:
                    path.chmod(mode)
                report.unchanged.append(rel)
                continue
            _write(path, data, mode)
            report.written.append(rel)
        for rel in sorted(set(old) - set(bundle)):
            path = target / rel
            # never through a link: what is removed is a file in this folder, nowhere else
            if not path.is_file() or path.is_symlink() or not path.resolve().is_relative_to(target.resolve()):
                continue
            if _digest(path.read_bytes()) == old[rel]:
                path.unlink()
                _prune_empty(path.parent, target)
                report.removed.append(rel)
            else:
                report.kept.append(rel)
        manifest = {"name": SKILL_NAME, "version": __version__, "files": {r: _digest(d) for r, d in bundle.items()}}
        _write(target / MANIFEST, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode(), 0o644)
    except OSError as exc:
        raise _unwritable(target, exc, "a --dest folder") from None
    return report


def pack(out: Path) -> int:
    """Write the bundle as a zip whose one top folder is `prime-intellect-billing/`
    (the shape claude.ai's skill upload takes); returns the number of files."""
    bundle = bundle_files()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, data in sorted(bundle.items()):
            entry = zipfile.ZipInfo(f"{SKILL_NAME}/{rel}", _ZIP_TIME)
            entry.external_attr = (0o100000 | _mode(rel)) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    try:
        _write(out, buffer.getvalue(), 0o644)
    except OSError as exc:
        raise _unwritable(out, exc, "an OUT.zip path") from None
    return len(bundle)


def run(ns: argparse.Namespace) -> int:
    """`prime-billing skill install|pack`: do it and say so in one line on stdout."""
    if ns.skill_action == "pack":
        out = Path(ns.out).expanduser()
        count = pack(out)
        print(f"packed {SKILL_NAME} into {out} ({count} files, {out.stat().st_size / 1024:.0f} KiB)")
    else:
        print(install(skills_dir(ns.dest, ns.project)).summary())
    return 0


# --------------------------------------------------------------------------- helpers


def _skill_root() -> Traversable:
    """Where SKILL.md, scripts/ and reference/ are: the wheel's `_bundle/`, else the checkout."""
    package = files(__package__)
    shipped = package / "_bundle"
    if shipped.is_dir():
        return shipped
    checkout = Path(str(package)).parent.parent
    if (checkout / "SKILL.md").is_file() and (checkout / "scripts").is_dir():
        return checkout
    raise ConfigError(
        "this installation of prime-billing-skill does not carry the skill's files; "
        "reinstall it from PyPI or a wheel (pip install --force-reinstall prime-billing-skill)"
    )


def _read(item: Traversable) -> bytes:
    try:
        return item.read_bytes()
    except OSError:
        raise ConfigError(
            f"the skill's file {item.name} is missing from this installation; "
            "reinstall it (pip install --force-reinstall prime-billing-skill)"
        ) from None


def _mode(rel: str) -> int:
    return 0o755 if rel.startswith("scripts/") else 0o644


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write beside the file and rename over it: an agent reading the folder meanwhile
    sees the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _read_manifest(target: Path) -> dict[str, str]:
    """The files an earlier install wrote and their digests; none when there was no
    install (or its manifest is unreadable, in which case nothing is removed)."""
    try:
        listed = json.loads((target / MANIFEST).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(listed, dict):
        return {}
    # only plain relative paths inside the folder count: a manifest never reaches out of it
    return {
        rel: digest
        for rel, digest in listed.items()
        if isinstance(rel, str) and isinstance(digest, str) and _inside(rel) and rel != MANIFEST
    }


def _inside(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def _prune_empty(folder: Path, stop: Path) -> None:
    """Remove folders the removal left empty, up to (not including) the skill folder."""
    while folder != stop and stop in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def _unwritable(where: Path, exc: OSError, fix: str) -> InvalidInputError:
    return InvalidInputError(f"cannot write {where}: {exc.strerror or exc}; pick {fix} you can write to")
