#!/usr/bin/env bash
# Rebuild the committed leaderboard (`make leaderboard`): run the synthetic `meta` suite,
# `ml100k-cold`, `ml100k-recbole-metarec`, `ml100k-robust` and `ml100k-attack` on CPU into a
# fresh store, then write reports/leaderboard.{md,html,csv,json} and the k-shot figures in
# reports/leaderboard_figures/. ML-100K is looked for in $BENCH_DATA_DIR (default
# ../shared/datasets).
#
# Usage: scripts/leaderboard.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-.venv/bin/python}
STORE=${LEADERBOARD_STORE:-.bench/leaderboard.sqlite}
export BENCH_DATA_DIR=${BENCH_DATA_DIR:-../shared/datasets}

# A fresh store: cells of earlier code or configs must not mix into the page. Each run must
# finish (set -e stops at the first that fails), and `bench report` refuses a store holding a
# run that did not finish, so the page is never built from a run still going.
rm -f "$STORE" "$STORE-wal" "$STORE-shm"
# Cells run in two worker processes of one torch thread each (WORKERS to change).
for suite in meta ml100k-cold ml100k-recbole-metarec ml100k-robust ml100k-attack; do
    "$PYTHON" -m bench run --suite "$suite" --device cpu --store "$STORE" --no-progress \
        --executor process --workers "${WORKERS:-2}"
    if [ "$suite" = ml100k-cold ]; then
        # The sanity checks of field attributions on the run just finished, for two
        # meta-learners and the two baselines they are judged against (each check refits its
        # learner on three seeds); the page's Explanations section comes from them.
        for learner in mf fine-tune maml melu; do
            "$PYTHON" -m bench explain --store "$STORE" --check --learner "$learner"
        done
    fi
done
"$PYTHON" -m bench report --store "$STORE" --out reports --name leaderboard \
    --format md,html,csv,json --title "coldstart-bench leaderboard" --command "make leaderboard"
# The README's results tables come from the same page (tests/test_readme_results.py checks them).
"$PYTHON" scripts/readme_results.py
