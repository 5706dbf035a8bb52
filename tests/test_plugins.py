"""Learners from other packages: declared as ``bench.learners`` entry points like the built-ins,
they run in a suite and pass the public contract helper; a name clash with a built-in is refused;
and ``bench`` itself never imports the ``learners`` package."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.errors import RegistryError
from bench.protocol.learner_registry import LEARNER_GROUP, _check_learner
from bench.provenance import PROJECT_ROOT
from bench.registry import Registry

PLUGIN_MODULE = '''
"""A plug-in learner package."""

from __future__ import annotations

import torch

from bench.protocol.learner import Learner, clamp_to_scale


class SupportMean(Learner):
    """Each task's mean support rating, shrunk towards the mean training rating."""

    def fit(self, train, *, rng, device, budget=None):
        self.mean, self.scale = float(train.rating.mean()), train.rating_scale

    def predict(self, tasks):
        weight = tasks.support_mask.float()
        total = (tasks.support_ratings * weight).sum(1) + 3 * self.mean
        level = total / (weight.sum(1) + 3)
        return clamp_to_scale(level[:, None].expand(tasks.query_items.shape).clone(), self.scale)
'''


def install_plugin(root: Path, dist: str, module: str, entries: dict[str, str]) -> None:
    """Lay out a package as pip installs it: the module and a ``*.dist-info`` with entry points."""
    (root / module).mkdir(parents=True)
    (root / module / "__init__.py").write_text(PLUGIN_MODULE)
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (info / "entry_points.txt").write_text(f"[{LEARNER_GROUP}]\n{lines}")


@pytest.fixture()
def plugin_path(tmp_path: Path) -> Path:
    install_plugin(
        tmp_path,
        "support-mean-plugin",
        "support_mean_plugin",
        {"support-mean": "support_mean_plugin:SupportMean"},
    )
    return tmp_path


def fresh_learner_registry() -> Registry[type]:
    """A registry reading the entry points on sys.path now (the global one has read them)."""
    return Registry("learner", _check_learner, LEARNER_GROUP)


def test_plugin_is_listed_beside_the_built_ins(
    plugin_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(plugin_path))
    registry = fresh_learner_registry()
    assert {"support-mean", "mf", "maml"} <= set(registry.names())
    assert "support-mean-plugin" in registry.origin("support-mean")
    assert "built in" in registry.origin("mf") and "built in" not in registry.origin("support-mean")
    assert registry.get("support-mean").__name__ == "SupportMean"


def test_plugin_named_like_a_built_in_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin(tmp_path, "clash-plugin", "clash_plugin", {"mf": "clash_plugin:SupportMean"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = fresh_learner_registry()
    with pytest.raises(RegistryError) as raised:
        registry.names()
    with pytest.raises(RegistryError, match="duplicate learner name 'mf'"):
        registry.get("item-mean")  # nothing was half-loaded: every look-up refuses
    message = str(raised.value)
    assert "'mf'" in message
    assert "learners.mf:MatrixFactorisation (entry point of coldstart-bench, built in)" in message
    assert "clash_plugin:SupportMean (entry point of clash-plugin)" in message


def test_code_registration_cannot_shadow_a_built_in() -> None:
    registry = fresh_learner_registry()
    with pytest.raises(
        RegistryError, match=r"duplicate learner name 'item-mean'.*built in.*registered in code"
    ):
        registry.register("item-mean", "support_mean_plugin:SupportMean")


def bench(
    plugin_path: Path, *args: str, code: str | None = None
) -> subprocess.CompletedProcess[str]:
    paths = [str(plugin_path), str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    command = ["-c", code] if code else ["-m", "bench", *args]
    return subprocess.run(
        [sys.executable, *command], capture_output=True, text=True, env=env, timeout=300
    )


def test_plugin_runs_in_a_suite_and_passes_the_contract(plugin_path: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "r.sqlite")
    done = bench(
        plugin_path,
        "run", "--suite", "ci", "--learners", "support-mean,item-mean", "--seeds", "1",
        "--scenarios", "user_cold", "--store", store, "--no-progress",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| support-mean" in done.stdout and "| item-mean" in done.stdout

    listed = bench(plugin_path, "ls", "learners")
    line = next(ln for ln in listed.stdout.splitlines() if ln.startswith("support-mean"))
    assert "Each task's mean support rating" in line and "support-mean-plugin" in line

    check = textwrap.dedent(
        """
        from bench.evaluation.contract import check_learner
        report = check_learner("support-mean", expected={"rmse": (0.7, 1.1)})
        print(round(report.metrics[("user_cold", 5)]["rmse"], 3))
        """
    )
    checked = bench(plugin_path, code=check)
    assert checked.returncode == 0, checked.stderr
    assert 0.7 <= float(checked.stdout) <= 1.1


def test_clashing_plugin_makes_the_cli_exit_2_naming_both(tmp_path: Path) -> None:
    install_plugin(tmp_path, "clash-plugin", "clash_plugin", {"mf": "clash_plugin:SupportMean"})
    done = bench(tmp_path, "ls", "learners")
    assert done.returncode == 2
    assert "coldstart-bench, built in" in done.stderr and "clash-plugin" in done.stderr
    assert "Traceback" not in done.stderr


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
    return found


def test_bench_never_imports_the_learners_package() -> None:
    for path in sorted((PROJECT_ROOT / "bench").rglob("*.py")):
        wrong = {m for m in imported_modules(path) if m == "learners" or m.startswith("learners.")}
        assert not wrong, f"{path.relative_to(PROJECT_ROOT)} imports {sorted(wrong)}"
    assert not imported_modules(PROJECT_ROOT / "learners" / "__init__.py")


def test_metadata_without_the_built_ins_says_how_to_refresh_it() -> None:
    # What an installation made before an entry-point group existed looks like.
    with pytest.raises(RegistryError, match=r"no built-in widgets.*`make setup`"):
        Registry("widget", None, "bench.widgets").names()
