#!/usr/bin/env bash
# One prepared check on a machine with a CUDA GPU and no network, in under 8 minutes
# (`make gpu-check`). Every step has its own time limit; a step that fails or runs out of time is
# recorded and the next one runs, so one report always comes back:
#   1. the tests that need CUDA (they skip on a CPU-only machine);
#   2. `bench perf --device cuda` at 256, 1024 and 4096 tasks, with the CUDA graph and eagerly
#      (each against maml-l2l);
#   3. the ml100k-cold suite on cuda and cpu side by side into one store, untuned, three seeds,
#      the learners that fit its time (LEARNERS): in-query, full and sampled ranking metrics;
#   4. full-ranking throughput (benchmarks/topn_ranking.py) at 10^3-10^5 items on cpu and cuda;
#   5. `bench report` of that store (its timing table sets GPU against CPU), plus summary.md.
# Nothing is downloaded: the Python environment and ML-100K must be on the machine beforehand
# (docs/gpu-check.md says how).
#
# Usage: scripts/gpu_check.sh [PYTHON]   (OUT=folder for the results, default reports/gpu-check)
# REHEARSAL=1 runs the same steps on the CPU alone (no CUDA tests, no CUDA graph), to prove the
# commands and the data on a machine without a GPU before the GPU's few minutes are spent.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${1:-.venv/bin/python}
OUT=${OUT:-reports/gpu-check}
export BENCH_DATA_DIR=${BENCH_DATA_DIR:-../shared/datasets}
export PIP_NO_INDEX=1 HF_HUB_OFFLINE=1 NO_PROXY='*'  # nothing may reach the network
export BENCH_CACHE_DIR=${BENCH_CACHE_DIR:-$OUT/cache}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"
STORE="$OUT/gpu-check.sqlite"
started=$(date +%s)
# Tuning (six trials per learner and seed) and the slowest learners (dropoutnet, tanp, mamo) would
# take the suite past ten minutes; these, untuned, take about a minute per device on two cores.
LEARNERS=${LEARNERS:-global-mean,item-mean,popularity,mf,maml,protonet,fine-tune,melu,content-map,meta-embedding}
REHEARSAL=${REHEARSAL:-0}
GPU=cuda
SIZES=256,1024,4096
if [ "$REHEARSAL" = 1 ]; then
    GPU=cpu
    SIZES=256  # maml's meta-step on 4096 tasks takes minutes on a CPU
elif ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check: torch in $PYTHON sees no CUDA GPU; run this on the GPU machine" >&2
    exit 2
fi
if [ ! -f "$BENCH_DATA_DIR/ml-100k/u.data" ]; then
    echo "gpu_check: ML-100K not found in $BENCH_DATA_DIR/ml-100k (copy it there beforehand)" >&2
    exit 2
fi

{
    if [ "$REHEARSAL" = 1 ]; then
        echo "# GPU check, rehearsed on the CPU (no GPU figure below)"
    else
        echo "# GPU check"
    fi
    echo
    "$PYTHON" - <<'PY'
import platform, torch
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"- device: {name}; torch {torch.__version__}, CUDA {torch.version.cuda}; "
      f"Python {platform.python_version()}")
PY
    echo "- started: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo
    echo "| step | status | seconds | output |"
    echo "|---|---|---|---|"
} > "$SUMMARY"

# step NAME LIMIT_S OUTPUT_FILE COMMAND...: run it under a time limit and add its row.
step() {
    local name=$1 limit=$2 file=$3
    shift 3
    local t0 status rc=0
    t0=$(date +%s)
    echo "== $name (at most ${limit}s)"
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$file" 2>&1 || rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status="out of time (${limit}s)" ;;
        *) status="failed (exit $rc)" ;;
    esac
    echo "| $name | $status | $(($(date +%s) - t0)) | [$file]($file) |" >> "$SUMMARY"
    tail -n 3 "$OUT/$file"
}

if [ "$REHEARSAL" = 1 ]; then
    echo "| CUDA tests | not run: rehearsal on the CPU | 0 | |" >> "$SUMMARY"
    echo "| perf, CUDA graph | not run: rehearsal on the CPU | 0 | |" >> "$SUMMARY"
else
    step "CUDA tests" 90 cuda-tests.txt \
        "$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/test_cuda_graph.py \
        tests/test_cli.py tests/test_cli_paths.py tests/test_runner_store.py tests/test_cell_key.py \
        -k cuda
    step "perf, CUDA graph" 75 perf-graph.txt \
        "$PYTHON" -m bench perf --device cuda --batch-sizes "$SIZES" --repeats 3
fi
step "perf, eager" 75 perf-eager.txt \
    "$PYTHON" -m bench perf --device "$GPU" --batch-sizes "$SIZES" --repeats 3 --no-cuda-graph
rm -f "$STORE" "$STORE-wal" "$STORE-shm"
DEVICES="$GPU,cpu"
[ "$GPU" = cpu ] && DEVICES=cpu
step "ml100k-cold on $DEVICES" 210 ml100k-cold.txt \
    "$PYTHON" -m bench run --suite ml100k-cold --device "$DEVICES" --no-tune --seeds 3 \
    --learners "$LEARNERS" --store "$STORE" --no-progress
step "full ranking on $DEVICES" 60 ranking.txt \
    env PYTHONPATH=. "$PYTHON" benchmarks/topn_ranking.py --devices "$DEVICES"
# --allow-partial: a suite cut short by its time limit is still reported, marked partial
step "report" 40 report.txt \
    "$PYTHON" -m bench report --store "$STORE" --out "$OUT" --name gpu-check \
    --format md,csv,json --title "GPU check: ml100k-cold on $DEVICES" \
    --command "make gpu-check" --allow-partial

{
    echo
    echo "- finished in $(($(date +%s) - started)) s; the CPU/GPU timing table is in [gpu-check.md](gpu-check.md)"
} >> "$SUMMARY"
rm -rf "$BENCH_CACHE_DIR"
cat "$SUMMARY"
