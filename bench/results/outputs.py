"""Writing output files without following links: reports and exports land where the user said.

An output folder may hold files from elsewhere (a shared folder, an unpacked artefact), among
them symbolic links planted to make a writer overwrite or delete files outside it. Writers here
refuse a link where they would write, and write each file under a fresh name beside its target
and rename it over the target, so that a link appearing meanwhile is replaced, never followed.
A split export writes a tree of files (:class:`BoundedFolder`): every path is relative, made of
plain names, and its folders are opened one by one without following links.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath

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


_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)


def _parts(relative: str) -> list[str]:
    path = PurePosixPath(relative)
    parts = list(path.parts)
    if path.is_absolute() or not parts or any(p in ("", ".", "..") for p in parts):
        raise BenchError(f"refusing to write {relative!r}: not a plain path inside the folder")
    return parts


class BoundedFolder:
    """A folder that files are written into; created when missing."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if self.root.is_symlink():
            raise BenchError(f"{self.root} is a symbolic link; name the folder itself")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BenchError(f"cannot create the folder {self.root}: {exc.strerror}") from exc
        if not self.root.is_dir():
            raise BenchError(f"{self.root} exists and is not a folder")

    def write(self, relative: str, data: bytes) -> None:
        """Write ``data`` to ``relative``, creating its folders; links on the way are refused."""
        parts = _parts(relative)
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for name in parts[:-1]:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, dir_fd=fd)
                try:
                    inner = os.open(name, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise BenchError(
                        f"refusing to write {relative!r} in {self.root}: {name!r} is a link or "
                        f"not a folder ({exc.strerror})"
                    ) from exc
                os.close(fd)
                fd = inner
            try:
                out = os.open(parts[-1], _FILE_FLAGS, 0o644, dir_fd=fd)
            except OSError as exc:
                raise BenchError(
                    f"refusing to write {relative!r} in {self.root}: the file is a link or cannot "
                    f"be written ({exc.strerror})"
                ) from exc
            with os.fdopen(out, "wb") as handle:
                handle.write(data)
        finally:
            os.close(fd)


def read_inside(root: Path, relative: str) -> bytes:
    """The bytes of ``relative`` under ``root``, refusing paths that leave it or follow links."""
    parts = _parts(relative)
    path = Path(root)
    for name in parts:
        path = path / name
        if path.is_symlink():
            raise BenchError(f"{path} is a symbolic link; an exported split holds none")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BenchError(f"{path}: the manifest lists it but it is missing") from None
    except OSError as exc:
        raise BenchError(f"cannot read {path}: {exc.strerror}") from exc
