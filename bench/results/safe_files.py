"""Writing files inside one folder the user named, and nowhere else.

Every path is relative to the folder and made of plain names (no ``..``, no absolute paths); the
folders on the way are opened one by one without following links, and files are created without
following links, so a link planted in the folder (to a folder or a file elsewhere) is an error,
never a way out.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path, PurePosixPath

from bench.errors import BenchError

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
