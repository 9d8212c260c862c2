#!/usr/bin/env bash
# Python checks for the code that runs inside Azure ML and Prompt flow (stdlib only):
# byte-compiles every .py under finetuning_dir/ and promptflow/, then runs the unit tests.
# Exits non-zero on the first failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PYTHON="${PYTHON:-python3}"

mapfile -t sources < <(find finetuning_dir promptflow -name '*.py' -type f | sort)
if [ "${#sources[@]}" -eq 0 ]; then
  echo "no Python sources found under finetuning_dir/ or promptflow/" >&2
  exit 1
fi
echo "py_compile: ${#sources[@]} files"
"$PYTHON" -m py_compile "${sources[@]}"

"$PYTHON" -m unittest discover -s test/python -p 'test_*.py' -v
