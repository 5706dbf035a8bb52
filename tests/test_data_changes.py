"""Inputs that would change the data without a word: a header without a rating column, a byte-order
mark, duplicates, an outlier that stretches the scale, a tampered parse cache, an empty grid, and
bad lines too long to quote. Each gives its documented outcome."""

from __future__ import annotations

import json
import math
import re
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.data.cards import load_dataset
from bench.data.loaders import cache
from bench.errors import ConfigError, DataError, DataWarning
from bench.results.store import ResultStore

from real_formats import card, write


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "parsed"))
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    yield


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ratings_csv(
    path: Path, extra: list[str] = (), header: str = "user,item,rating", bom: bool = False
) -> Path:
    """60 users with 12 ratings 1-5 each over 40 items, then the ``extra`` lines."""
    rng = np.random.default_rng(3)
    lines = [header]
    for user in range(60):
        for item in rng.choice(40, size=12, replace=False):
            lines.append(f"u{user},i{item},{int(rng.integers(1, 6))}")
    text = "\n".join([*lines, *extra]) + "\n"
    return write(path, ("\ufeff" if bom else "") + text)


def small_suite(tmp_path: Path) -> Path:
    return write(
        tmp_path / "small.toml",
        'name = "small"\nlearners = ["global-mean", "item-mean"]\nseeds = 1\n'
        '[protocol]\nname = "cold-random"\nsupport_sizes = [1, 3]\nquery_size = 3\n',
    )


def run_on(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, dataset: str, *flags: str
) -> tuple[int, str, str]:
    store = str(tmp_path / "s.sqlite")
    args = ["run", "--suite", str(small_suite(tmp_path)), "--datasets", dataset, "--store", store]
    return run_cli(capsys, *args, "--no-progress", *flags)


def test_a_header_without_a_rating_column_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "views.csv", "user_id,item_id,timestamp\n1,10,8812509\n2,10,8812\n")
    with pytest.raises(DataError) as info:
        load_dataset(f"csv:{path}")
    message = str(info.value)
    assert str(path) in message and "no rating column" in message
    assert "'user_id', 'item_id', 'timestamp'" in message  # the columns it found
    code, _, err = run_on(capsys, tmp_path, f"csv:{path}")
    assert code == 2 and "no rating column" in err
    # Naming the column is the way out; a header is never read by position.
    data = load_dataset(f"csv:{path}", {"rating": "timestamp", "cache": False})
    assert data.rating.tolist() == [8812509, 8812]


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bom.csv",
        "\ufeffuser_id,item_id,rating,timestamp\n7,1,4,100\n8,1,2,101\n7,2,5,102\n",
    )
    data = load_dataset(f"csv:{path}")
    assert data.n_ratings == 3 and data.user_ids is not None and data.user_ids.tolist() == [7, 8]
    assert data.timestamp.tolist() == [100, 101, 102]
    assert data.extras["load_report"]["columns"] == {
        "user": "user_id",
        "item": "item_id",
        "rating": "rating",
        "timestamp": "timestamp",
    }
    plain = write(tmp_path / "plain.csv", "\ufeff7,1,4\n8,1,2\n")  # no header: ids stay ids
    assert load_dataset(f"csv:{plain}").user_ids.tolist() == [7, 8]  # type: ignore[union-attr]


def test_duplicates_scale_and_threshold_are_reported_and_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twice = ["u0,i99,1", "u0,i99,2", "u0,i99,3", "u1,i99,5", "u1,i99,4"]
    path = ratings_csv(tmp_path / "dups.csv", extra=twice)
    code, out, _ = run_on(capsys, tmp_path, f"csv:{path}")
    assert code == 0
    (line,) = [ln for ln in out.splitlines() if ln.startswith("data ")]
    assert re.search(r"\d+ ratings; 3 duplicate \(user, item\) rows dropped \(kept: last\)", line)
    assert (
        "scale 1-5 (inferred), like threshold each split's median training rating (default)" in line
    )
    with ResultStore(tmp_path / "s.sqlite", mode="read") as store:
        named = "SELECT cell_key FROM cells WHERE learner NOT LIKE 'floor-%'"
        keys = [r[0] for r in store.conn.execute(named)]
        summaries = store.cell_summaries(keys)
    assert len(summaries) == 2  # the suite's learner's cells; the floors' hold the same report
    for summary in summaries.values():
        report = summary["load_report"]
        assert report["duplicates_dropped"] == 3 and report["rows_read"] == 725
        assert report["rating_scale"] == [1, 5] and report["rating_scale_from"] == "inferred"
        assert math.isnan(report["like_threshold"]) and report["source"] == str(path)


