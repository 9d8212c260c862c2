"""Builds the fine-tuning data set (Azure ML command job that runs before ``fine_tune.py``).

Loads ``HuggingFaceH4/ultrachat_200k`` (config ``default``, split ``--split``, default
``train_sft[:1%]`` as in the Phi-3 sample), splits it into train/test with ``--test-size``
(default 0.2) and ``--seed`` (default 0), and writes::

    <--train-output>/train.jsonl
    <--test-output>/test.jsonl

one JSON object per line holding only the ``messages`` field (UTF-8, non-ASCII kept as is),
the format ``fine_tune.py`` reads (it accepts these folders as ``uri_folder`` inputs).

Command line::

    python prepare_data.py --train-output DIR --test-output DIR
        [--dataset HuggingFaceH4/ultrachat_200k] [--config default]
        [--split 'train_sft[:1%]'] [--test-size 0.2] [--seed 0]

The split is done here with ``random.Random(seed)`` (not ``datasets.train_test_split``) so it
is deterministic, dependency-free and unit-tested. ``datasets`` is imported only in
:func:`load_rows`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

DEFAULT_DATASET = "HuggingFaceH4/ultrachat_200k"
DEFAULT_CONFIG = "default"
DEFAULT_SPLIT = "train_sft[:1%]"
TRAIN_FILE_NAME = "train.jsonl"
TEST_FILE_NAME = "test.jsonl"


def build_parser() -> argparse.ArgumentParser:
    # Local module (next to this file), imported here so the module-level imports stay
    # standard-library only.
    from cli_types import fraction, non_negative_int

    parser = argparse.ArgumentParser(description="Download and split the chat fine-tuning data set.")
    parser.add_argument("--train-output", required=True, help="folder that receives train.jsonl")
    parser.add_argument("--test-output", required=True, help="folder that receives test.jsonl")
    parser.add_argument("--dataset", default=DEFAULT_DATASET, help=f"default {DEFAULT_DATASET}")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"default {DEFAULT_CONFIG}")
    parser.add_argument("--split", default=DEFAULT_SPLIT, help=f"default {DEFAULT_SPLIT!r}")
    parser.add_argument("--test-size", type=fraction, default=0.2,
                        help="fraction of rows for the test split (default 0.2)")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name); exits 2 when invalid."""
    return build_parser().parse_args(argv)


def split_rows(rows: Sequence[Any], test_size: float, seed: int) -> Tuple[List[Any], List[Any]]:
    """Deterministic shuffle-and-split: returns ``(train, test)``.

    The rows are shuffled with ``random.Random(seed)``; the test side gets
    ``round(len(rows) * test_size)`` rows, clamped so that each side has at least one row.
    Needs at least 2 rows and ``0 < test_size < 1`` (``ValueError`` otherwise). The input is
    not modified; the same rows and seed always give the same split.
    """
    if not (0.0 < test_size < 1.0) or not math.isfinite(test_size):
        raise ValueError(f"test_size must be strictly between 0 and 1, got {test_size!r}")
    count = len(rows)
    if count < 2:
        raise ValueError(f"need at least 2 rows to split into train and test, got {count}")
    n_test = min(max(int(round(count * test_size)), 1), count - 1)
    order = list(range(count))
    random.Random(seed).shuffle(order)
    test = [rows[i] for i in order[:n_test]]
    train = [rows[i] for i in order[n_test:]]
    return train, test


def _validate_messages(messages: Any, index: int) -> None:
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"row {index}: 'messages' must be a non-empty list")
    for position, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise ValueError(f"row {index}: message {position} needs string 'role' and 'content'")


def to_jsonl_lines(rows: Sequence[Dict[str, Any]]) -> List[str]:
    """One JSON line (ending with ``\\n``) per row, keeping only the ``messages`` field.

    Non-ASCII characters are written as is (``ensure_ascii=False``); U+2028/U+2029 are escaped
    so that no reader splitting on Unicode line breaks cuts a record. Raises ``ValueError``
    when a row has no valid ``messages`` list.
    """
    lines = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict) or "messages" not in row:
            raise ValueError(f"row {index} has no 'messages' field")
        messages = row["messages"]
        _validate_messages(messages, index)
        text = json.dumps({"messages": messages}, ensure_ascii=False)
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        lines.append(text + "\n")
    return lines


def write_jsonl(folder: str, file_name: str, rows: Sequence[Dict[str, Any]]) -> str:
    """Writes ``rows`` to ``folder/file_name`` (UTF-8) and returns the file path."""
    lines = to_jsonl_lines(rows)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, file_name)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(lines)
    return path


def load_rows(dataset: str, config: str, split: str) -> List[Dict[str, Any]]:
    """Downloads the split and returns its rows reduced to ``{"messages": [...]}``."""
    from datasets import load_dataset

    data = load_dataset(dataset, config, split=split)
    if "messages" not in data.column_names:
        raise ValueError(f"{dataset} ({config}, {split}) has no 'messages' column: {data.column_names}")
    return [{"messages": messages} for messages in data["messages"]]


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    rows = load_rows(args.dataset, args.config, args.split)
    train, test = split_rows(rows, args.test_size, args.seed)
    train_path = write_jsonl(args.train_output, TRAIN_FILE_NAME, train)
    test_path = write_jsonl(args.test_output, TEST_FILE_NAME, test)
    print(f"{len(rows)} rows from {args.dataset} ({args.config}, {args.split}): "
          f"{len(train)} -> {train_path}, {len(test)} -> {test_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
