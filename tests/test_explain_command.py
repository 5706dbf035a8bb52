"""``bench explain`` and ``api.explain`` on a stored run of the planted dataset: the refit is the
scored model, exports are reproducible, learners without fields are told apart, bad arguments
name their flag, and stored checks reach the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bench import api
from bench.cli import main
from bench.errors import BenchError
from bench.results.explanations import checks_path, read_checks

pytest.importorskip("captum")

SUITE = """
name = "planted-explain"
datasets = ["planted"]
scenarios = ["user_cold"]
learners = ["melu", "fine-tune", "mf", "item-mean"]
seeds = 1
metrics = ["rmse", "mae"]

[protocol]
name = "cold-random"
support_sizes = [10]
query_size = 10

[learner.melu]
embedding_dim = 8
hidden = [16, 16]
epochs = 20
outer_lr = 0.005
inner_lr = 0.001

[learner.fine-tune]
embedding_dim = 8
hidden = [16, 16]
epochs = 10
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("explain")
    suite = folder / "planted.toml"
    suite.write_text(SUITE, encoding="utf-8")
    path = folder / "results.sqlite"
    assert main(["run", "--suite", str(suite), "--store", str(path), "--no-progress"]) == 0
    return path


def explain(store: Path, *args: str) -> int:
    return main(["explain", "--store", str(store), *args])


def test_the_listing_marks_learners_without_fields(store: Path, capsys) -> None:
    assert explain(store, "--list") == 0
    out = capsys.readouterr().out
    assert "item-mean: not applicable: no feature fields" in out
    for name in ("melu", "fine-tune", "mf"):
        assert f"{name}: feature fields" in out


def test_asking_for_a_learner_without_fields_is_an_error(store: Path, capsys) -> None:
    assert explain(store, "--learner", "item-mean") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "--learner item-mean: not applicable: no feature fields" in err


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--learner", "melu", "--method", "lime"], "--method"),
        (["--learner", "melu", "--k", "7"], "--k"),
        (["--learner", "melu", "--scenario", "cold"], "--scenario"),
        (["--learner", "melu", "--task", "no-such-user"], "--task"),
        (["--learner", "no-such-learner"], "--learner"),
        (["--learner", "melu", "--run", "no-such-run"], "--run"),
        (["--learner", "melu", "--seed", "7"], "--seed"),
        (["--learner", "melu", "--check", "--planted", "user:height"], "--planted"),
        (["--learner", "melu", "--tasks", "0"], "--tasks"),
    ],
)
def test_bad_arguments_are_one_line_naming_the_flag(store: Path, capsys, args, flag) -> None:
    assert explain(store, *args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and flag in err


def test_the_refit_is_the_scored_model_and_exports_are_reproducible(
    store: Path, tmp_path: Path
) -> None:
    outputs = []
    for n in (1, 2):
        out = tmp_path / f"out{n}"
        assert explain(store, "--learner", "melu", "--tasks", "3", "--out", str(out)) == 0
        outputs.append(out)
    meta = json.loads((outputs[0] / "explanation.json").read_text(encoding="utf-8"))
    assert meta["reproduced"]["refit_rmse"] == pytest.approx(
        meta["reproduced"]["stored_rmse"], abs=1e-6
    )
    for name in ("fields.csv", "support.csv", "explanation.json"):
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes()
    rows = list(csv.DictReader((outputs[0] / "fields.csv").open(encoding="utf-8")))
    assert len(rows) == 30  # 3 tasks of 10 query items
    fields = meta["fields"]
    strength = {f: sum(abs(float(r[f])) for r in rows) for f in fields}
    assert max(strength, key=strength.get) == "user:age"
    for r in rows:  # prediction = baseline prediction + what the fields add, not exactly (ablation)
        assert float(r["prediction"]) != float(r["baseline_prediction"])


def test_support_attributions_alone_through_the_api(store: Path) -> None:
    found = api.explain("mf", store=store, tasks=2, fields=False)
    assert found.not_applicable is None and found.rows == []
    assert len(found.support) > 0 and any(abs(s["moved"]) > 0.01 for s in found.support)
    with pytest.raises(
        BenchError, match=r"api\.explain\(learner=\.\.\.\) item-mean: not applicable"
    ):
        api.explain("item-mean", store=store)
    with pytest.raises(BenchError, match=r"api\.explain\(method=\.\.\.\)"):
        api.explain("melu", store=store, method="lime")


def test_checks_are_stored_beside_the_store_and_reported(
    store: Path, tmp_path: Path, capsys
) -> None:
    # --check alone checks every learner of the run that exposes feature fields.
    assert explain(store, "--check", "--check-seeds", "1") == 0
    out = capsys.readouterr().out
    assert "item-mean on planted: not applicable: no feature fields" in out
    entries = {e["learner"]: e for e in read_checks(store)}
    assert sorted(entries) == ["fine-tune", "melu", "mf"]
    for name in ("fine-tune", "melu"):
        assert entries[name]["checked"], entries[name]["passed"]
        assert entries[name]["planted"]["top1_rate"] >= 0.9
    report = tmp_path / "report"
    assert main(["report", "--store", str(store), "--out", str(report), "--format", "md"]) == 0
    text = (report / "report.md").read_text(encoding="utf-8")
    assert "## Explanations" in text and "| fine-tune | planted | user_cold | yes |" in text
    assert "The meta-learners' explanations (melu) were " in text


def test_a_damaged_checks_file_is_refused_with_its_name(
    store: Path, tmp_path: Path, capsys
) -> None:
    path = checks_path(store)
    kept = path.read_bytes() if path.exists() else None
    try:
        path.write_text(json.dumps({"version": 1, "checks": [{"learner": 3}]}), encoding="utf-8")
        with pytest.raises(BenchError, match=r"explanations\.json, entry 1"):
            read_checks(store)
        out = tmp_path / "report"
        assert main(["report", "--store", str(store), "--out", str(out), "--format", "md"]) == 2
        assert "explanations.json" in capsys.readouterr().err
    finally:
        if kept is None:
            path.unlink()
        else:
            path.write_bytes(kept)