def test_the_scale_can_be_set_by_flag_card_or_suite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ratings_csv(tmp_path / "r.csv")
    code, out, _ = run_on(capsys, tmp_path, f"csv:{path}", "--rating-scale", "0,10")
    assert code == 0 and "rating scale 0-10 (declared), like threshold each split's" in out
    own = card(
        tmp_path, "mine", "csv", {}, f'rating_scale = [0, 5]\n[options]\npath = "{path.name}"'
    )
    assert load_dataset(str(own)).rating_scale == (0.0, 5.0)
    data = load_dataset(str(own), {"rating_scale": [1, 6], "like_threshold": 5})  # a suite's table
    assert (data.rating_scale, data.like_threshold) == ((1.0, 6.0), 5.0)
    with pytest.raises(DataError, match=r"rating_scale \[5, 1\] needs finite bounds"):
        load_dataset(str(own), {"rating_scale": [5, 1]})
    code, _, err = run_cli(capsys, "run", "--suite", "ci", "--rating-scale", "1,5")
    assert code == 2 and "'synthetic' is generated on its own rating scale" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--rating-scale", "5"])
    assert exit_info.value.code == 2 and "expected MIN,MAX" in capsys.readouterr().err


def test_one_extreme_rating_that_stretches_the_scale_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = ratings_csv(tmp_path / "outlier.csv", extra=["u5,i39,1e12"])
    with pytest.warns(DataWarning) as caught:
        data = load_dataset(f"csv:{path}")
    (warning,) = [str(w.message) for w in caught]
    assert f"{path}, line 722" in warning and "a single rating of 1e+12" in warning
    assert "--rating-scale 1,5" in warning and "rating_scale = [1, 5]" in warning
    assert data.rating_scale == (1.0, 1e12)
    assert data.extras["load_report"]["warnings"] == [warning]
    code, out, err = run_on(capsys, tmp_path, f"csv:{path}")
    assert code == 0 and "warning: " + warning in err  # shown by the CLI as one line
    assert "1 warning(s), shown when it was loaded" in out
    # Declaring the scale turns the outlier into an error that names its line.
    code, _, err = run_on(capsys, tmp_path, f"csv:{path}", "--rating-scale", "1,5")
    assert code == 2 and "line 722: rating 1e+12 lies outside the declared scale 1-5" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--learners", ""], "no learners: the grid would be empty"),
        (["--datasets", " , "], "no datasets: the grid would be empty"),
        (["--scenarios", ""], "no scenarios: the grid would be empty"),
        (["--suite", "ml100k-warm", "--scenarios", "user_cold"], "offers only warm"),
        (["--learners", "oracle", "--datasets", "CSV"], "nothing to run: no learner applies"),
    ],
    ids=["no-learners", "no-datasets", "no-scenarios", "no-scenario-offered", "none-applies"],
)
def test_an_empty_grid_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    path = ratings_csv(tmp_path / "r.csv")
    flags = [f"csv:{path}" if f == "CSV" else f for f in flags]
    code, out, err = run_cli(capsys, "run", *flags, "--store", str(tmp_path / "s.sqlite"))
    assert code == 2 and message in err and "cell(s) computed" not in out


def test_an_empty_learner_list_in_a_suite_file(tmp_path: Path) -> None:
    from bench.engine.suite import load_suite

    with pytest.raises(ConfigError, match="no learners"):
        load_suite(str(write(tmp_path / "s.toml", 'name = "s"\nlearners = []\n')))


def rewrite(entry: Path, change: Callable[[dict[str, np.ndarray]], None], plain: bool) -> None:
    """Rewrite a cache entry as someone without the cache key would: arrays changed, and (with
    ``plain``) the plain checksum recomputed so that it matches the new contents."""
    import pyarrow as pa

    with pa.memory_map(str(entry), "r") as stream:
        table = pa.ipc.open_file(stream).read_all()
    stored = dict(table.schema.metadata)
    layouts = json.loads(stored[b"bench.meta"])["layout"]
    arrays = {name: cache._from_arrow(table.column(name), layouts[name]) for name in layouts}
    arrays = {name: np.array(values) for name, values in arrays.items()}
    change(arrays)
    columns = {name: cache._to_arrow(values)[0] for name, values in arrays.items()}  # type: ignore[index]
    if plain:
        stored[b"bench.checksum"] = cache.checksum(arrays, stored[b"bench.meta"].decode()).encode()
    forged = pa.table(columns).replace_schema_metadata(stored)
    with pa.OSFile(str(entry), "wb") as sink, pa.ipc.new_file(sink, forged.schema) as writer:
        writer.write_table(forged)


def all_ones(arrays: dict[str, np.ndarray]) -> None:
    arrays["rating"] = arrays["rating"] * 0 + 1


