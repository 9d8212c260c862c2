"""Tests for finetuning_dir/prepare_data.py: pure helpers, and main() with the real datasets library."""

import json
import os
import sys
import tempfile
import unittest
from unittest import mock

import helpers

helpers.add_to_path(helpers.FINETUNING_DIR)

import prepare_data  # noqa: E402


def conversation(i):
    return {"messages": [{"role": "user", "content": f"question {i}"},
                         {"role": "assistant", "content": f"answer {i}"}]}


class StdlibImportTest(unittest.TestCase):
    def test_module_level_imports_are_stdlib_only(self):
        path = os.path.join(helpers.FINETUNING_DIR, "prepare_data.py")
        bad = [name for name, _ in helpers.top_level_imports(path)
               if name != "__future__" and name not in sys.stdlib_module_names]
        self.assertEqual(bad, [])


class ParseArgsTest(unittest.TestCase):
    def test_defaults(self):
        args = prepare_data.parse_args(["--train-output", "tr", "--test-output", "te"])
        self.assertEqual((args.train_output, args.test_output), ("tr", "te"))
        self.assertEqual(args.dataset, "HuggingFaceH4/ultrachat_200k")
        self.assertEqual(args.config, "default")
        self.assertEqual(args.split, "train_sft[:1%]")
        self.assertEqual(args.test_size, 0.2)
        self.assertEqual(args.seed, 0)

    def test_options(self):
        args = prepare_data.parse_args(["--train-output", "tr", "--test-output", "te",
                                        "--split", "train_sft[:10]", "--test-size", "0.5",
                                        "--seed", "3", "--dataset", "x/y", "--config", "c"])
        self.assertEqual((args.split, args.test_size, args.seed), ("train_sft[:10]", 0.5, 3))
        self.assertEqual((args.dataset, args.config), ("x/y", "c"))

    def test_invalid(self):
        base = ["--train-output", "tr", "--test-output", "te"]
        for argv in ([], ["--train-output", "tr"], base + ["--test-size", "0"],
                     base + ["--test-size", "1"], base + ["--test-size", "abc"],
                     base + ["--seed", "-2"]):
            with self.subTest(argv=argv), helpers.quiet_stderr(), self.assertRaises(SystemExit) as ctx:
                prepare_data.parse_args(argv)
            self.assertEqual(ctx.exception.code, 2)


class SplitRowsTest(unittest.TestCase):
    def test_sizes_partition_and_determinism(self):
        rows = [conversation(i) for i in range(100)]
        snapshot = json.dumps(rows)
        train, test = prepare_data.split_rows(rows, 0.2, 0)
        self.assertEqual((len(train), len(test)), (80, 20))
        ids = sorted(r["messages"][0]["content"] for r in train + test)
        self.assertEqual(ids, sorted(r["messages"][0]["content"] for r in rows))
        self.assertEqual(prepare_data.split_rows(rows, 0.2, 0), (train, test))
        self.assertNotEqual(prepare_data.split_rows(rows, 0.2, 1)[1], test)
        self.assertEqual(json.dumps(rows), snapshot, "input must not be modified")
        self.assertNotEqual(train, rows[:80], "rows must be shuffled")

    def test_each_side_gets_a_row(self):
        for count, test_size, expected_test in ((2, 0.2, 1), (2, 0.9, 1), (10, 0.01, 1), (10, 0.99, 9),
                                                (3, 0.5, 2), (5, 0.2, 1)):
            with self.subTest(count=count, test_size=test_size):
                train, test = prepare_data.split_rows(list(range(count)), test_size, 0)
                self.assertEqual(len(test), expected_test)
                self.assertEqual(len(train), count - expected_test)
                self.assertEqual(sorted(train + test), list(range(count)))

    def test_matches_stdlib_random(self):
        rows = list(range(10))
        order = list(range(10))
        import random

        random.Random(5).shuffle(order)
        self.assertEqual(prepare_data.split_rows(rows, 0.3, 5), (order[3:], order[:3]))

    def test_invalid(self):
        for rows, size in (([], 0.2), ([1], 0.2), ([1, 2], 0.0), ([1, 2], 1.0), ([1, 2], float("nan"))):
            with self.subTest(rows=rows, size=size), self.assertRaises(ValueError):
                prepare_data.split_rows(rows, size, 0)


