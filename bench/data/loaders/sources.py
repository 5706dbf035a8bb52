"""Where dataset files live, how they are checked, and how missing ones are fetched.

The data directory is the ``--data-dir`` flag, else ``$BENCH_DATA_DIR``, else a per-user cache
folder. Inside it each dataset has one folder named as its official archive unpacks (``ml-100k/``,
``ml-latest-small/``, ...).
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import DataError
from bench.limits import relative_inside

if TYPE_CHECKING:
    from bench.data.card import Card

UNVERIFIED = "unverified"
MAX_EXTRACTED_BYTES = 8 << 30
"""The most an archive may unpack to (the largest supported dataset unpacks to about 1 GiB)."""
MAX_EXPANSION = 100
"""The most a file may expand over its compressed size (text compresses about 5 to 10 times;
a zip bomb by a thousand or more)."""
_hash_memo: dict[tuple[str, int, int], str] = {}


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "coldstart-bench"


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """The flag wins over the environment, which wins over the per-user cache."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("BENCH_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return user_cache_dir() / "datasets"


def parsed_cache_dir() -> Path:
    """Parsed datasets go to a writable cache, never into the (possibly read-only) data folder."""
    env = os.environ.get("BENCH_CACHE_DIR")
    return Path(env).expanduser() if env else user_cache_dir() / "parsed"


def sha256_file(path: Path) -> str:
    """The file's sha256, remembered per (path, size, mtime) so that repeated loads hash once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_memo:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _hash_memo[key] = digest.hexdigest()
    return _hash_memo[key]


def verify(path: Path, expected: str | None) -> str:
    actual = sha256_file(path)
    if expected and expected != UNVERIFIED and actual != expected.lower():
        raise DataError(
            f"checksum mismatch for {path}: sha256 is {actual}, the dataset card expects "
            f"{expected}; the file is damaged or a different version (delete it to fetch it again)"
        )
    return actual


def dataset_folder(card: Card, data_dir: str | Path | None) -> Path:
    name = relative_inside(card.folder or card.name, f"dataset {card.name!r}: its folder")
    return resolve_data_dir(data_dir) / name


def locate(card: Card, names: list[str], data_dir: str | Path | None) -> dict[str, Path]:
    """Paths of the files ``names`` of a card, downloading the archive when any is missing, each
    checked against the card's sha256 (files the card marks unverified are only hashed)."""
    for name in names:
        relative_inside(name, f"dataset {card.name!r}: file {name!r}")
    folder = dataset_folder(card, data_dir)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        fetch(card, folder, missing)
    paths = {n: folder / n for n in names}
    for name, path in paths.items():
        verify(path, card.files.get(name))
    return paths


def _missing_message(card: Card, folder: Path, missing: list[str], reason: str) -> str:
    where = card.url or "its official source"
    return (
        f"dataset {card.name!r}: file(s) {', '.join(missing)} not found in {folder} ({reason}). "
        f"Download {where}, unpack it so that {folder / missing[0]} exists, or point --data-dir "
        f"or BENCH_DATA_DIR at a folder that holds {folder.name}/"
    )


def announce_terms(card: Card) -> None:
    """Licence and citation are shown before the first download: the terms bind the user."""
    lines = [f"downloading {card.name} from {card.url}"]
    if card.licence:
        lines.append(f"licence: {card.licence}")
    if card.citation:
        lines.append(f"please cite: {card.citation}")
    print("\n".join(lines), file=sys.stderr)


def _download(url: str, target: Path) -> None:
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=30) as response, open(target, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, leave=False) as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def fetch(card: Card, folder: Path, missing: list[str]) -> None:
    """Download the card's archive and unpack the files it needs into ``folder``."""
    if not card.url:
        raise DataError(_missing_message(card, folder, missing, "the card has no download URL"))
    announce_terms(card)
    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / (card.url.rsplit("/", 1)[-1] or "archive")
        try:
            _download(card.url, archive)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise DataError(
                _missing_message(card, folder, missing, f"download failed: {exc}")
            ) from exc
        verify(archive, card.archive_sha256)
        if not zipfile.is_zipfile(archive):
            raise DataError(f"dataset {card.name!r}: {card.url} did not give a zip archive")
        unpack(card, archive, folder, missing)


def unpack(card: Card, archive: Path, folder: Path, names: list[str]) -> None:
    """Unpack the files ``names`` of the card's zip ``archive`` into ``folder``, within
    :data:`MAX_EXTRACTED_BYTES` in all and :data:`MAX_EXPANSION` times each file's compressed
    size (counted as it unpacks, whatever the archive declares). Each file is written beside its
    target and renamed over it, so a link planted at the target is replaced, never followed."""
    root = relative_inside(card.archive_root, "archive_root") if card.archive_root else ""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"dataset {card.name!r}: {card.url} is no readable zip ({exc})") from exc
    with zf:
        members = {info.filename: info for info in zf.infolist()}
        folder.mkdir(parents=True, exist_ok=True)
        budget = MAX_EXTRACTED_BYTES
        for name in names:
            member = f"{root}/{name}" if root else name
            info = members.get(member)
            if info is None:
                raise DataError(
                    f"dataset {card.name!r}: the archive {card.url} has no entry {member!r}"
                )
            limit = min(budget, MAX_EXPANSION * max(info.compress_size, 1 << 10))
            partial = folder / f".{Path(name).name}.partial"
            partial.unlink(missing_ok=True)
            try:
                written = _copy_bounded(zf, info, partial, limit)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            if written is None:
                partial.unlink(missing_ok=True)
                raise DataError(
                    f"dataset {card.name!r}: the archive entry {member!r} unpacks to more than "
                    f"{limit} bytes ({MAX_EXPANSION} times its compressed size, or "
                    f"{MAX_EXTRACTED_BYTES >> 30} GiB in all); it is not unpacked"
                )
            budget -= written
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, folder / name)


def _copy_bounded(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int
) -> int | None:
    """Copy one archive entry to a new file ``target``; None when it exceeds ``limit`` bytes."""
    written = 0
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        with zf.open(info) as src, os.fdopen(os.open(target, flags, 0o644), "wb") as dst:
            for block in iter(lambda: src.read(1 << 20), b""):
                written += len(block)
                if written > limit:
                    return None
                dst.write(block)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError) as exc:
        raise DataError(f"archive entry {info.filename!r} cannot be unpacked ({exc})") from exc
    return written