def test_a_tampered_parse_cache_entry_is_rebuilt_and_said_so(tmp_path: Path) -> None:
    path = ratings_csv(tmp_path / "r.csv")
    genuine = load_dataset(f"csv:{path}")
    (entry,) = (tmp_path / "parsed").glob("*.arrow")
    rewrite(entry, all_ones, plain=False)
    with pytest.warns(DataWarning, match=r"no longer match its checksum; rebuilding it from"):
        rebuilt = load_dataset(f"csv:{path}")
    assert np.array_equal(rebuilt.rating, genuine.rating)
    assert rebuilt.content_hash == genuine.content_hash
    entry.write_bytes(entry.read_bytes()[:100])  # a damaged (cut) entry is rebuilt too
    with pytest.warns(DataWarning, match=r"cannot be read"):
        load_dataset(f"csv:{path}")
    secret = cache.secret_key(tmp_path / "parsed")
    key = entry.stem.rsplit("-", 1)[1]
    assert np.array_equal(cache.load(entry, secret, key).rating, genuine.rating)  # intact again


def test_an_entry_rewritten_with_a_recomputed_checksum_fails_its_signature(tmp_path: Path) -> None:
    path = ratings_csv(tmp_path / "r.csv")
    genuine = load_dataset(f"csv:{path}")
    (entry,) = (tmp_path / "parsed").glob("*.arrow")
    rewrite(entry, all_ones, plain=True)
    with pytest.warns(DataWarning) as caught:
        rebuilt = load_dataset(f"csv:{path}")
    (note,) = [str(w.message) for w in caught]
    assert "signature does not match this user's cache key" in note and "\n" not in note
    assert np.array_equal(rebuilt.rating, genuine.rating) and not np.all(rebuilt.rating == 1)
    with warnings.catch_warnings():  # the rebuilt entry is signed again and used silently
        warnings.simplefilter("error")
        assert np.array_equal(load_dataset(f"csv:{path}").rating, genuine.rating)


def test_an_entry_is_valid_only_for_the_source_it_was_parsed_from(tmp_path: Path) -> None:
    first = ratings_csv(tmp_path / "a.csv")
    load_dataset(f"csv:{first}")
    (entry_a,) = (tmp_path / "parsed").glob("*.arrow")
    other = write(tmp_path / "b.csv", "user,item,rating\n1,1,2\n2,1,5\n")
    truth = load_dataset(f"csv:{other}")
    (entry_b,) = set((tmp_path / "parsed").glob("*.arrow")) - {entry_a}
    entry_b.write_bytes(entry_a.read_bytes())  # a genuine entry, moved under another source
    with pytest.warns(DataWarning, match="signature does not match"):
        again = load_dataset(f"csv:{other}")
    assert again.rating.tolist() == truth.rating.tolist()


def test_the_cache_key_is_private_and_a_shared_key_turns_the_cache_off(tmp_path: Path) -> None:
    path = ratings_csv(tmp_path / "r.csv")
    load_dataset(f"csv:{path}")
    key = tmp_path / "parsed" / cache.KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    assert cache.secret_key(tmp_path / "parsed") == key.read_bytes()  # made once, then kept
    key.chmod(0o644)
    with pytest.warns(DataWarning, match=r"parse cache not used: the key file .* mode 0600"):
        data = load_dataset(f"csv:{path}")
    assert data.n_ratings > 0
    key.unlink()  # a fresh key: old entries no longer verify, and are rebuilt once
    with pytest.warns(DataWarning, match="signature does not match"):
        load_dataset(f"csv:{path}")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_cache_entries_hold_no_pickles(tmp_path: Path) -> None:
    import pyarrow as pa

    path = ratings_csv(tmp_path / "r.csv")
    load_dataset(f"csv:{path}")
    (entry,) = (tmp_path / "parsed").glob("*.arrow")
    with pa.memory_map(str(entry), "r") as stream:
        table = pa.ipc.open_file(stream).read_all()
    assert all(pa.types.is_large_list(field.type) for field in table.schema)
    assert b"pickle" not in entry.read_bytes() and entry.read_bytes()[:6] == b"ARROW1"


def test_the_parse_cache_is_keyed_by_content_not_by_file_time(tmp_path: Path) -> None:
    path = ratings_csv(tmp_path / "r.csv")
    load_dataset(f"csv:{path}")
    path.write_bytes(path.read_bytes())  # same content, new modification time
    load_dataset(f"csv:{path}")
    assert len(list((tmp_path / "parsed").glob("*.arrow"))) == 1


def test_errors_quote_only_a_short_excerpt_of_a_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path / "long.csv", "user,item,rating\n1,2,3\n1,3," + "x" * 100_000 + "\n")
    with pytest.raises(DataError) as info:
        load_dataset(f"csv:{path}")
    message = str(info.value)
    assert "line 3: column 'rating' must be a finite number" in message
    assert len(message) < len(str(path)) + 160 and "(100000 characters)" in message
    wide = write(tmp_path / "wide.csv", ",".join(f"col{n}" for n in range(5000)) + "\n1\n")
    with pytest.raises(DataError) as info:
        load_dataset(f"csv:{wide}")
    assert "(5000 in all)" in str(info.value) and len(str(info.value)) < 600
