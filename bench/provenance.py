"""Where a run came from: code, packages, machine and devices."""

from __future__ import annotations

import ast
import functools
import hashlib
import platform
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, packages_distributions, version
from pathlib import Path
from typing import Any

import bench
from bench.processes import identity
from bench.registry import module_source

KEY_PACKAGES = ("numpy", "scipy", "torch", "learn2learn", "coldstart-bench")
PROJECT_ROOT = Path(bench.__file__).resolve().parent.parent


@functools.cache
def _installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` (None when it is not installed), looked up once
    per process: :func:`importlib.metadata.version` searches every folder on the path each time,
    and a plan asks for the same few distributions once per learner and per fingerprint."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        found[name] = _installed_version(name) or "absent"
    return found


# The folders whose code can change what a cell computes. Reports, the store, the CLI and the API
# only read or present cells, so editing them keeps stored cells valid.
EVALUATION_PATH = ("data", "protocol", "evaluation", "engine")
FACES = ("api.py", "__main__.py")


def _source_files() -> list[Path]:
    root = PROJECT_ROOT / "bench"
    files = [p for p in root.glob("*.py") if p.name not in FACES]  # the ground floor
    for folder in EVALUATION_PATH:
        files += [p for p in (root / folder).rglob("*.py") if "__pycache__" not in p.parts]
    return sorted(files)


def code_fingerprint() -> str:
    """A hash of the harness code on the evaluation path and of key package versions, so edited
    code never reuses stored results; each learner adds its own (:func:`learner_fingerprint`)."""
    files = []
    for path in _source_files():
        stat = path.stat()
        files.append((path, stat.st_mtime_ns, stat.st_size))
    versions = tuple(sorted(package_versions().items()))
    return _hashed_sources(tuple(files), versions)


@functools.lru_cache(maxsize=64)
def _hashed_sources(
    files: tuple[tuple[Path, int, int], ...], versions: tuple[tuple[str, str], ...]
) -> str:
    """The harness fingerprint of ``files`` (path, modification time, size) and ``versions``;
    remembered while every file keeps its size and modification time, as the parsed imports of
    :func:`_imported_modules` are (a plan, a run and each suite check ask for it again)."""
    digest = hashlib.sha256()
    for path, _, _ in files:
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
        digest.update(path.read_bytes())
    for name, ver in versions:
        if name != "coldstart-bench":
            digest.update(f"{name}={ver}".encode())
    return digest.hexdigest()[:16]


def _imported_modules(path: Path, module: str, top: str) -> frozenset[str]:
    """Modules of package ``top`` that the source of ``module`` imports (relative ones resolved);
    remembered while the file keeps its size and modification time (a plan asks twice per
    learner, and parsing is most of a fingerprint's cost)."""
    stat = path.stat()
    return _parsed_imports(path, stat.st_mtime_ns, stat.st_size, module, top)


@functools.lru_cache(maxsize=4096)
def _parsed_imports(path: Path, _mtime: int, _size: int, module: str, top: str) -> frozenset[str]:
    tree = ast.parse(path.read_bytes())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # submodules, if any
    return frozenset(name for name in found if name == top or name.startswith(top + "."))


def _module_closure(module: str) -> list[Path]:
    """The source files of ``module``, the packages above it and every module of its own
    top-level package that it imports, directly or not (found without importing any of them)."""
    top = module.split(".")[0]
    seen: set[str] = set()
    files: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_source(name)
        if path is None:
            continue
        files.add(path)
        parts = name.split(".")
        pending += [".".join(parts[:i]) for i in range(1, len(parts))]
        pending += sorted(_imported_modules(path, name, top))
    return sorted(files)


@functools.cache
def _distributions() -> Mapping[str, list[str]]:
    return packages_distributions()


def code_of(module: str, qualname: str, distributions: Iterable[str]) -> str:
    """A hash of the code of ``module:qualname`` (its module and what it imports from its own
    package) and of the versions of ``distributions``, read from the sources without importing
    anything: the fingerprint of a learner (:func:`learner_fingerprint`)."""
    digest = hashlib.sha256(f"{module}:{qualname}".encode())
    for path in _module_closure(module):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for dist in sorted(distributions):
        found = _installed_version(dist)
        if found is not None:
            digest.update(f"{dist}={found}".encode())
    return digest.hexdigest()[:16]


def learner_fingerprint(learner: type) -> str:
    """A hash of a learner's own code (its module and what it imports from its package) and of
    the version of each distribution that provides its package, so an edited learner, built-in or
    plug-in, never reuses stored cells while the other learners' cells stay valid. A learner
    declared by an entry point is fingerprinted from its declaration instead
    (:func:`bench.engine.learner_keys.learner_code`), without importing it."""
    top = learner.__module__.split(".")[0]
    return code_of(learner.__module__, learner.__qualname__, _distributions().get(top, []))


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_names(devices: list[str]) -> dict[str, str]:
    """What each device is. torch is asked only where it is loaded already: a run that computes
    loads it before it records itself, and one whose every cell is stored names the CPU alone."""
    torch = sys.modules.get("torch")
    names: dict[str, str] = {}
    for dev in devices:
        if dev == "cpu":
            threads = f" ({torch.get_num_threads()} torch threads)" if torch is not None else ""
            names[dev] = f"{cpu_name()}{threads}"
        elif torch is not None and dev.startswith("cuda") and torch.cuda.is_available():
            names[dev] = torch.cuda.get_device_name(torch.device(dev))
    return names


def collect(devices: list[str]) -> dict[str, Any]:
    return {
        "git": git_commit(),
        "packages": package_versions(),
        "code_fingerprint": code_fingerprint(),
        "devices": device_names(devices),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "argv": sys.argv,
        **identity(),  # host, pid and start time: a run whose process died shows as interrupted
    }
