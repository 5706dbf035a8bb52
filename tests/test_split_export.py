"""``bench split export`` and ``bench split verify``: every shipped protocol round-trips, in each
format; a flipped rating, a moved rating, a changed seed and an edited file are differences (exit
1); a changed or unknown dataset or protocol is an error (exit 2); links planted in the output
folder are refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.protocol import PROTOCOLS

from real_formats import shipped_card, write, write_ml100k

SYNTHETIC = """
name = "{name}"
datasets = ["synthetic"]
learners = ["global-mean"]
seeds = 2
[protocol]
{protocol}
[dataset.synthetic]
n_users = 150
n_items = 100
"""
PROTOCOL_TABLES = {
    "cold-random": 'name = "cold-random"\nsupport_sizes = [1, 5]\nquery_size = 5',
    "temporal": 'name = "temporal"\nsupport_sizes = [2, "all"]\nquery_size = 5',
    "melu": 'name = "melu"',
    "melu-paper": 'name = "melu-paper"',
    "recbole-metarec": 'name = "recbole-metarec"',
}


def synthetic_suite(folder: Path, protocol: str) -> Path:
    text = SYNTHETIC.format(name=f"export-{protocol}", protocol=PROTOCOL_TABLES[protocol])
    return write(folder / f"{protocol}.toml", text)


@pytest.fixture(scope="module")
def folds_suite(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A suite on a generated ML-100K (the shipped card's parser and folds) under ``predefined``."""
    root = tmp_path_factory.mktemp("folds")
    write_ml100k(root / "data" / "ml-100k")
    card = shipped_card("ml-100k", root / "cards")
    text = (
        f'name = "export-predefined"\ndatasets = ["{card}"]\nlearners = ["global-mean"]\n'
        'seeds = 2\nscenarios = ["warm"]\n[protocol]\nname = "predefined"\n'
    )
    return write(root / "predefined.toml", text), root / "data"


def export(suite: Path | str, out: Path, *extra: str) -> int:
    return main(["split", "export", "--suite", str(suite), "--out", str(out), *extra])


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))


