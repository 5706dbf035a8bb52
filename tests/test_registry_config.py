"""Registry and config errors: duplicates, unknown names with suggestions, unknown fields."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.config import build_config, config_hash
from bench.engine.suite import load_suite
from bench.errors import ConfigError, RegistryError
from bench.protocol.learner_registry import make_learner
from bench.registry import Registry


def test_duplicate_names_raise() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("a", 1)
    with pytest.raises(RegistryError, match="duplicate thing name 'a'"):
        reg.register("a", 2)


def test_unknown_names_suggest_close_matches() -> None:
    reg: Registry[int] = Registry("thing")
    reg.register("matrix", 1)
    with pytest.raises(RegistryError, match="did you mean 'matrix'"):
        reg.get("matrx")


def test_lazy_targets_import_on_first_use() -> None:
    reg: Registry[object] = Registry("thing")
    reg.register("path", "pathlib:Path")
    assert reg.get("path") is Path
    reg.register("broken", "pathlib:NoSuchThing")
    with pytest.raises(RegistryError, match="NoSuchThing"):
        reg.get("broken")


def test_frozen_registry_rejects_new_entries() -> None:
    reg: Registry[int] = Registry("thing")
    reg.freeze()
    with pytest.raises(RegistryError, match="frozen"):
        reg.register("late", 1)


def test_unknown_learner_suggests_the_right_one() -> None:
    with pytest.raises(RegistryError, match="did you mean 'item-mean'"):
        make_learner("item-means")


@dataclass(frozen=True)
class Demo:
    rate: float = 0.1
    steps: int = 3
    name: str = "x"


def test_config_overrides_by_name_and_hashes_change() -> None:
    base = build_config(Demo)
    tuned = build_config(Demo, {"rate": 1, "steps": 5})
    assert tuned.rate == 1 and tuned.steps == 5
    assert config_hash(base) != config_hash(tuned)
    assert config_hash(base) == config_hash(build_config(Demo, {}))


def test_unknown_config_field_names_it_and_lists_valid_ones() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown field 'stepz'.*valid fields: name, rate, steps"
    ):
        build_config(Demo, {"stepz": 4})


def test_wrong_config_type_names_the_field() -> None:
    with pytest.raises(ConfigError, match="field 'steps'"):
        build_config(Demo, {"steps": "many"})
    with pytest.raises(ConfigError, match="field 'steps'"):
        build_config(Demo, {"steps": True})


def test_learner_config_errors_name_the_learner_table() -> None:
    with pytest.raises(ConfigError, match=r"unknown field 'rnak' .*in \[learner.mf\]"):
        make_learner("mf", {"rnak": 4})


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return str(path)


def test_suite_unknown_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key.*'learnerz'"):
        load_suite(write(tmp_path, 'learnerz = ["mf"]\n'))


def test_suite_unknown_scenario_and_learner(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown scenario 'cold'"):
        load_suite(write(tmp_path, 'scenarios = ["cold"]\n'))
    with pytest.raises(RegistryError, match="unknown learner 'mff'"):
        load_suite(write(tmp_path, 'learners = ["mff"]\n'))


def test_suite_learner_table_for_a_learner_not_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[learner.mf\]"):
        load_suite(write(tmp_path, 'learners = ["item-mean"]\n[learner.mf]\nrank = 3\n'))


def test_suite_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=r"unknown dataset 'synthtic'.*did you mean"):
        load_suite(write(tmp_path, 'datasets = ["synthtic"]\n'))


def test_shipped_suites_validate() -> None:
    for name in ("default", "ci"):
        assert load_suite(name).name == name


CHECKED_AS_RUN = """
name = "t"
datasets = ["synthetic"]
scenarios = ["warm"]
learners = ["mf"]
seeds = 1
[learner.mf]
{learner}
[dataset.synthetic]
{dataset}
"""


@pytest.mark.parametrize(
    ("learner", "dataset", "expected"),
    [
        ("reg = nan", "", "field 'reg' in [learner.mf] expects a finite number, got nan"),
        ("reg = inf", "", "field 'reg' in [learner.mf] expects a finite number, got inf"),
        ("reg_floor = -inf", "", "field 'reg_floor' in [learner.mf] expects a finite number"),
        ("", "nusers = 50", "for SyntheticConfig (did you mean 'n_users'?)"),
        ("", 'n_users = "x"', "field 'n_users' in dataset card"),
        ("", "n_users = -5", "n_users must lie in [1, 1000000], got -5"),
    ],
)
def test_validate_checks_learner_numbers_and_dataset_options_as_run_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], learner: str, dataset: str, expected: str
) -> None:
    from bench.cli import main

    path = tmp_path / "suite.toml"
    path.write_text(CHECKED_AS_RUN.format(learner=learner, dataset=dataset), encoding="utf-8")
    for command in (
        ["validate", str(path)],
        ["run", "--suite", str(path), "--no-progress", "--store", str(tmp_path / "s.sqlite")],
    ):
        code = main(command)
        captured = capsys.readouterr()
        assert code == 2, (command, captured)
        assert captured.err.count("\n") == 1 and expected in captured.err, captured.err
