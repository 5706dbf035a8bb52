"""One root seed per run: named streams are independent and stable, nothing reads the global
generators, and a suite's exported rows do not depend on the order of its learners."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.engine.runner import run_suite
from bench.engine.suite import Suite, load_suite
from bench.results.store import ResultStore
from bench.seeding import Seeds

TINY_NET: dict[str, Any] = {"embedding_dim": 8, "hidden": [16]}
TINY: dict[str, dict[str, Any]] = {
    "maml": {**TINY_NET, "meta_steps": 6, "meta_batch": 8, "eval_every": 3},
    "protonet": {**TINY_NET, "meta_steps": 6, "meta_batch": 8, "eval_every": 3, "proto_dim": 4},
    "fine-tune": {**TINY_NET, "epochs": 2, "batch_size": 2048},
    "mf": {"rank": 4, "iterations": 3},
}


def test_named_streams_are_stable_and_independent() -> None:
    root = Seeds(3)
    a = root.numpy("learner", "mf").random(4)
    assert np.array_equal(a, Seeds(3).numpy("learner", "mf").random(4))
    assert np.array_equal(a, root.child("learner").numpy("mf").random(4))
    assert not np.array_equal(a, root.numpy("learner", "maml").random(4))
    assert not np.array_equal(a, Seeds(4).numpy("learner", "mf").random(4))
    assert Seeds(3).child("learner", "mf").root == 3
    first = torch.randn(3, generator=root.torch("init"))
    assert torch.equal(first, torch.randn(3, generator=Seeds(3).torch("init")))
    assert not torch.equal(first, torch.randn(3, generator=Seeds(3).torch("other")))


def suite(learners: tuple[str, ...]) -> Suite:
    return replace(
        load_suite("ci"),
        learners=learners,
        learner={name: TINY[name] for name in learners if name in TINY},
        seeds=(0, 1),
        floors=False,  # these learners alone, in the order given
    )


def exported(path: Path, learners: tuple[str, ...]) -> list[tuple[Any, ...]]:
    with ResultStore(path) as store:
        outcome = run_suite(suite(learners), store, progress=False)
        assert outcome.exit_code == 0, outcome.failed
        rows = store.metric_rows()
    # Everything an export row holds except the run id, with exact values.
    return sorted(tuple(v for k, v in r.items() if k != "run_id") for r in rows)


def test_rows_repeat_exactly_whatever_the_learner_order_and_global_seed(tmp_path: Path) -> None:
    order = ("maml", "item-mean", "protonet", "fine-tune", "mf")
    torch.manual_seed(1)
    np.random.seed(1)
    first = exported(tmp_path / "a.sqlite", order)
    torch.manual_seed(12345)  # a different global state must change nothing
    np.random.seed(12345)
    again = exported(tmp_path / "b.sqlite", order)
    reordered = exported(tmp_path / "c.sqlite", tuple(reversed(order)))
    # seeds x learners x scenarios x k x (8 metrics and tied_share)
    assert len(first) == 2 * 5 * 4 * 2 * 9
    assert first == again
    assert first == reordered
