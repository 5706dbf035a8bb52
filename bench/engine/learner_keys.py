"""What a cell key needs of each learner, found without importing it where that can be done:
its code fingerprint (from its entry point's declaration) and the hash of its config (remembered
from an earlier build of the same config by the same code). A run whose every cell is stored
then never imports a learner, nor torch."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bench.config import stable_hash
from bench.data.loaders.sources import parsed_cache_dir
from bench.protocol.learner_registry import LEARNERS, learner_class
from bench.provenance import code_fingerprint, code_of, learner_fingerprint


def learner_code(name: str) -> str:
    """The fingerprint of learner ``name``'s code. A learner declared by an entry point as
    ``"module:Class"`` is read from its source files and its distribution's version, without
    importing it; one registered in code is fingerprinted from its class."""
    target, distribution = LEARNERS.declaration(name)
    if isinstance(target, str) and distribution is not None:
        module, _, qualname = target.partition(":")
        return code_of(module, qualname, [distribution])
    return learner_fingerprint(learner_class(name))


def config_cache_dir() -> Path:
    """Where config hashes are remembered: beside the parsed datasets (``$BENCH_CACHE_DIR``)."""
    return parsed_cache_dir() / "learner-configs"


def learner_config_hash(name: str, overrides: dict[str, Any] | None) -> str:
    """The hash of learner ``name``'s config built from ``overrides`` (checked by building the
    learner). The same overrides under the same learner and harness code always give the same
    hash, so it is remembered on disk under a key of all three and read back instead of
    importing the learner again; an unreadable or damaged entry is rebuilt."""
    try:
        given = json.dumps(overrides or {}, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):  # values JSON cannot tell apart: build every time
        return _built(name, overrides)
    key = stable_hash(
        {"learner": name, "code": learner_code(name), "harness": code_fingerprint(), "set": given},
        length=24,
    )
    path = config_cache_dir() / f"{key}.json"
    with contextlib.suppress(OSError, ValueError):
        entry = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(entry, dict) and entry.get("learner") == name:
            value = entry.get("config_hash")
            if isinstance(value, str) and value.isalnum():
                return value
    value = _built(name, overrides)
    _remember(path, {"learner": name, "config_hash": value})
    return value


def _built(name: str, overrides: dict[str, Any] | None) -> str:
    from bench.protocol.learner import make_learner  # imports torch

    return make_learner(name, overrides).config_hash


def _remember(path: Path, entry: dict[str, str]) -> None:
    """Write ``entry`` whole or not at all; a cache that cannot be written is only slower."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(entry, out)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
