"""Where a run came from: code, packages, machine and devices."""

from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import bench
from bench.processes import identity

KEY_PACKAGES = ("numpy", "scipy", "torch", "learn2learn", "coldstart-bench")
PROJECT_ROOT = Path(bench.__file__).resolve().parent.parent


def package_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def code_fingerprint() -> str:
    """A hash of the project's own source and key package versions, so edited code never reuses
    stored results."""
    digest = hashlib.sha256()
    for package in ("bench", "learners"):
        root = PROJECT_ROOT / package
        for path in sorted(root.rglob("*")):
            if path.suffix in (".py", ".toml") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(PROJECT_ROOT)).encode())
                digest.update(path.read_bytes())
    for name, ver in sorted(package_versions().items()):
        if name != "coldstart-bench":
            digest.update(f"{name}={ver}".encode())
    return digest.hexdigest()[:16]


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
    import torch  # here, not at the top: dataset cards read PROJECT_ROOT without needing torch

    names: dict[str, str] = {}
    for dev in devices:
        if dev == "cpu":
            names[dev] = f"{cpu_name()} ({torch.get_num_threads()} torch threads)"
        elif dev.startswith("cuda") and torch.cuda.is_available():
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
