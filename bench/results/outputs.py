"""Writing output files without following links: reports and exports land where the user said.

An output folder may hold files from elsewhere (a shared folder, an unpacked artefact), among
them symbolic links planted to make a writer overwrite or delete files outside it. Writers here
refuse a link where they would write, and write each file under a fresh name beside its target
and rename it over the target, so that a link appearing meanwhile is replaced, never followed.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError


def plain_name(name: str, what: str) -> str:
    """``name`` as a file name with no folder part, so outputs named after it stay in their
    folder."""
    if (
        not name
        or name in (".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or len(name) > 200
    ):
        raise BenchError(
            f"{what} must be a plain file name (no folders, no '..'), got {name!r:.80}"
        )
    return name


def refuse_link(path: Path, what: str) -> None:
    """Raise when ``path`` is a symbolic link (an output never writes through one)."""
    if path.is_symlink():
        target = os.readlink(path)
        raise BenchError(
            f"{what} {path} is a symbolic link (to {target}); outputs are never written through "
            "links: remove it or choose another output folder"
        )


def write_file(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` atomically: a new file beside it, renamed over it. A link at
    ``path`` is refused; a device such as /dev/null is written as it is."""
    refuse_link(path, "output")
    if path.exists() and not path.is_file() and not path.is_dir():
        with open(path, "wb") as device:  # a device or pipe the user named: nothing to replace
            device.write(data.encode("utf-8") if isinstance(data, str) else data)
        return
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        partial.unlink(missing_ok=True)
        with os.fdopen(os.open(partial, flags, 0o644), "wb") as handle:
            handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise BenchError(f"output {path} cannot be written: {exc.strerror or exc}") from exc


def output_folder(path: Path, what: str) -> Path:
    """Create the folder ``path`` (the user named it; it may itself be a link) and return it."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"{what} {path} cannot be created: {exc.strerror or exc}") from exc
    if not path.is_dir():
        raise BenchError(f"{what} {path} is not a folder")
    return path
