"""A learner's config hash is remembered from its first build, keyed by the overrides and by the
learner's and the harness's code, so that planning a run need not import the learner again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.data.loaders.cache import secret_key, signature
from bench.engine.learner_keys import config_cache_dir, learner_config_hash
from bench.errors import ConfigError, DataWarning
from bench.protocol.learner_registry import make_learner


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


CASES = [
    ("mf", None),
    ("mf", {"rank": 4}),
    ("mf", {"rank": 4, "max_fit_seconds": 30}),  # a budget is not part of the config
    ("maml", {"meta_steps": 3, "hidden": [8, 4]}),
    ("item-mean", {}),
]


@pytest.mark.parametrize(("name", "overrides"), CASES)
def test_the_remembered_hash_is_the_built_learners(
    name: str, overrides: dict[str, Any] | None
) -> None:
    built = make_learner(name, overrides).config_hash
    assert learner_config_hash(name, overrides) == built  # built and remembered
    assert learner_config_hash(name, overrides) == built  # read back


def test_entries_are_signed_read_back_and_keyed_by_the_overrides() -> None:
    first = learner_config_hash("mf", {"rank": 4})
    (entry,) = list(config_cache_dir().glob("*.json"))
    stored = json.loads(entry.read_text())
    assert (stored["learner"], stored["config_hash"]) == ("mf", first)
    # An entry signed with this user's key is what is read back (the learner is not rebuilt) ...
    key = entry.stem
    secret = secret_key(config_cache_dir().parent)
    signed = signature(secret, "0f" * 8, f"learner-config|{key}")
    entry.write_text(json.dumps({"learner": "mf", "config_hash": "0f" * 8, "signature": signed}))
    assert learner_config_hash("mf", {"rank": 4}) == "0f" * 8
    # ... and other overrides are another entry.
    assert learner_config_hash("mf", {"rank": 5}) == make_learner("mf", {"rank": 5}).config_hash
    assert len(list(config_cache_dir().glob("*.json"))) == 2


def test_an_entry_edited_without_the_key_is_rebuilt_with_a_warning() -> None:
    right = learner_config_hash("mf", {"rank": 4})
    (entry,) = list(config_cache_dir().glob("*.json"))
    stored = json.loads(entry.read_text())
    entry.write_text(json.dumps({**stored, "config_hash": "0f" * 8}))  # the old signature kept
    with pytest.warns(DataWarning, match="is not used"):
        assert learner_config_hash("mf", {"rank": 4}) == right
    assert json.loads(entry.read_text())["config_hash"] == right


@pytest.mark.parametrize("damage", ["", "{not json", '["mf"]', '{"learner": "mf"}', "\x00\xff"])
def test_a_damaged_entry_is_rebuilt_with_a_warning(damage: str) -> None:
    right = learner_config_hash("mf", {"rank": 4})
    (entry,) = list(config_cache_dir().glob("*.json"))
    entry.write_text(damage, encoding="latin-1")
    with pytest.warns(DataWarning, match="is not used"):
        assert learner_config_hash("mf", {"rank": 4}) == right
    assert json.loads(entry.read_text())["config_hash"] == right


def test_bad_overrides_are_an_error_every_time_and_leave_no_entry() -> None:
    for _ in range(2):
        with pytest.raises(ConfigError, match="unknown field 'epochs'"):
            learner_config_hash("mf", {"epochs": 2})
    assert not list(config_cache_dir().glob("*.json"))  # the glob of a missing folder is empty


def test_an_unwritable_cache_only_costs_time(cache: Path) -> None:
    cache.mkdir(parents=True)
    config_cache_dir().write_text("a file where the folder would be")
    assert learner_config_hash("mf", None) == make_learner("mf").config_hash


def test_a_key_others_can_read_turns_the_cache_off(cache: Path) -> None:
    learner_config_hash("mf", None)
    (cache / "cache-key").chmod(0o644)
    for entry in config_cache_dir().glob("*.json"):
        entry.unlink()
    assert learner_config_hash("mf", None) == make_learner("mf").config_hash
    assert not list(config_cache_dir().glob("*.json"))  # nothing remembered under that key
