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
import stat
import sys
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
    "export.py",
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
    "untrusted.py",
    "watch.py",
    "wording.py",
)
#: files earlier versions of the bundle shipped that this one does not, and so the only files an
#: install ever removes (when unedited since): a manifest, which anyone who can write the folder
#: can forge, never makes it delete a file of the person's. A path that leaves the bundle goes
#: here (a test checks this list against the history of this file).
RETIRED = ("skill/prime_billing/sandbox.py",)
#: written last into an installed folder: the files the install wrote and their digests
MANIFEST = ".prime-billing-install.json"
#: what a kept file's new version is called, beside it: SKILL.md.new
NEW_SUFFIX = ".new"
#: a fixed time for every zip entry, so the same bundle always packs to the same bytes
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass
class InstallReport:
    """What one install did, by path relative to the skill folder."""

    target: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    #: files an earlier bundle shipped that this one no longer has, edited since: left alone
    kept: list[str] = field(default_factory=list)
    #: files of the bundle the person changed (or that no install wrote): left as they are,
    #: the bundle's version written beside each as NAME.new
    edited: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.written)} files written", f"{len(self.unchanged)} unchanged"]
        if self.edited:
            news = ", ".join(f"{rel}{NEW_SUFFIX}" for rel in self.edited)
            beside = "the new version beside it" if len(self.edited) == 1 else "the new versions beside them"
            parts.append(
                f"{len(self.edited)} edited since installed, kept: {', '.join(self.edited)}, {beside} as {news}"
            )
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


def install(parent: Path, within: Path | None = None) -> InstallReport:
    """Write the bundle into `parent/prime-intellect-billing/`, updating it in place.

    Nothing is written through a link that leads out: not when the skill folder, or a
    folder on the way to it, resolves outside `within` (the project, for `--project`),
    nor when a folder inside the skill folder resolves outside it. A linked `~/.claude`
    or `~/.claude/skills` (dotfiles) is fine: the person chose it.

    Only files the bundle holds are written (unchanged ones are left untouched). A file
    the person edited since the last install wrote it (its digest differs from the
    manifest's), or that no install wrote, is kept as it is, and the bundle's version
    goes beside it as NAME.new. Only files an earlier version shipped (`RETIRED`),
    that the manifest says an earlier install wrote and that nobody edited since, are
    removed: a file no version of this command wrote is never deleted or overwritten,
    whatever the folder holds."""
    target = parent / SKILL_NAME
    bundle = bundle_files()
    _refuse_links_out(target, bundle, within)
    report = InstallReport(target)
    old = _read_manifest(target)
    try:
        for rel, data in sorted(bundle.items()):
            path = target / rel
            mode = _mode(rel)
            here = _regular_bytes(path)
            if here == data:
                if path.stat().st_mode & 0o777 != mode:
                    path.chmod(mode)
                report.unchanged.append(rel)
            elif _replaceable(path, here, old.get(rel)):
                _write(path, data, mode)
                report.written.append(rel)
            else:
                _write(path.with_name(path.name + NEW_SUFFIX), data, mode)
                report.edited.append(rel)
        for rel in sorted(set(old) & set(RETIRED) - set(bundle)):
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


def pack_bytes() -> tuple[bytes, int]:
    """The bundle as a zip whose one top folder is `prime-intellect-billing/` (the shape
    claude.ai's skill upload takes), and the number of files in it."""
    bundle = bundle_files()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for rel, data in sorted(bundle.items()):
            entry = zipfile.ZipInfo(f"{SKILL_NAME}/{rel}", _ZIP_TIME)
            entry.external_attr = (0o100000 | _mode(rel)) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    return buffer.getvalue(), len(bundle)


def pack(out: Path) -> int:
    """Write the bundle's zip to `out`, a new or regular file (replaced whole, never a
    folder, link, device or pipe); returns the number of files."""
    try:
        mode = out.lstat().st_mode
    except OSError:
        mode = stat.S_IFREG  # nothing there yet (or no way to it: writing says which)
    if not stat.S_ISREG(mode):
        raise InvalidInputError(
            f"{out} is a {_kind(mode)}, not a regular file; "
            "give OUT.zip as the path of a new or regular file, or - for stdout"
        )
    data, count = pack_bytes()
    try:
        _write(out, data, 0o644)
    except OSError as exc:
        raise _unwritable(out, exc, "an OUT.zip path") from None
    return count


def run(ns: argparse.Namespace) -> int:
    """`prime-billing skill install|pack`: do it and say so in one line (on stderr when
    the zip itself goes to stdout)."""
    if ns.skill_action == "pack" and ns.out == "-":
        if sys.stdout.isatty():
            raise InvalidInputError(
                "stdout is a terminal, not a place for a zip; redirect it (skill pack - > FILE.zip) or give OUT.zip"
            )
        data, count = pack_bytes()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        print(f"packed {SKILL_NAME} to stdout ({count} files, {len(data) / 1024:.0f} KiB)", file=sys.stderr)
    elif ns.skill_action == "pack":
        out = Path(ns.out).expanduser()
        count = pack(out)
        print(f"packed {SKILL_NAME} into {out} ({count} files, {out.stat().st_size / 1024:.0f} KiB)")
    else:
        within = Path.cwd() if ns.project else None
        print(install(skills_dir(ns.dest, ns.project), within).summary())
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
        "reinstall it from a clone or a wheel (pip install --force-reinstall . in the clone)"
    )


def _read(item: Traversable) -> bytes:
    try:
        return item.read_bytes()
    except OSError:
        raise ConfigError(
            f"the skill's file {item.name} is missing from this installation; "
            "reinstall it (pip install --force-reinstall . in a clone, or its wheel)"
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


def _refuse_links_out(target: Path, bundle: dict[str, bytes], within: Path | None) -> None:
    """Refuse, before writing anything, a link that would take a write out of where it belongs."""
    if within is not None:
        root, step = within.resolve(), within
        for part in target.relative_to(within).parts:
            step = step / part
            if not step.resolve().is_relative_to(root):
                raise InvalidInputError(
                    f"{step} is a link to {step.resolve()}, outside the project {within}; "
                    "remove the link, or install elsewhere with --dest DIR"
                )
    root = target.resolve()
    folders = {folder for rel in bundle for folder in Path(rel).parents} - {Path(".")}
    for folder in sorted(folders, key=lambda f: (len(f.parts), f)):
        path = target / folder
        if not path.resolve().is_relative_to(root):
            raise InvalidInputError(
                f"{path} is a link to {path.resolve()}, outside the skill folder {target}; "
                "remove the link and install again"
            )


def _regular_bytes(path: Path) -> bytes | None:
    """What a regular file holds; None for anything else (nothing, a link, a folder)."""
    if path.is_symlink() or not path.is_file():
        return None
    return path.read_bytes()


def _replaceable(path: Path, here: bytes | None, installed: str | None) -> bool:
    """Nothing is there yet, or the file is as the last install wrote it (per its manifest)."""
    if here is None:
        return not os.path.lexists(path)
    return _digest(here) == installed


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


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ]
    return next((name for test, name in kinds if test(mode)), "special file")


def _unwritable(where: Path, exc: OSError, fix: str) -> InvalidInputError:
    return InvalidInputError(f"cannot write {where}: {exc.strerror or exc}; pick {fix} you can write to")
