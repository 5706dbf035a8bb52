"""Cards, archives and output folders from elsewhere: reads and writes stay in the folders the
user named, archives unpack within limits, and planted links are never followed."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest
from untrusted import FAST_RUN, Outcome, bench, refused

from bench.data.card import Card
from bench.data.loaders import sources
from bench.errors import DataError

RATINGS = "".join(f"{u} {i} {1 + (u + i) % 5}\n" for u in range(1, 40) for i in range(1, 30))


def write_card(folder: Path, body: str, name: str = "evil") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f'name = "{name}"\n{body}')
    return path


def run_card(card: Path, data_dir: Path) -> tuple[int, str]:
    outcome = bench(
        *FAST_RUN,
        "--datasets",
        card,
        "--data-dir",
        data_dir,
        "--store",
        card.with_suffix(".sqlite"),
    )
    return outcome.code, outcome.err


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (
            'parser = "movielens"\n[options]\nratings = "../outside/ratings.csv"\n',
            "option 'ratings'",
        ),
        ('parser = "movielens"\n[options]\nmovies = "/etc/hostname"\n', "option 'movies'"),
        ('parser = "filmtrust"\nfolder = "/tmp/elsewhere"\n', "'folder'"),
        ('parser = "filmtrust"\nfolder = "../outside"\n', "'folder'"),
        ('parser = "filmtrust"\narchive_root = "../.."\n', "'archive_root'"),
        ('parser = "csv"\n[options]\npath = "../outside/ratings.csv"\n', "option 'path'"),
        (
            'parser = "filmtrust"\n[files]\n"../outside/ratings.csv" = "unverified"\n',
            "[files] entry",
        ),
    ],
)
def test_a_card_by_path_cannot_name_files_outside_its_folder(
    tmp_path: Path, body: str, fragment: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "ratings.csv").write_text("user,item,rating\n" + RATINGS.replace(" ", ","))
    cards = tmp_path / "cards"
    cards.mkdir()
    card = write_card(cards, body)
    outcome = bench(*FAST_RUN, "--datasets", card, "--data-dir", tmp_path / "data")
    refused(outcome, fragment, "must be a relative path inside the dataset's folder")


def test_a_suite_cannot_point_a_card_at_a_file_outside_its_folder(tmp_path: Path) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(
        'datasets = ["ml-latest-small"]\nlearners = ["global-mean"]\nseeds = 1\n'
        '[dataset.ml-latest-small]\nratings = "../../../etc/passwd"\n'
    )
    outcome = bench(
        "run",
        "--suite",
        suite,
        "--no-progress",
        "--data-dir",
        tmp_path,
        "--store",
        tmp_path / "s.sqlite",
    )
    refused(outcome, "file '../../../etc/passwd'")


def zip_bomb(path: Path, member: str, size: int) -> None:
    block = b"0" * (1 << 20)
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf,
        zf.open(member, "w") as out,
    ):
        for _ in range(size >> 20):
            out.write(block)


def test_an_archive_that_expands_too_far_is_not_unpacked(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    zip_bomb(bomb, "ratings.txt", 64 << 20)
    assert bomb.stat().st_size < (64 << 20) // 500  # about a thousand to one
    card = write_card(
        tmp_path,
        f'parser = "filmtrust"\nurl = "{bomb.as_uri()}"\n[options]\ntrust = false\n',
    )
    data = tmp_path / "data"
    line = refused(
        bench(*FAST_RUN, "--datasets", card, "--data-dir", data, "--store", tmp_path / "s.sqlite")
    )
    assert "unpacks to more than" in line and "'ratings.txt'" in line
    assert list((data / "evil").iterdir()) == []  # neither the file nor a partial one is left


def test_an_archive_within_the_limits_is_unpacked(tmp_path: Path) -> None:
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ratings.txt", RATINGS)
    card = write_card(
        tmp_path, f'parser = "filmtrust"\nurl = "{archive.as_uri()}"\n[options]\ntrust = false\n'
    )
    code, err = run_card(card, tmp_path / "data")
    assert code == 0, err
    assert (tmp_path / "data" / "evil" / "ratings.txt").read_text() == RATINGS


def test_unpacking_replaces_a_link_planted_at_the_target(tmp_path: Path) -> None:
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ratings.txt", RATINGS)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "ratings.txt").symlink_to(victim)
    sources.unpack(Card("evil", "filmtrust", None, url="file:"), archive, folder, ["ratings.txt"])
    assert victim.read_text() == "keep me"
    assert not (folder / "ratings.txt").is_symlink()
    assert (folder / "ratings.txt").read_text() == RATINGS


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "s.sqlite"
    assert bench(*FAST_RUN, "--store", path).code == 0
    return path


def report(store: Path, out: Path, *extra: str) -> Outcome:
    return bench("report", "--store", store, "--out", out, "--reference", "global-mean", *extra)


@pytest.mark.parametrize("planted", ["report.md", "report.html", "report.csv", "report.json"])
def test_a_link_planted_in_the_report_folder_is_not_written_through(
    store: Path, tmp_path: Path, planted: str
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "rep"
    out.mkdir()
    (out / planted).symlink_to(victim)
    refused(report(store, out), f"{out / planted} is a symbolic link")
    assert victim.read_text() == "keep me"


def test_a_linked_figure_folder_is_not_emptied(store: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kshot-precious.png").write_bytes(b"keep me")
    out = tmp_path / "rep"
    out.mkdir()
    (out / "report_figures").symlink_to(elsewhere, target_is_directory=True)
    refused(report(store, out), "report_figures is a symbolic link")
    assert (elsewhere / "kshot-precious.png").read_bytes() == b"keep me"


def test_a_linked_figure_inside_the_folder_is_removed_not_followed(
    store: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"keep me")
    figures = tmp_path / "rep" / "report_figures"
    figures.mkdir(parents=True)
    (figures / "kshot-old.png").symlink_to(victim)
    outcome = report(store, tmp_path / "rep")
    assert outcome.code == 0, outcome.err
    assert victim.read_bytes() == b"keep me"
    assert not any(p.is_symlink() for p in figures.iterdir())


@pytest.mark.parametrize("name", ["../escaped", "sub/report", "..", "/tmp/abs"])
def test_a_report_name_cannot_leave_the_output_folder(
    store: Path, tmp_path: Path, name: str
) -> None:
    out = tmp_path / "a" / "rep"
    refused(report(store, out, "--name", name), "--name must be a plain file name")
    assert not (tmp_path / "a" / "escaped.md").exists()
    assert sorted(p.name for p in tmp_path.rglob("*.md")) == []


def test_every_report_file_lands_inside_the_output_folder(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    outcome = report(store, out)
    assert outcome.code == 0
    written = [Path(line) for line in outcome.out.splitlines()]
    assert written and all(
        os.path.commonpath([p.resolve(), out.resolve()]) == str(out.resolve()) for p in written
    )


def test_an_export_over_a_planted_link_is_refused(store: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim.csv"
    victim.write_text("keep me")
    target = tmp_path / "export.csv"
    target.symlink_to(victim)
    for fmt in ("csv", "json"):
        refused(
            bench("export", "--store", store, "--format", fmt, "-o", target), "is a symbolic link"
        )
    assert victim.read_text() == "keep me"
    plain = tmp_path / "plain.csv"
    assert bench("export", "--store", store, "-o", plain).code == 0
    assert "global-mean" in plain.read_text()


def test_an_archive_over_the_total_bound_is_not_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # stored, not compressed: no expansion at all
        zf.writestr("ratings.txt", os.urandom(50_000).hex())
    monkeypatch.setattr(sources, "MAX_EXTRACTED_BYTES", 60_000)
    folder = tmp_path / "data"
    with pytest.raises(DataError, match="unpacks to more than 60000 bytes"):
        sources.unpack(
            Card("big", "filmtrust", None, url="file:"), archive, folder, ["ratings.txt"]
        )
    assert list(folder.iterdir()) == []
