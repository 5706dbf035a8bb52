"""Sanity checks of field attributions: attributions mean something only once they pass them.

- Parameter randomisation (Adebayo et al., NeurIPS 2018): attributions of a model whose weights
  are drawn afresh, all at once and layer by layer from the output down, must differ from the
  trained model's (mean rank correlation below :data:`RANDOMISATION_MAX`).
- Deletion: setting fields to their baseline in attribution order must move the prediction more
  than in a random order (the area over the perturbation curve; gain with a bootstrap CI whose
  lower end is above 0).
- Stability: the same learner fitted from other seeds ranks the fields alike (mean rank
  correlation of the fields' mean absolute attributions at least :data:`STABILITY_MIN`).
- Planted field: on a dataset with a planted field, once ablating that field is confirmed to raise
  the RMSE (the model uses it), it must rank first for at least :data:`PLANTED_MIN` of the
  predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from bench.evaluation.attribution import field_attributions, rank_correlation
from bench.protocol.episodes import TaskBatch
from bench.protocol.explaining import ExplainsFields, FieldView

RANDOMISATION_MAX = 0.5
STABILITY_MIN = 0.5
PLANTED_MIN = 0.9
NOISE_SHARE_MAX = 0.1
CONFIDENCE = 0.95


def mean_rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """The mean over rows of Spearman's correlation between the (signed) attributions of two
    ``[N, F]`` tensors (rows where either is constant are left out; NaN when all are). Signed,
    as in Adebayo et al.: a randomised model that keeps a field's weight but not its direction
    has lost the explanation."""
    values = [rank_correlation(a[i].numpy(), b[i].numpy()) for i in range(a.shape[0])]
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def randomisation(
    learner: ExplainsFields,
    tasks: TaskBatch,
    trained: torch.Tensor,
    *,
    method: str = "ablation",
    seed: int = 0,
) -> dict[str, float]:
    """Rank correlation of trained and randomised-model attributions: ``all`` layers at once,
    and ``top-k`` for the k layers nearest the output (a cascade)."""
    layers = learner.parameter_layers
    out: dict[str, float] = {}
    steps: list[tuple[str, tuple[str, ...]]] = [("all", layers)]
    steps += [(f"top-{k}", layers[:k]) for k in range(1, len(layers))]
    for label, chosen in steps:
        generator = torch.Generator().manual_seed(seed)
        twin = learner.randomised(chosen, generator)
        view = twin.field_view(tasks)
        out[label] = mean_rank_correlation(trained, field_attributions(view, method, seed=seed))
    return out


def _bootstrap_ci(values: np.ndarray, seed: int, draws: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    if len(values) == 0:
        return float("nan"), float("nan")
    means = values[rng.integers(0, len(values), size=(draws, len(values)))].mean(1)
    tail = (1 - CONFIDENCE) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def deletion(
    view: FieldView, attributions: torch.Tensor, *, orders: int = 20, seed: int = 0
) -> dict[str, float]:
    """The area over the deletion curve (mean absolute change of the prediction as fields are set
    to their baseline one by one) in attribution order and in random orders; ``gain`` is their
    difference per prediction, averaged, with a bootstrap confidence interval; ``effect`` is the
    mean absolute change with every field unknown."""
    n, f = attributions.shape
    full = view.forward(view.inputs)

    def area(order: torch.Tensor) -> torch.Tensor:
        keep = torch.ones(n, f, dtype=torch.bool)
        total = torch.zeros(n)
        for k in range(f):
            keep[torch.arange(n), order[:, k]] = False
            total += (view.forward(view.masked(keep)) - full).abs()
        return total / f

    ranked = area(torch.argsort(attributions.abs(), dim=1, descending=True))
    rng = np.random.default_rng(seed)
    random = torch.zeros(n)
    for _ in range(orders):
        perm = torch.as_tensor(np.argsort(rng.random((n, f)), axis=1))
        random += area(perm) / orders
    gain = (ranked - random).numpy()
    low, high = _bootstrap_ci(gain, seed)
    return {
        # How far the fields move predictions at all (every field unknown): a model that ignores
        # its fields passes the deletion check trivially, and this says so.
        "effect": float(
            (view.forward(view.masked(torch.zeros(f, dtype=torch.bool))) - full).abs().mean()
        )
        if n
        else float("nan"),
        "ranked_area": float(ranked.mean()),
        "random_area": float(random.mean()),
        "gain": float(gain.mean()) if len(gain) else float("nan"),
        "gain_low": low,
        "gain_high": high,
    }


def stability(attributions: Sequence[torch.Tensor]) -> dict[str, float]:
    """How alike attributions of the same predictions are across differently seeded fits:
    ``ranking``, the mean pairwise rank correlation of the fields' mean absolute attributions
    (the model's field ranking), and ``top1``, how often two fits agree on a prediction's top
    field."""
    pairs = [(a, b) for i, a in enumerate(attributions) for b in attributions[i + 1 :]]
    ranking = [rank_correlation(a.abs().mean(0).numpy(), b.abs().mean(0).numpy()) for a, b in pairs]
    top1 = [float((a.abs().argmax(1) == b.abs().argmax(1)).float().mean()) for a, b in pairs]
    kept = [r for r in ranking if not np.isnan(r)]
    return {
        "ranking": float(np.mean(kept)) if kept else float("nan"),
        "top1": float(np.mean(top1)) if top1 else float("nan"),
    }


def planted(
    view: FieldView, attributions: torch.Tensor, labels: torch.Tensor, field_name: str
) -> dict[str, float]:
    """Whether the model uses the planted field (RMSE with it ablated minus RMSE without) and how
    often it ranks first by absolute attribution."""
    index = view.fields.index(field_name)
    keep = torch.ones(view.n_fields, dtype=torch.bool)
    keep[index] = False
    rmse = float(((view.forward(view.inputs) - labels) ** 2).mean().sqrt())
    ablated = float(((view.forward(view.masked(keep)) - labels) ** 2).mean().sqrt())
    top1 = float((attributions.abs().argmax(1) == index).float().mean())
    return {"rmse": rmse, "rmse_without": ablated, "rmse_rise": ablated - rmse, "top1_rate": top1}


def top_fields(
    fields: Sequence[str], attributions: torch.Tensor, *, k: int = 3, seed: int = 0
) -> list[dict[str, Any]]:
    """The ``k`` fields of largest mean absolute attribution, each with a bootstrap CI."""
    magnitude = attributions.abs().numpy()
    means = magnitude.mean(0) if len(magnitude) else np.zeros(len(fields))
    out = []
    for f in np.argsort(-means, kind="stable")[:k]:
        low, high = _bootstrap_ci(magnitude[:, f], seed)
        out.append({"field": fields[f], "mean_abs": float(means[f]), "low": low, "high": high})
    return out


@dataclass
class CheckResult:
    """The sanity checks of one learner on one dataset, as stored and reported."""

    learner: str
    dataset: str
    scenario: str
    method: str
    n_predictions: int
    randomisation: dict[str, float]
    deletion: dict[str, float]
    stability: dict[str, float] | None
    top_fields: list[dict[str, Any]]
    adaptation_shift: float | None = None
    planted: dict[str, float] | None = None
    passed: dict[str, bool] = field(default_factory=dict)

    def judge(self) -> None:
        """Fill :attr:`passed`; a check that was not run is left out."""
        values = [v for v in self.randomisation.values() if not np.isnan(v)]
        self.passed = {
            "randomisation": bool(values) and max(values) < RANDOMISATION_MAX,
            "deletion": bool(self.deletion.get("gain_low", float("nan")) > 0),
        }
        if self.stability is not None:
            self.passed["stability"] = bool(self.stability["ranking"] >= STABILITY_MIN)
        if self.planted is not None:
            self.passed["planted"] = bool(
                self.planted["rmse_rise"] > 0 and self.planted["top1_rate"] >= PLANTED_MIN
            )

    @property
    def checked(self) -> bool:
        """ "Explanations checked": every check that ran passed, stability among them."""
        return "stability" in self.passed and all(self.passed.values())

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "checked": self.checked}
