"""Every parser on tiny files written by the tests, malformed files, checksums, downloads, the data
directory and the parse cache."""

from __future__ import annotations

import hashlib
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data.cards import load_dataset
from bench.data.loaders import sources
from bench.errors import DataError

from real_formats import card, sha, write


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "parsed"))
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    yield


def ml100k_files(folder: Path, data: str | None = None) -> None:
    ratings = data or "1\t10\t5\t100\n1\t20\t3\t101\n2\t10\t4\t102\n2\t30\t1\t103\n3\t20\t2\t104\n"
    write(folder / "u.data", ratings)
    write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|T8H1N\n3|15|M|student|05201\n")
    flags = "|".join(["0"] * 18)
    write(
        folder / "u.item",
        f"10|Toy Story (1995)|01-Jan-1995||url|1|{flags}\n"
        f"20|Café (1997)|01-Jan-1997||url|0|{flags}\n"
        f"30|unknown|||url|0|{flags}\n",
        encoding="latin-1",
    )
    write(folder / "u1.base", "1\t10\t5\t100\n2\t10\t4\t102\n3\t20\t2\t104\n")
    write(folder / "u1.test", "1\t20\t3\t101\n2\t30\t1\t103\n")


def test_movielens_100k_layout(tmp_path: Path) -> None:
    ml100k_files(tmp_path / "data" / "tiny")
    path = card(tmp_path, "tiny", "movielens-100k", {}, "[options]\nfolds = ['u1']")
    data = load_dataset(str(path), data_dir=tmp_path / "data")
    assert (data.n_users, data.n_items, data.n_ratings) == (3, 3, 5)
    assert data.item_ids is not None and data.item_ids.tolist() == [10, 20, 30]
    assert data.user_features is not None and data.user_features.shape == (3, 7 + 2 + 3 + 11)
    assert data.item_features is not None and data.item_features.shape == (3, 20)
    year = data.item_attributes["release_year"]
    assert year[:2].tolist() == [1995, 1997] and np.isnan(year[2])
    assert data.extras["folds"]["u1"]["test"].tolist() == [1, 3]


