"""An outside model on an exported split: Surprise's SVD, trained on the exported files only.

This script reads nothing of the harness but the files ``bench split export`` writes, so it stands
for any tool elsewhere. For every dataset, seed, scenario and support size k it trains SVD on the
training ratings, the validation tasks (support and query, which learners inside the harness are
given too) and the scenario's support at k, then predicts each query rating. The predictions go to
one CSV for ``bench import``::

    python -m bench split export --suite ci --out split/
    python scripts/referee_surprise.py split/ svd.csv
    python -m bench import --suite ci --learner surprise-svd --predictions svd.csv
    python -m bench report --out report/

Surprise (``pip install scikit-surprise``) predicts the training mean, corrected by whichever biases
it knows, for a user or item it has not seen; such predictions are scored like any other.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

IDS = {"user": str, "item": str, "task": str}


def predict_split(split_dir: Path, epochs: int = 20, factors: int = 50) -> pd.DataFrame:
    """One row per query rating of the exported split, with SVD's prediction."""
    from surprise import SVD, Dataset, Reader

    manifest = json.loads((split_dir / "manifest.json").read_text(encoding="utf-8"))
    out = []
    for entry in manifest["splits"]:

        def table(name: str, entry: dict = entry) -> pd.DataFrame:
            return pd.read_csv(split_dir / entry["tables"][name], dtype=IDS, keep_default_na=False)

        reader = Reader(rating_scale=tuple(entry["rating_scale"]))
        known = pd.concat([table("train"), table("validation")], ignore_index=True)
        for scenario in manifest["scenarios"]:
            for k in manifest["support_sizes"]:
                support = table(f"{scenario}/k-{k}/support")
                query = table(f"{scenario}/k-{k}/query")
                ratings = pd.concat([known, support], ignore_index=True)
                data = Dataset.load_from_df(ratings[["user", "item", "rating"]], reader)
                model = SVD(n_factors=factors, n_epochs=epochs, random_state=entry["seed"])
                model.fit(data.build_full_trainset())
                predicted = [
                    model.predict(u, i).est
                    for u, i in zip(query["user"], query["item"], strict=True)
                ]
                out.append(
                    pd.DataFrame(
                        {
                            "dataset": entry["dataset"],
                            "seed": entry["seed"],
                            "scenario": scenario,
                            "k": str(k),
                            "user": query["user"],
                            "item": query["item"],
                            "prediction": predicted,
                        }
                    )
                )
    return pd.concat(out, ignore_index=True)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: referee_surprise.py SPLIT_DIR PREDICTIONS.csv", file=sys.stderr)
        return 2
    predict_split(Path(argv[0])).to_csv(argv[1], index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
