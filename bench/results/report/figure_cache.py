"""Figures drawn once per content: a report's figure is fully determined by the rows it plots, its
title, the drawing code and matplotlib's version, so its PNG and SVG are kept under a key of all
of these in ``$BENCH_CACHE_DIR/figures/`` and copied from there when a later report asks for the
same figure. Drawing is most of the time of a report; a report rebuilt after a run that changed
one table redraws that table's figures only.

Entries are signed with the parse cache's per-user key (HMAC-SHA256 over the bytes' digests),
so a figure planted in the cache by someone else is never copied into a report: an entry whose
signature does not match is drawn again, with a warning. Without a usable key (not private to
this user, or not writable) every figure is drawn and nothing is kept.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import io
import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.config import stable_hash
from bench.data.loaders.cache import UntrustedKey, secret_key, signature
from bench.data.loaders.sources import parsed_cache_dir
from bench.errors import DataWarning

DPI = 80
"""The PNGs' resolution."""

MAX_ENTRIES = 512
"""Figures kept; beyond this the least recently used are removed."""

DRAWING_MODULES = ("figures.py", "robustness_figure.py", "figure_cache.py")
"""The report's modules whose code decides a figure's bytes (their source is part of the key)."""


@dataclass(frozen=True)
class Rendered:
    """A figure's file contents: PNG always, SVG when asked for."""

    png: bytes
    svg: bytes | None


def figure_cache_dir() -> Path:
    return parsed_cache_dir() / "figures"


def rendered(kind: str, inputs: Any, svg: bool, draw: Callable[[], Any]) -> Rendered:
    """The PNG (and with ``svg`` the SVG) of the figure that ``draw()`` makes, from the cache
    when the same ``kind`` and ``inputs`` were drawn before by the same code.

    ``inputs`` is everything ``draw`` reads, JSON-serialisable (numbers, strings, lists);
    ``draw`` returns a laid-out matplotlib figure, which is rendered, closed and kept. It is
    drawn in matplotlib's default style, whatever the user's ``matplotlibrc`` says, so that the
    bytes depend only on what the key holds.
    """
    key = stable_hash(
        {"kind": kind, "inputs": inputs, "svg": svg, "code": _drawing_code()}, length=32
    )
    folder = figure_cache_dir()
    try:
        secret: bytes | None = secret_key(folder.parent)
    except (OSError, UntrustedKey):
        secret = None
    if secret is not None:
        found = _read(folder, key, secret, svg)
        if found is not None:
            return found
    with pyplot().style.context("default"):  # whatever the user's matplotlibrc says
        drawn = _render(draw(), svg)
    if secret is not None:
        _keep(folder, key, secret, drawn)
    return drawn


@functools.cache
def _drawing_code() -> str:
    """The drawing modules' source and matplotlib's version: a change to either draws anew."""
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in DRAWING_MODULES:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    try:
        version = metadata.version("matplotlib")
    except metadata.PackageNotFoundError:
        version = "absent"
    return f"{digest.hexdigest()}|matplotlib {version}"


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, imported on the first figure drawn: reports
    without figures (CSV, JSON), or whose figures are all in the cache, never load it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _render(fig: Any, svg: bool) -> Rendered:
    """``fig`` as PNG (and SVG) bytes with fixed metadata, so the same figure gives the same
    bytes; the figure is closed."""
    plt = pyplot()
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
        vector = None
        if svg:
            drawn = io.BytesIO()
            with plt.rc_context({"svg.hashsalt": "coldstart-bench", "svg.fonttype": "none"}):
                fig.savefig(drawn, format="svg", metadata={"Date": None, "Creator": None})
            vector = drawn.getvalue()
    finally:
        plt.close(fig)
    return Rendered(buffer.getvalue(), vector)


def _signed(secret: bytes, key: str, png: bytes, svg: bytes | None) -> str:
    digests = hashlib.sha256(png).hexdigest() + "|" + hashlib.sha256(svg or b"").hexdigest()
    return signature(secret, digests, f"figure|{key}")


def _read(folder: Path, key: str, secret: bytes, svg: bool) -> Rendered | None:
    """The kept figure ``key``, or None when there is none; an entry whose signature does not
    match its bytes is reported and left to be replaced."""
    mark = folder / f"{key}.sig"
    try:
        signed = mark.read_text(encoding="ascii").strip()
        png = (folder / f"{key}.png").read_bytes()
        vector = (folder / f"{key}.svg").read_bytes() if svg else None
    except (OSError, ValueError):
        return None
    if not hmac.compare_digest(_signed(secret, key, png, vector), signed):
        warnings.warn(
            f"figure cache entry {mark} is not used: its signature does not match its files; "
            "drawing the figure again",
            DataWarning,
            stacklevel=3,
        )
        return None
    with contextlib.suppress(OSError):
        os.utime(mark)  # recently used: kept when older entries are removed
    return Rendered(png, vector)


def _keep(folder: Path, key: str, secret: bytes, drawn: Rendered) -> None:
    """Store the figure's files, then its signature (each written whole, the signature last, so
    a reader never takes a half-written entry); a cache that cannot be written is only slower."""
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        _write_whole(folder / f"{key}.png", drawn.png)
        if drawn.svg is not None:
            _write_whole(folder / f"{key}.svg", drawn.svg)
        mark = _signed(secret, key, drawn.png, drawn.svg)
        _write_whole(folder / f"{key}.sig", mark.encode("ascii"))
        _prune(folder)


def _write_whole(path: Path, data: bytes) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _prune(folder: Path) -> None:
    """Remove the least recently used entries beyond :data:`MAX_ENTRIES`."""
    marks = list(folder.glob("*.sig"))
    if len(marks) <= MAX_ENTRIES:
        return
    by_age = sorted(marks, key=_last_used)
    for mark in by_age[: len(marks) - MAX_ENTRIES]:
        for suffix in (".sig", ".png", ".svg"):
            with contextlib.suppress(OSError):
                mark.with_suffix(suffix).unlink()


def _last_used(mark: Path) -> int:
    try:
        return mark.stat().st_mtime_ns
    except OSError:  # removed meanwhile by another report
        return 0
