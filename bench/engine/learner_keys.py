"""What a cell key needs of each learner, found without importing it where that can be done:
its code fingerprint (from its entry point's declaration) and the hash of its config (remembered
from an earlier build of the same config by the same code). A run whose every cell is stored
then never imports a learner, nor torch."""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from bench.config import stable_hash
from bench.data.loaders.cache import UntrustedKey, secret_key, signature
from bench.data.loaders.sources import parsed_cache_dir
from bench.errors import DataWarning
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
    """Where config hashes are remembered: beside the parsed datasets (``$BENCH_CACHE_DIR``),
    signed with the same per-user key."""
    return parsed_cache_dir() / "learner-configs"


def learner_config_hash(
    name: str, overrides: dict[str, Any] | None, harness: str | None = None
) -> str:
    """The hash of learner ``name``'s config built from ``overrides`` (checked by building the
    learner). The same overrides under the same learner and harness code always give the same
    hash, so it is remembered on disk under a key of all three, signed with this user's cache
    key, and read back instead of importing the learner again. An entry that does not parse or
    whose signature does not match is rebuilt with a warning; without a usable key nothing is
    remembered. ``harness`` is :func:`bench.provenance.code_fingerprint`, when the caller has it
    already (a plan asks for every learner)."""
    try:
        given = json.dumps(overrides or {}, sort_keys=True, allow_nan=False)
        secret = secret_key(parsed_cache_dir())
    except (TypeError, ValueError, OSError, UntrustedKey):  # build every time
        return _built(name, overrides)
    key = stable_hash(
        {
            "learner": name,
            "code": learner_code(name),
            "harness": harness or code_fingerprint(),
            "set": given,
        },
        length=24,
    )
    path = config_cache_dir() / f"{key}.json"
    if path.is_file():
        found = _read(path, secret, key, name)
        if found is not None:
            return found
        warnings.warn(
            f"learner config cache entry {path} is not used: it does not parse or its signature "
            "does not match; rebuilding it",
            DataWarning,
            stacklevel=2,
        )
    value = _built(name, overrides)
    _remember(path, {"learner": name, "config_hash": value, "signature": _sign(secret, key, value)})
    return value


def _sign(secret: bytes, key: str, value: str) -> str:
    return signature(secret, value, f"learner-config|{key}")


def _read(path: Path, secret: bytes, key: str, name: str) -> str | None:
    with contextlib.suppress(OSError, ValueError):
        entry = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(entry, dict) and entry.get("learner") == name:
            value, signed = entry.get("config_hash"), entry.get("signature")
            if isinstance(value, str) and isinstance(signed, str):
                return value if hmac.compare_digest(_sign(secret, key, value), signed) else None
    return None


def _built(name: str, overrides: dict[str, Any] | None) -> str:
    from bench.protocol.learner_registry import make_learner  # the class imports torch

    return make_learner(name, overrides).config_hash


def _remember(path: Path, entry: dict[str, str]) -> None:
    """Write ``entry`` whole or not at all; a cache that cannot be written is only slower."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(entry, out)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