def test_movielens_dat_and_csv_layouts(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "dat"
    write(folder / "ratings.dat", "1::5::4::978300760\n2::5::3.5::978300761\n2::7::1::978300762\n")
    write(folder / "movies.dat", "5::Heat (1995)::Action|Crime\n7::Sabrina (1954)::Comedy\n")
    write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    path = card(tmp_path, "dat", "movielens", {}, '[options]\nformat = "dat"\nusers = "users.dat"')
    data = load_dataset(str(path), data_dir=tmp_path / "data")
    assert data.n_ratings == 3 and data.rating_scale == (1.0, 4.0)
    assert data.item_features is not None and data.item_features.shape == (2, 3 + 1)
    assert data.user_features is not None and data.user_features[:, :7].argmax(1).tolist() == [0, 6]
    assert data.item_attributes["release_year"].tolist() == [1995, 1954]

    folder = tmp_path / "data" / "csv"
    write(
        folder / "ratings.csv",
        "userId,movieId,rating,timestamp\r\n1,3,0.5,10\r\n1,4,5.0,11\r\n9,3,2.5,12\r\n",
    )
    write(
        folder / "movies.csv",
        'movieId,title,genres\n3,"Shawshank, The (1994)",Drama\n4,Babylon 5,(no genres listed)\n',
    )
    path = card(tmp_path, "csv", "movielens", {}, "rating_scale = [0.5, 5]")
    data = load_dataset(str(path), data_dir=tmp_path / "data")
    assert data.n_ratings == 3 and data.rating_scale == (0.5, 5.0)
    assert data.like_threshold == pytest.approx(3.875)  # no like_threshold in the card
    assert data.item_attributes["release_year"][0] == 1994
    assert np.isnan(data.item_attributes["release_year"][1])


def test_filmtrust_layout(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "ft"
    write(folder / "ratings.txt", "1 1 2\n1 2 4\n2 1 0.5\n1 1 3\n")
    write(folder / "trust.txt", "1 2 1\n2 9 1\n")
    path = card(tmp_path, "ft", "filmtrust", {})
    data = load_dataset(str(path), data_dir=tmp_path / "data")
    assert data.n_ratings == 3 and data.extras["duplicates_dropped"] == 1
    assert data.rating[(data.user == 0) & (data.item == 0)].tolist() == [3.0]  # the later line
    assert data.extras["trust_edges"].tolist() == [[0, 1]]
    assert data.extras["trust_edges_dropped"] == 1
    first = load_dataset(str(path), {"duplicates": "first"}, data_dir=tmp_path / "data")
    assert first.rating[(first.user == 0) & (first.item == 0)].tolist() == [2.0]
    mean = load_dataset(str(path), {"duplicates": "mean"}, data_dir=tmp_path / "data")
    assert mean.rating[(mean.user == 0) & (mean.item == 0)].tolist() == [2.5]


def test_book_crossing_layout(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "bx"
    enc = "latin-1"
    write(
        folder / "BX-Book-Ratings.csv",
        '"User-ID";"ISBN";"Book-Rating"\n"7";"034545104X";"0"\n"7";"0155061224";"5"\n'
        '"8";"0155061224";"10"\n"8";"999";"7"\n',
        enc,
    )
    write(
        folder / "BX-Users.csv",
        '"User-ID";"Location";"Age"\n"7";"nyc, new york, usa";NULL\n"8";"x; y";"30"\n',
        enc,
    )
    write(
        folder / "BX-Books.csv",
        '"ISBN";"Book-Title";"Book-Author";"Year-Of-Publication";"Publisher";"S";"M";"L"\n'
        '"0155061224";"Rites of Passage; a \\"novel\\"";"Judith Rae";"2001";"Heinle";"s";"m";"l"\n',
        enc,
    )
    path = card(tmp_path, "bx", "book-crossing", {}, "rating_scale = [1, 10]\nlike_threshold = 8")
    data = load_dataset(str(path), data_dir=tmp_path / "data")
    assert data.n_ratings == 3  # the implicit 0 is dropped
    assert data.item_ids is not None and data.item_ids.tolist() == ["0155061224", "999"]
    assert data.item_attributes["release_year"][0] == 2001
    assert np.isnan(data.item_attributes["release_year"][1])
    assert np.isnan(data.user_attributes["age"][0]) and data.user_attributes["age"][1] == 30


def test_own_csv_with_strings_and_a_negative_continuous_scale(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mine.csv",
        "who;what;score;when\nann;x;-7.25;3\nbob;x;9.5;1\nann;y;0;2\nann;x;-1;4\n",
    )
    options = {"user": "who", "item": "what", "rating": "score", "timestamp": "when"}
    data = load_dataset(f"csv:{path}", options)
    assert data.user_ids is not None and data.user_ids.tolist() == ["ann", "bob"]
    assert data.rating_scale == (-1.0, 9.5)  # inferred after the duplicate is resolved
    assert data.extras["duplicates_dropped"] == 1 and data.timestamp.tolist() == [1, 2, 4]
    with pytest.raises(DataError, match=r"mine.csv: duplicate \(user, item\) pair on lines 2, 5"):
        load_dataset(f"csv:{path}", {**options, "duplicates": "error"})
    tsv = write(tmp_path / "plain.tsv", "1\t2\t3.5\n2\t2\t-4\n")
    data = load_dataset(f"csv:{tsv}", {"rating_scale": [-5, 5]})
    assert data.n_ratings == 2 and data.user_ids is not None and data.user_ids.tolist() == [1, 2]
    assert math.isnan(data.like_threshold)  # unset: each split likes its training median
    with pytest.raises(DataError, match="unknown option"):
        load_dataset(f"csv:{tsv}", {"colour": "red"})


def test_own_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "r.parquet"
    table = pa.table({"user_id": [3, 3, 4], "item_id": ["a", "b", "a"], "rating": [0.1, 0.9, 0.4]})
    pq.write_table(table, path)
    data = load_dataset(f"parquet:{path}")
    assert (data.n_users, data.n_items, data.n_ratings) == (2, 2, 3)
    assert data.rating_scale == pytest.approx((0.1, 0.9))
    assert data.user_ids is not None and data.user_ids.dtype.kind == "i"
    assert data.user_ids.tolist() == [3, 4]  # integer ids stay integers, as in a CSV file
    assert data.item_ids is not None and data.item_ids.tolist() == ["a", "b"]


def test_parquet_files_that_cannot_be_read_name_the_file(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1 not really a parquet file")
    with pytest.raises(DataError, match=r"damaged.parquet: not a readable Parquet file"):
        load_dataset(f"parquet:{damaged}", {"cache": False})
    empty_ids = tmp_path / "nulls.parquet"
    table = pa.table({"user_id": [1, None], "item_id": [1, 2], "rating": [3.0, 4.0]})
    pq.write_table(table, empty_ids)
    with pytest.raises(DataError, match=r"nulls.parquet, row 2: column 'user_id' is empty"):
        load_dataset(f"parquet:{empty_ids}", {"cache": False})


def test_parquet_ids_and_ratings_of_every_integer_width(tmp_path: Path) -> None:
    """Ids of any integer type become the same contiguous ids; no row is lost or reordered."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    users = [7, 3, 7, 9, 3]
    for kind in (pa.int8(), pa.uint16(), pa.int32(), pa.int64()):
        path = tmp_path / f"{kind}.parquet"
        table = pa.table(
            {
                "user_id": pa.array(users, type=kind),
                "item_id": pa.array([1, 1, 2, 2, 3], type=kind),
                "rating": pa.array([1, 2, 3, 4, 5], type=pa.float32()),
            }
        )
        pq.write_table(table, path)
        data = load_dataset(f"parquet:{path}", {"cache": False})
        assert data.user_ids is not None and data.user_ids.tolist() == [3, 7, 9]
        assert data.user_ids[data.user].tolist() == users
        assert data.rating.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("1\t10\t5\t100\n1\t20\t3\n", r"u.data, line 2: expected 4 fields"),
        ("1\t10\t5\t100\n1\t20\t3\t101\t7\n", r"u.data, line 2: expected 4 fields"),
        (
            "1\t10\t5\t100\n\n1\t20\tgood\t101\n",
            r"u.data, line 3: column 'rating' must be a finite",
        ),
        ("1\t10\t5\t100\n1\t20\tnan\t101\n", r"u.data, line 2: column 'rating'"),
    ],
    ids=["truncated-line", "wrong-column-count", "non-numeric-rating", "nan-rating"],
)
def test_malformed_files_name_the_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    ml100k_files(tmp_path / "data" / "bad", data=content)
    path = card(tmp_path, "bad", "movielens-100k", {}, "[options]\nfolds = []")
    with pytest.raises(DataError, match=message):
        load_dataset(str(path), data_dir=tmp_path / "data")


def test_malformed_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "user,item,rating\n1,2,3\n1,3\n")
    with pytest.raises(DataError, match=r"x.csv, line 3: expected 3 fields"):
        load_dataset(f"csv:{path}")
    path = write(tmp_path / "y.csv", "user,item,rating\n1,2,3\n1,3,lots\n")
    with pytest.raises(DataError, match=r"y.csv, line 3: column 'rating'"):
        load_dataset(f"csv:{path}")


def test_checksum_mismatch_names_the_file(tmp_path: Path) -> None:
    ml100k_files(tmp_path / "data" / "sums")
    good = sha(tmp_path / "data" / "sums" / "u.user")
    path = card(
        tmp_path,
        "sums",
        "movielens-100k",
        {"u.user": good, "u.data": "0" * 64},
        "[options]\nfolds = []",
    )
    with pytest.raises(DataError, match=r"checksum mismatch for .*sums/u.data"):
        load_dataset(str(path), data_dir=tmp_path / "data")


def test_missing_files_offline_say_what_to_put_where(tmp_path: Path) -> None:
    path = card(tmp_path, "gone", "filmtrust", {}, 'url = "http://127.0.0.1:9/gone.zip"')
    with pytest.raises(DataError) as info:
        load_dataset(str(path), data_dir=tmp_path / "data")
    text = str(info.value)
    assert "ratings.txt" in text and "trust.txt" in text and str(tmp_path / "data" / "gone") in text
    assert "--data-dir" in text and "BENCH_DATA_DIR" in text


def test_download_unpacks_checks_and_shows_the_terms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "ft.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ft/ratings.txt", "1 1 2\n2 1 4\n")
        zf.writestr("ft/trust.txt", "1 2 1\n")
    ratings_sum = hashlib.sha256(b"1 1 2\n2 1 4\n").hexdigest()
    extra = f'url = "{archive.as_uri()}"\narchive_root = "ft"\narchive_sha256 = "{sha(archive)}"'
    path = card(tmp_path, "ft", "filmtrust", {"ratings.txt": ratings_sum}, extra)
    data = load_dataset(str(path), data_dir=tmp_path / "data")
    assert data.n_ratings == 2 and (tmp_path / "data" / "ft" / "trust.txt").is_file()
    err = capsys.readouterr().err
    assert "licence: test terms" in err and "please cite: test citation" in err
    bad = card(
        tmp_path,
        "ft2",
        "filmtrust",
        {},
        f'url = "{archive.as_uri()}"\narchive_sha256 = "{"1" * 64}"',
    )
    with pytest.raises(DataError, match=r"checksum mismatch for .*ft\.zip"):
        load_dataset(str(bad), data_dir=tmp_path / "data")


def test_data_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sources.resolve_data_dir() == tmp_path / "xdg" / "coldstart-bench" / "datasets"
    monkeypatch.setenv("BENCH_DATA_DIR", str(tmp_path / "env"))
    assert sources.resolve_data_dir() == tmp_path / "env"
    assert sources.resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"


def test_parsed_cache_is_reused_and_keyed_by_content(tmp_path: Path) -> None:
    path = write(tmp_path / "r.csv", "u,i,r\n1,1,1\n2,1,2\n")
    first = load_dataset(f"csv:{path}")
    assert len(list((tmp_path / "parsed").glob("*.arrow"))) == 1
    assert load_dataset(f"csv:{path}").content_hash == first.content_hash
    write(path, "u,i,r\n1,1,1\n2,1,3\n")
    assert load_dataset(f"csv:{path}").rating.tolist() == [1, 3]
    assert len(list((tmp_path / "parsed").glob("*.arrow"))) == 2


def test_own_csv_with_another_scale_runs_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 120, 60
    taste = rng.normal(size=(n_users, 2)) @ rng.normal(size=(2, n_items))
    lines = ["who;what;score"]
    for u in range(n_users):
        for i in rng.choice(n_items, size=25, replace=False):
            score = float(np.clip(3 * taste[u, i] + rng.normal(), -10, 10))
            lines.append(f"u{u};item{i};{score:.3f}")
    path = write(tmp_path / "scores.csv", "\n".join(lines) + "\n")
    suite = write(
        tmp_path / "own.toml",
        'name = "own"\nlearners = ["global-mean", "item-mean", "mf"]\nseeds = 1\n'
        '[protocol]\nname = "cold-random"\nsupport_sizes = [1, 5]\nquery_size = 3\n'
        "new_item_fraction = 0.4\n",
    )
    code = main(
        [
            "run",
            "--suite",
            str(suite),
            "--datasets",
            f"csv:{path}",
            "--dataset-option",
            "user=who",
            "--dataset-option",
            "item=what",
            "--dataset-option",
            "rating_scale=[-10, 10]",
            "--store",
            str(tmp_path / "s.sqlite"),
            "--no-progress",
            "--verbose",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "audit" in out and "FAIL" not in out, out
    assert '"user": "who"' in out and '"rating_scale": [' in out  # the options reached the suite
    for scenario in ("warm", "user_cold", "item_cold", "user_item_cold"):
        assert f"· {scenario}" in out


def test_a_card_for_own_csv_file(tmp_path: Path) -> None:
    write(tmp_path / "cards" / "data" / "r.tsv", "a\tb\t1\nc\tb\t5\n")
    path = write(
        tmp_path / "cards" / "mine.toml",
        'name = "mine"\nparser = "csv"\n[options]\npath = "data/r.tsv"\nrating_scale = [1, 5]\n',
    )
    data = load_dataset(str(path))
    assert data.name == "mine" and math.isnan(data.like_threshold) and data.n_users == 2


DAT = {
    "ratings.dat": "1::5::4::978300760\n2::5::3::978300761\n2::7::1::978300762\n",
    "movies.dat": "5::Heat (1995)::Action|Crime\n7::Sabrina (1954)::Comedy\n",
    "users.dat": "1::F::1::10::48067\n2::M::56::16::70072\n",
}
CSV = {
    "ratings.csv": "userId,movieId,rating,timestamp\n1,3,0.5,10\n1,4,5.0,11\n9,3,2.5,12\n",
    "movies.csv": 'movieId,title,genres\n3,"Shawshank, The (1994)",Drama\n4,Heat (1995),Action\n',
}


@pytest.mark.parametrize(
    ("name", "folder", "files", "has_users"),
    [
        ("ml-1m", "ml-1m", DAT, True),
        ("ml-10m", "ml-10M100K", {k: v for k, v in DAT.items() if k != "users.dat"}, False),
        ("ml-20m", "ml-20m", CSV, False),
        ("ml-25m", "ml-25m", CSV, False),
    ],
)
def test_shipped_movielens_cards_on_tiny_files(
    tmp_path: Path, name: str, folder: str, files: dict[str, str], has_users: bool
) -> None:
    for file, text in files.items():
        write(tmp_path / folder / file, text)
    data = load_dataset(name, data_dir=tmp_path)
    assert data.n_ratings == 3 and data.name == name
    assert (data.user_features is not None) == has_users
    assert np.isfinite(data.item_attributes["release_year"]).all()


def test_shipped_cards_reject_files_that_do_not_match_their_sums(tmp_path: Path) -> None:
    for file, text in CSV.items():
        write(tmp_path / "ml-latest-small" / file, text)
    with pytest.raises(DataError, match=r"checksum mismatch for .*ml-latest-small/ratings\.csv"):
        load_dataset("ml-latest-small", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("ratings", "expected"),
    [
        ([1e-50, 2e-50, 3e-50], "rating 1e-50 would be stored as 0.0"),
        (
            [100000001, 100000002, 100000003],
            "would be stored as 100000000.0",
        ),
    ],
)
def test_ratings_that_32_bit_storage_would_merge_are_refused(
    tmp_path: Path, ratings: list[float], expected: str
) -> None:
    """Stored as float32, these ratings collapse (to 0, or to one value): every learner would
    then score perfectly. The file is refused, naming a line, instead; finely graded ratings
    whose float32 error is negligible against their range still load."""
    lines = ["user,item,rating"]
    for u in range(12):
        for i in range(6):
            lines.append(f"u{u},i{i},{ratings[(u + i) % len(ratings)]!r}")
    path = write(tmp_path / "narrow.csv", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match="line ") as raised:
        load_dataset(f"csv:{path}", data_dir=tmp_path / "data")
    assert expected in str(raised.value) and str(path) in str(raised.value)
    assert "32-bit" in str(raised.value)


def test_finely_graded_ratings_load_though_float32_rounds_them(tmp_path: Path) -> None:
    lines = ["user,item,rating"]
    values = np.linspace(1.0, 5.0, 72) + 1e-9  # float32 moves each by far less than 1e-4 of 4
    for n, value in enumerate(values):
        lines.append(f"u{n // 6},i{n % 6},{float(value)!r}")
    path = write(tmp_path / "fine.csv", "\n".join(lines) + "\n")
    data = load_dataset(f"csv:{path}", data_dir=tmp_path / "data")
    assert np.allclose(np.sort(data.rating), values, atol=1e-6)


def test_a_dataset_built_in_code_refuses_ratings_float32_would_merge() -> None:
    from bench.data.dataset import Dataset

    with pytest.raises(DataError, match=r"rating 10000000\d.0 would be stored as 10000000\d.0"):
        Dataset(
            name="narrow",
            user=np.array([0, 1]),
            item=np.array([0, 0]),
            rating=np.array([100000001.0, 100000002.0]),
            timestamp=np.zeros(2, dtype=np.int64),
            n_users=2,
            n_items=1,
            rating_scale=(1e8, 2e8),
            like_threshold=1.5e8,
        )
