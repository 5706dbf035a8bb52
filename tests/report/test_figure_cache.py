"""The figure cache: a figure is drawn once per content and copied afterwards; an entry changed
by anyone but this user's key is drawn again with a warning; a key others can read turns the
cache off; the least recently used entries beyond the limit are removed; the user's
matplotlibrc does not change the bytes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import bench.results.report.figure_cache as figure_cache
from bench.data.loaders.cache import KEY_FILE
from bench.errors import DataWarning

from shared import run_python


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "figures"


class Drawer:
    """Draws a line through ``ys`` on a real matplotlib figure, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, ys: list[float]) -> Any:
        self.calls += 1
        fig, panel = figure_cache.pyplot().subplots(figsize=(2, 1.5))
        panel.plot(range(len(ys)), ys)
        return fig


def draw(drawer: Drawer, ys: list[float], svg: bool = True) -> figure_cache.Rendered:
    return figure_cache.rendered("test", {"ys": ys}, svg, lambda: drawer(ys))


def test_the_same_inputs_are_drawn_once_and_other_inputs_anew(cache: Path) -> None:
    drawer = Drawer()
    first = draw(drawer, [1.0, 2.0, 3.0])
    again = draw(drawer, [1.0, 2.0, 3.0])
    assert drawer.calls == 1
    assert again == first and first.png.startswith(b"\x89PNG") and first.svg
    other = draw(drawer, [1.0, 2.0, 4.0])
    assert drawer.calls == 2 and other.png != first.png
    png_only = draw(drawer, [1.0, 2.0, 3.0], svg=False)
    assert drawer.calls == 3 and png_only.svg is None and png_only.png == first.png
    assert len(list(cache.glob("*.sig"))) == 3


def test_an_entry_changed_behind_the_key_is_drawn_again_with_a_warning(cache: Path) -> None:
    drawer = Drawer()
    honest = draw(drawer, [1.0, 2.0])
    (png,) = cache.glob("*.png")
    png.write_bytes(b"\x89PNG planted by someone else")
    with pytest.warns(DataWarning, match=r"figure cache entry .*\.sig is not used"):
        redrawn = draw(drawer, [1.0, 2.0])
    assert drawer.calls == 2 and redrawn == honest
    assert png.read_bytes() == honest.png  # the entry was replaced by the drawn figure
    draw(drawer, [1.0, 2.0])
    assert drawer.calls == 2


def test_a_signature_copied_from_another_entry_does_not_validate_it(cache: Path) -> None:
    drawer = Drawer()
    draw(drawer, [1.0])
    draw(drawer, [2.0])
    first, second = sorted(cache.glob("*.sig"))
    for suffix in (".png", ".svg", ".sig"):  # one entry's files under the other's key
        first.with_suffix(suffix).write_bytes(second.with_suffix(suffix).read_bytes())
    with pytest.warns(DataWarning, match="signature does not match"):
        draw(drawer, [1.0])
        draw(drawer, [2.0])
    assert drawer.calls == 3


def test_a_key_others_can_read_keeps_nothing(cache: Path) -> None:
    drawer = Drawer()
    draw(drawer, [1.0, 2.0])
    key = cache.parent / KEY_FILE
    key.chmod(0o644)
    before = sorted(p.name for p in cache.iterdir())
    draw(drawer, [1.0, 2.0])
    draw(drawer, [5.0, 6.0])
    assert drawer.calls == 3  # nothing read back, nothing new kept
    assert sorted(p.name for p in cache.iterdir()) == before


def test_the_least_recently_used_entries_beyond_the_limit_are_removed(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(figure_cache, "MAX_ENTRIES", 2)
    drawer = Drawer()
    draw(drawer, [1.0])
    draw(drawer, [2.0])
    marks = {p.stat().st_mtime_ns: p for p in cache.glob("*.sig")}
    oldest = marks[min(marks)]
    os.utime(oldest, ns=(1, 1))
    newest = marks[max(marks)]
    os.utime(newest, ns=(2, 2))
    draw(drawer, [1.0] if oldest != newest else [3.0])  # used again: the newest of all now
    assert drawer.calls == 2
    draw(drawer, [3.0])
    assert drawer.calls == 3
    kept = {p.stem for p in cache.glob("*.sig")}
    assert len(kept) == 2 and newest.stem not in kept and oldest.stem in kept
    assert {p.stem for p in cache.iterdir()} == kept  # its PNG and SVG went with it


def test_the_users_matplotlibrc_does_not_change_the_figure(tmp_path: Path) -> None:
    code = (
        "import json, hashlib, matplotlib\n"
        "from bench.results.report.figure_cache import pyplot, rendered\n"
        "def draw():\n"
        "    fig, panel = pyplot().subplots(figsize=(2, 1.5))\n"
        "    panel.plot([0, 1, 2], [1, 3, 2])\n"
        "    return fig\n"
        "out = rendered('rc', {}, True, draw)\n"
        "width = matplotlib.rcParams['lines.linewidth']\n"
        "print(json.dumps([width, hashlib.sha256(out.png + out.svg).hexdigest()]))"
    )
    found = {}
    for name, rc in (("styled", "lines.linewidth: 6\naxes.facecolor: black\n"), ("plain", "")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "matplotlibrc").write_text(rc)
        env = {"BENCH_CACHE_DIR": str(folder / "cache"), "MPLCONFIGDIR": str(folder)}
        found[name] = run_python(code, env).output
    assert found["styled"][0] == 6.0  # the user's file was read...
    assert found["plain"][0] == 1.5
    assert found["styled"][1] == found["plain"][1]  # ...and changed nothing in the figure
