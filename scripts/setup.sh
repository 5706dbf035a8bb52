#!/usr/bin/env bash
# Build the project's virtual environment, printing each step with its duration:
#   scripts/setup.sh PYTHON VENV EXTRAS
set -euo pipefail
python=${1:-python3}
venv=${2:-.venv}
extras=${3:-dev,meta,parquet,ray}
started=$SECONDS

step() {
    local what=$1
    shift
    local t0=$SECONDS
    echo "[setup] $what..."
    "$@"
    echo "[setup] $what: done in $((SECONDS - t0)) s"
}

if [ ! -x "$venv/bin/python" ]; then
    step "creating the virtual environment $venv" "$python" -m venv "$venv"
fi
step "upgrading pip" "$venv/bin/python" -m pip install --quiet --upgrade pip
step "installing the project and its dependencies ($extras; torch alone is several GB, the first time takes minutes)" \
    "$venv/bin/python" -m pip install --quiet -e ".[$extras]"
step "installing learn2learn (built from source the first time, then cached)" \
    scripts/install_learn2learn.sh "$venv/bin/python"
echo "[setup] ready in $((SECONDS - started)) s"
