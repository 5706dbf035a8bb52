"""Where dataset files live, how they are checked, and how missing ones are fetched.

The data directory is the ``--data-dir`` flag, else ``$BENCH_DATA_DIR``, else a per-user cache
folder. Inside it each dataset has one folder named as its official archive unpacks (``ml-100k/``,
``ml-latest-small/``, ...).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from bench.errors import DataError

if TYPE_CHECKING:
    from bench.data.cards import Card

UNVERIFIED = "unverified"
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
    return resolve_data_dir(data_dir) / (card.folder or card.name)


def locate(card: Card, names: list[str], data_dir: str | Path | None) -> dict[str, Path]:
    """Paths of the files ``names`` of a card, downloading the archive when any is missing, each
    checked against the card's sha256 (files the card marks unverified are only hashed)."""
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
        with zipfile.ZipFile(archive) as zf:
            members = set(zf.namelist())
            folder.mkdir(parents=True, exist_ok=True)
            for name in missing:
                member = f"{card.archive_root}/{name}" if card.archive_root else name
                if member not in members:
                    raise DataError(
                        f"dataset {card.name!r}: the archive {card.url} has no entry {member!r}"
                    )
                with zf.open(member) as src, open(folder / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
