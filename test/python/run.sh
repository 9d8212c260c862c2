#!/usr/bin/env bash
# Python tests for what Azure ML and Prompt flow run, with the real libraries at the job's pins:
#  - .venv/train (cli/local/requirements.txt): byte-compiles finetuning_dir/, promptflow/ and
#    cli/local/, then runs test/python/test_*.py (pure logic, real torch/transformers/trl/
#    datasets/mlflow on a tiny Phi-3, the local endpoint with npm run chat and pf flow test);
#  - .venv/promptflow (cli/local/requirements-promptflow.txt): test/python/promptflow/test_*.py
#    (the Prompt flow tool with the real promptflow package).
# The environments are made by `npm run setup:python` (npm test runs it first).
# Exits non-zero on the first failing suite.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
VENV_ROOT="${PHI3_VENV_ROOT:-.venv}"
TRAIN="$VENV_ROOT/train/bin/python"
PROMPTFLOW="$VENV_ROOT/promptflow/bin/python"
for python in "$TRAIN" "$PROMPTFLOW"; do
  [ -x "$python" ] || { echo "$python is missing: run npm run setup:python" >&2; exit 1; }
done

mapfile -t sources < <(find finetuning_dir promptflow cli/local -name '*.py' -type f | sort)
echo "py_compile: ${#sources[@]} files"
"$TRAIN" -m py_compile "${sources[@]}"

started=$SECONDS
"$PROMPTFLOW" -m unittest discover -s test/python/promptflow -p 'test_*.py'
echo "promptflow tests: $((SECONDS - started)) s"

started=$SECONDS
"$TRAIN" -m unittest discover -s test/python -p 'test_*.py'
echo "training and endpoint tests: $((SECONDS - started)) s"