@pytest.mark.parametrize("protocol", sorted(PROTOCOL_TABLES))
def test_every_synthetic_protocol_round_trips(
    protocol: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "split"
    assert export(synthetic_suite(tmp_path, protocol), out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["protocol"]["name"] == protocol
    assert [s["seed"] for s in manifest["splits"]] == [0, 1]
    for path, digest in manifest["files"].items():
        assert hashlib.sha256((out / path).read_bytes()).hexdigest() == digest
    capsys.readouterr()
    assert main(["split", "verify", str(out)]) == 0
    assert "2 split(s) recomputed" in capsys.readouterr().out


def test_the_predefined_folds_round_trip(
    folds_suite: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite, data = folds_suite
    out = tmp_path / "split"
    assert export(suite, out, "--data-dir", str(data)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["scenarios"] == ["warm"]
    fold = pd.read_csv(out / "ml-100k" / "seed-1" / "warm" / "k-all" / "query.csv")
    base = pd.read_csv(data / "ml-100k" / "u2.test", sep="\t", names=["u", "i", "r", "t"])
    assert len(fold) == len(base)  # seed 1 is fold u2: its test file is the query
    assert main(["split", "verify", str(out), "--data-dir", str(data)]) == 0
    assert "identical" in capsys.readouterr().out


def test_every_shipped_protocol_has_a_round_trip_test() -> None:
    built_in = {n for n in PROTOCOLS.names() if "built in" in PROTOCOLS.origin(n)}
    assert built_in <= {*PROTOCOL_TABLES, "predefined"}


@pytest.mark.parametrize("fmt", ["parquet", "recbole"])
def test_the_other_formats_round_trip(
    fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "split"
    assert (
        export(synthetic_suite(tmp_path, "cold-random"), out, "--format", fmt, "--seed", "1") == 0
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == fmt and [s["seed"] for s in manifest["splits"]] == [1]
    assert main(["split", "verify", str(out)]) == 0
    if fmt == "parquet":
        train = pd.read_parquet(out / "synthetic" / "seed-1" / "train.parquet")
        assert list(train.columns) == ["user", "item", "rating", "timestamp"]
        assert len(train) == manifest["splits"][0]["counts"]["train"]
        return
    base = out / "synthetic" / "seed-1" / "recbole" / "warm-k1" / "warm-k1"
    header = Path(f"{base}.train.inter").read_text().splitlines()[0]
    assert header == "user_id:token\titem_id:token\trating:float\ttimestamp:float"
    test_rows = len(Path(f"{base}.test.inter").read_text().splitlines()) - 1
    assert test_rows == manifest["splits"][0]["counts"]["warm/k-1/query"]
    items = Path(f"{base}.item").read_text().splitlines()
    assert items[0] == "item_id:token\tfeatures:float_seq" and len(items) == 1 + 100
    assert any("load_col" in note for note in manifest["notes"])


@pytest.fixture()
def exported(tmp_path: Path) -> Path:
    out = tmp_path / "split"
    assert export(synthetic_suite(tmp_path, "cold-random"), out, "--seed", "0") == 0
    return out


def verify_output(out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(["split", "verify", str(out)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_flipped_rating_is_a_difference(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = exported / "synthetic" / "seed-0" / "train.csv"
    train = pd.read_csv(path, dtype={"user": str, "item": str})
    row = train.iloc[7]
    train.loc[7, "rating"] = 6.0 - row["rating"] if row["rating"] != 3 else 5.0
    train.to_csv(path, index=False)
    code, out = verify_output(exported, capsys)
    assert code == 1
    assert "synthetic/seed-0/train.csv: its SHA-256 is not the manifest's" in out
    assert f"1 row(s) in the file only: user={row['user']}, item={row['item']}" in out
    assert "1 row(s) recomputed only" in out


def test_a_rating_moved_from_query_to_training_is_a_difference(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = exported / "synthetic" / "seed-0"
    query = pd.read_csv(folder / "warm" / "k-1" / "query.csv", dtype=str)
    train = pd.read_csv(folder / "train.csv", dtype=str)
    moved = query.iloc[0]
    query.iloc[1:].to_csv(folder / "warm" / "k-1" / "query.csv", index=False)
    train = pd.concat([train, moved[["user", "item", "rating", "timestamp"]].to_frame().T])
    train.to_csv(folder / "train.csv", index=False)
    code, out = verify_output(exported, capsys)
    assert code == 1
    assert (
        f"train.csv: 1 row(s) in the file only: user={moved['user']}, item={moved['item']}" in out
    )
    assert "warm/k-1/query.csv: 1 row(s) recomputed only" in out


def test_a_changed_seed_is_a_difference(exported: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = exported / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["splits"][0]["seed"] = 1
    path.write_text(json.dumps(manifest))
    code, out = verify_output(exported, capsys)
    assert code == 1
    assert "manifest counts" in out and "train.csv:" in out and "recomputed only" in out


def test_edited_unlisted_and_missing_files_are_differences(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = exported / "synthetic" / "seed-0"
    (folder / "item_means.csv").unlink()
    (folder / "notes.txt").write_text("added later\n")
    code, out = verify_output(exported, capsys)
    assert code == 1
    assert "synthetic/seed-0/item_means.csv: missing" in out
    assert "synthetic/seed-0/notes.txt: not listed in the manifest" in out


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hash", "0000000000000000", "protocol 'cold-random' changed since the export"),
        ("version", 1, "protocol 'cold-random' changed since the export"),
        ("params", {"name": "no-such-protocol"}, "protocol 'no-such-protocol' is unknown"),
    ],
)
def test_a_changed_or_unknown_protocol_is_an_error(
    exported: Path, capsys: pytest.CaptureFixture[str], field: str, value: object, message: str
) -> None:
    path = exported / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["protocol"][field] = value
    path.write_text(json.dumps(manifest))
    code, out = verify_output(exported, capsys)
    assert code == 2 and message in out


def test_a_changed_or_unknown_dataset_is_an_error(
    exported: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = exported / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["datasets"]["synthetic"]["options"]["n_users"] = 151
    path.write_text(json.dumps(manifest))
    code, out = verify_output(exported, capsys)
    assert code == 2 and "dataset 'synthetic' changed since the export" in out
    manifest["splits"][0]["dataset"] = "no-such-dataset"
    path.write_text(json.dumps(manifest))
    code, out = verify_output(exported, capsys)
    assert code == 2 and "dataset 'no-such-dataset' cannot be loaded here" in out


def test_links_in_the_output_folder_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = synthetic_suite(tmp_path, "cold-random")
    out = tmp_path / "split"
    assert export(suite, out, "--seed", "0") == 0  # an earlier export may be written over
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(out / "synthetic")
    (out / "synthetic").symlink_to(elsewhere, target_is_directory=True)
    assert export(suite, out, "--seed", "0") == 2
    assert "'synthetic' is a link or not a folder" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []
    (out / "synthetic").unlink()
    victim = tmp_path / "victim.json"
    victim.write_text("keep me")
    (out / "manifest.json").unlink()
    (out / "manifest.json").symlink_to(victim)
    assert export(suite, out, "--seed", "0") == 2
    assert "the file is a link" in capsys.readouterr().err
    assert victim.read_text() == "keep me"


def test_tables_from_a_provider_are_written_hashed_and_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The extension point for ranking candidates: a provider's table travels like the others."""
    from bench.engine import split_export

    def first_items(dataset, split, tables, settings):  # type: ignore[no-untyped-def]
        assert settings["name"] == "export-cold-random"
        items = tables.tables["items"]["id"].head(3)
        return {"candidates": pd.DataFrame({"item": items})}

    monkeypatch.setattr(split_export, "EXTRA_TABLES", [first_items])
    out = tmp_path / "split"
    assert export(synthetic_suite(tmp_path, "cold-random"), out, "--seed", "0") == 0
    path = out / "synthetic" / "seed-0" / "candidates.csv"
    manifest = json.loads((out / "manifest.json").read_text())
    assert "synthetic/seed-0/candidates.csv" in manifest["files"]
    assert main(["split", "verify", str(out)]) == 0
    path.write_text("item\n0\n1\n7\n")
    capsys.readouterr()
    assert main(["split", "verify", str(out)]) == 1
    assert "candidates.csv: 1 row(s) in the file only: item=7" in capsys.readouterr().out


def test_a_folder_holding_other_files_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "split"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    assert export(synthetic_suite(tmp_path, "cold-random"), out, "--seed", "0") == 2
    assert "holds other files" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]
