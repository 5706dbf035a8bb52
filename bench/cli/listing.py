"""What ``bench ls`` shows: every registered name with a one-line description."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from typing import Any

from bench.registry import Registry, first_doc_line

Entries = list[tuple[str, str]]


def _described(registry: Registry[Any], describe: Callable[[Any], str]) -> Entries:
    entries = []
    for name in registry.names():
        try:
            text = registry.describe(name, describe)
        except Exception as exc:  # a broken plug-in must not hide the rest of the listing
            text = f"(unavailable: {type(exc).__name__}: {exc})"
        origin = registry.origin(name)
        if "built in" not in origin and "registered in code" not in origin:
            text += f"  [{origin}]"
        entries.append((name, text))
    return entries


def learners() -> Entries:
    """Learners are described from their sources: importing them would load torch."""
    from bench.protocol.learner_registry import LEARNERS

    return _described(LEARNERS, first_doc_line)


def protocols() -> Entries:
    from bench.protocol import PROTOCOLS

    return _described(PROTOCOLS, first_doc_line)


def datasets() -> Entries:
    from bench.data.cards import dataset_names, get_card

    return [(name, get_card(name).description) for name in dataset_names()]


def suites() -> Entries:
    from bench.engine.suite import SUITES

    entries = []
    for name in SUITES.names():
        path = SUITES.get(name)
        try:
            description = str(
                tomllib.loads(path.read_text(encoding="utf-8")).get("description", "")
            )
        except (OSError, tomllib.TOMLDecodeError) as exc:
            description = f"(unreadable: {exc})"
        entries.append((name, description))
    return entries


def metrics() -> Entries:
    from bench.evaluation.metrics import METRICS
    from bench.evaluation.topn import MEASURES, VIEWS

    in_query = [(name, METRICS.get(name).description) for name in METRICS.names()]
    # Top-N metrics exist at every K a suite's top_k names: listed once per measure and view.
    top_n = [
        (
            f"{measure}@K" + ("/full" if measure == "ndcg" else ""),
            f"{text}; candidates: {VIEWS['full']}",
        )
        for measure, text in MEASURES.items()
    ]
    top_n += [
        (f"{measure}@K/sampled", f"{text}; candidates: {VIEWS['sampled']}")
        for measure, text in MEASURES.items()
    ]
    return in_query + top_n


LISTINGS: dict[str, Callable[[], Entries]] = {
    "learners": learners,
    "datasets": datasets,
    "protocols": protocols,
    "suites": suites,
    "metrics": metrics,
}