class JsonlTest(unittest.TestCase):
    def test_only_messages_one_object_per_line(self):
        row = {"prompt": "p", "prompt_id": "id", **conversation(1)}
        lines = prepare_data.to_jsonl_lines([row, conversation(2)])
        self.assertEqual(len(lines), 2)
        for line in lines:
            self.assertTrue(line.endswith("\n"))
            self.assertEqual(line.count("\n"), 1)
        self.assertEqual(json.loads(lines[0]), conversation(1))

    def test_unicode_is_kept_and_line_separators_escaped(self):
        text = "微软的总部 café \u2028 next\u2029 line\nnew"
        row = {"messages": [{"role": "user", "content": text}]}
        (line,) = prepare_data.to_jsonl_lines([row])
        self.assertIn("微软的总部 café", line)
        self.assertNotIn("\u2028", line)
        self.assertNotIn("\u2029", line)
        self.assertEqual(len(line.splitlines()), 1)
        self.assertEqual(json.loads(line)["messages"][0]["content"], text)

    def test_invalid_rows(self):
        for row in ({}, {"text": "x"}, {"messages": []}, {"messages": "x"},
                    {"messages": [{"role": "user"}]}, {"messages": [{"role": 1, "content": "x"}]}, "x"):
            with self.subTest(row=row), self.assertRaises(ValueError):
                prepare_data.to_jsonl_lines([row])


class MainTest(unittest.TestCase):
    """main() with the real ``datasets`` library on a local folder laid out like the hub's
    ultrachat_200k (``data/train_sft-*.parquet``)."""

    def test_writes_both_files(self):
        rows = [conversation(i) for i in range(9)]
        rows[0]["messages"][0]["content"] = "Où est le siège de Microsoft ? 微软"
        with tempfile.TemporaryDirectory() as tmp:
            hub = helpers.write_hub_like_dataset(os.path.join(tmp, "ultrachat"), rows)
            train_dir = os.path.join(tmp, "train")
            test_dir = os.path.join(tmp, "test")
            with mock.patch("sys.stdout"):
                code = prepare_data.main(["--dataset", hub, "--split", "train_sft[:100%]",
                                          "--train-output", train_dir, "--test-output", test_dir,
                                          "--test-size", "0.3", "--seed", "1"])
            self.assertEqual(code, 0)
            self.assertEqual(os.listdir(train_dir), ["train.jsonl"])
            self.assertEqual(os.listdir(test_dir), ["test.jsonl"])
            with open(os.path.join(train_dir, "train.jsonl"), "rb") as handle:
                train_bytes = handle.read()
            with open(os.path.join(test_dir, "test.jsonl"), "rb") as handle:
                test_bytes = handle.read()
        train_rows = [json.loads(line) for line in train_bytes.decode("utf-8").splitlines()]
        test_rows = [json.loads(line) for line in test_bytes.decode("utf-8").splitlines()]
        self.assertIn("微软".encode("utf-8"), train_bytes + test_bytes)
        self.assertNotIn(b"\\u", train_bytes + test_bytes, "non-ASCII must not be escaped")
        self.assertEqual((len(train_rows), len(test_rows)), (6, 3))
        self.assertTrue(all(set(r) == {"messages"} for r in train_rows + test_rows))
        self.assertEqual(sorted(json.dumps(r, sort_keys=True) for r in train_rows + test_rows),
                         sorted(json.dumps({"messages": r["messages"]}, sort_keys=True) for r in rows))

    def test_split_slices_like_the_hub(self):
        rows = [conversation(i) for i in range(20)]
        with tempfile.TemporaryDirectory() as tmp:
            hub = helpers.write_hub_like_dataset(os.path.join(tmp, "ultrachat"), rows)
            self.assertEqual(len(prepare_data.load_rows(hub, "default", "train_sft[:10%]")), 2)
            self.assertEqual(len(prepare_data.load_rows(hub, "default", "train_sft[:5]")), 5)
            self.assertEqual(len(prepare_data.load_rows(hub, "default", "test_sft[:100%]")), 2)

    def test_missing_messages_column(self):
        import datasets

        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "data"))
            datasets.Dataset.from_list([{"text": "a"}, {"text": "b"}]).to_parquet(
                os.path.join(tmp, "data", "train_sft-00000-of-00001.parquet"))
            with self.assertRaisesRegex(ValueError, "no 'messages' column"):
                prepare_data.main(["--dataset", tmp, "--split", "train_sft[:100%]",
                                   "--train-output", os.path.join(tmp, "a"), "--test-output", os.path.join(tmp, "b")])


if __name__ == "__main__":
    unittest.main()
