"""Tests for finetuning_dir/fine_tune.py (stdlib only: heavy libraries are faked)."""

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import types
import unittest
from unittest import mock

import helpers

helpers.add_to_path(helpers.FINETUNING_DIR)
helpers.add_to_path(helpers.PROMPTFLOW_DIR)

import fine_tune  # noqa: E402

REQUIRED = ["--train-file", "t.jsonl", "--eval-file", "e.jsonl", "--model-output", "out"]

PHI3_BOS = "<s>"


def phi3_render(messages, add_generation_prompt=False):
    """Python rendition of the Phi-3-mini-4k-instruct chat template."""
    text = PHI3_BOS
    for message in messages:
        text += "<|" + message["role"] + "|>\n" + message["content"] + "<|end|>\n"
    if add_generation_prompt:
        text += "<|assistant|>\n"
    return text


class FakeTokenizer:
    def __init__(self):
        self.bos_token = PHI3_BOS
        self.eos_token = "<|endoftext|>"
        self.unk_token = "<unk>"
        self.pad_token = "<|endoftext|>"
        self.padding_side = "left"
        self.model_max_length = 4096
        self.template_calls = []

    def apply_chat_template(self, messages, tokenize=True, add_generation_prompt=False):
        assert tokenize is False
        self.template_calls.append((messages, add_generation_prompt))
        return phi3_render(messages, add_generation_prompt)


class StdlibImportTest(unittest.TestCase):
    def test_module_level_imports_are_stdlib_only(self):
        path = os.path.join(helpers.FINETUNING_DIR, "fine_tune.py")
        bad = [name for name, _ in helpers.top_level_imports(path)
               if name != "__future__" and name not in sys.stdlib_module_names]
        self.assertEqual(bad, [], "heavy imports must stay inside functions")


class ParseArgsTest(unittest.TestCase):
    def test_defaults(self):
        args = fine_tune.parse_args(REQUIRED)
        self.assertEqual(args.train_file, "t.jsonl")
        self.assertEqual(args.eval_file, "e.jsonl")
        self.assertEqual(args.model_output, "out")
        self.assertEqual(args.base_model, "microsoft/Phi-3-mini-4k-instruct")
        self.assertEqual(args.epochs, 3)
        self.assertEqual(args.learning_rate, 5e-6)
        self.assertEqual(args.per_device_batch_size, 4)
        self.assertEqual(args.max_seq_length, 2048)
        self.assertEqual(args.warmup_ratio, 0.2)
        self.assertEqual(args.lr_scheduler, "cosine")
        self.assertEqual(args.seed, 0)
        self.assertEqual(args.serving_dtype, "float16")
        self.assertFalse(args.trust_remote_code)
        self.assertTrue(args.log_model_to_run)

    def test_all_options(self):
        args = fine_tune.parse_args(REQUIRED + [
            "--base-model", "microsoft/Phi-3.5-mini-instruct", "--epochs", "1",
            "--learning-rate", "1e-5", "--per-device-batch-size", "2", "--max-seq-length", "1024",
            "--warmup-ratio", "0", "--lr-scheduler", "linear", "--seed", "42",
            "--serving-dtype", "bf16", "--trust-remote-code", "--no-log-model-to-run",
        ])
        self.assertEqual(args.base_model, "microsoft/Phi-3.5-mini-instruct")
        self.assertEqual((args.epochs, args.learning_rate, args.per_device_batch_size), (1, 1e-5, 2))
        self.assertEqual((args.max_seq_length, args.warmup_ratio, args.lr_scheduler), (1024, 0.0, "linear"))
        self.assertEqual(args.seed, 42)
        self.assertEqual(args.serving_dtype, "bfloat16")
        self.assertTrue(args.trust_remote_code)
        self.assertFalse(args.log_model_to_run)

    def test_seed_spelling_of_output_dir_is_accepted(self):
        args = fine_tune.parse_args(["--train-file", "a", "--eval-file", "b", "--model_output_dir", "m"])
        self.assertEqual(args.model_output, "m")

    def test_invalid_arguments_exit(self):
        cases = [
            [],
            ["--train-file", "a", "--eval-file", "b"],
            REQUIRED + ["--epochs", "0"],
            REQUIRED + ["--epochs", "two"],
            REQUIRED + ["--learning-rate", "-1"],
            REQUIRED + ["--learning-rate", "nan"],
            REQUIRED + ["--per-device-batch-size", "0"],
            REQUIRED + ["--max-seq-length", "-5"],
            REQUIRED + ["--warmup-ratio", "1"],
            REQUIRED + ["--warmup-ratio", "-0.1"],
            REQUIRED + ["--lr-scheduler", "exponential"],
            REQUIRED + ["--seed", "-1"],
            REQUIRED + ["--serving-dtype", "int8"],
            REQUIRED + ["--serving-dtype", "float64"],
        ]
        for argv in cases:
            with self.subTest(argv=argv), helpers.quiet_stderr(), self.assertRaises(SystemExit) as ctx:
                fine_tune.parse_args(argv)
            self.assertEqual(ctx.exception.code, 2)


class ServingDtypeTest(unittest.TestCase):
    def test_aliases(self):
        for value in ("float16", "FP16", "half", "torch.float16", " float16 "):
            self.assertEqual(fine_tune.serving_dtype_name(value), "float16", value)
        for value in ("bfloat16", "BF16", "torch.bfloat16"):
            self.assertEqual(fine_tune.serving_dtype_name(value), "bfloat16", value)
        for value in ("float32", "FP32", "float", "torch.float32", " Float32 "):
            self.assertEqual(fine_tune.serving_dtype_name(value), "float32", value)
        self.assertEqual(fine_tune.SERVING_DTYPES, ("float16", "bfloat16", "float32"))

    def test_float32_on_the_command_line(self):
        for spelling in ("float32", "fp32", "torch.float32"):
            args = fine_tune.parse_args(REQUIRED + ["--serving-dtype", spelling])
            self.assertEqual(args.serving_dtype, "float32", spelling)

    def test_error_message_names_the_choices(self):
        with self.assertRaises(ValueError) as ctx:
            fine_tune.serving_dtype_name("int8")
        message = str(ctx.exception)
        for word in ("float16", "bfloat16", "float32", "CPU"):
            self.assertIn(word, message)

    def test_rejects_others(self):
        for value in ("int8", "float64", "double", "fp8", "", None):
            with self.subTest(value=value), self.assertRaises(ValueError):
                fine_tune.serving_dtype_name(value)


class NormalizeMessagesTest(unittest.TestCase):
    def test_inserts_empty_system_turn(self):
        messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
        out = fine_tune.normalize_messages(messages)
        self.assertEqual(out[0], {"role": "system", "content": ""})
        self.assertEqual(out[1:], messages)
        self.assertEqual(len(messages), 2, "input must not be modified")

    def test_keeps_existing_system_turn_and_everything_else(self):
        messages = [
            {"role": "system", "content": "  Be brief.\n"},
            {"role": "user", "content": " spaced \n", "name": "u1"},
            {"role": "assistant", "content": "\tok "},
        ]
        out = fine_tune.normalize_messages(messages)
        self.assertEqual(out, messages)
        self.assertIsNot(out[1], messages[1])

    def test_rejects_invalid_conversations(self):
        cases = [
            None, [], "text", [{"role": "user"}], [{"role": "tool", "content": "x"}],
            [{"content": "x"}], ["hello"], [{"role": "user", "content": 3}],
            [{"role": "user", "content": "a"}, {"role": "system", "content": "late"}],
            [{"role": "system", "content": "only a system turn"}],
        ]
        for messages in cases:
            with self.subTest(messages=messages), self.assertRaises(ValueError):
                fine_tune.normalize_messages(messages)


class ResolveJsonlTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def touch(self, *parts):
        path = os.path.join(self.tmp.name, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("{}\n")
        return path

    def test_file_is_returned_as_is(self):
        path = self.touch("data.jsonl")
        self.assertEqual(fine_tune.resolve_jsonl(path), path)

    def test_folder_with_one_jsonl(self):
        path = self.touch("train", "train.jsonl")
        self.touch("train", ".hidden.jsonl")
        self.touch("train", "README.md")
        self.touch("train", "nested", "other.jsonl")
        self.assertEqual(fine_tune.resolve_jsonl(os.path.dirname(path)), path)

    def test_folder_with_zero_or_two_jsonl(self):
        os.makedirs(os.path.join(self.tmp.name, "empty"))
        with self.assertRaisesRegex(ValueError, "found 0"):
            fine_tune.resolve_jsonl(os.path.join(self.tmp.name, "empty"))
        self.touch("two", "a.jsonl")
        self.touch("two", "b.JSONL")
        with self.assertRaisesRegex(ValueError, "found 2"):
            fine_tune.resolve_jsonl(os.path.join(self.tmp.name, "two"))

    def test_missing_path(self):
        with self.assertRaises(FileNotFoundError):
            fine_tune.resolve_jsonl(os.path.join(self.tmp.name, "nope"))


class TrainerConfigTest(unittest.TestCase):
    def test_training_arguments_kwargs(self):
        args = fine_tune.parse_args(REQUIRED + ["--epochs", "2", "--learning-rate", "2e-5",
                                                "--per-device-batch-size", "8", "--warmup-ratio", "0.1",
                                                "--lr-scheduler", "linear", "--seed", "7"])
        kwargs = fine_tune.training_arguments_kwargs(args, output_dir="/scratch/x")
        expected = {
            "output_dir": "/scratch/x",
            "num_train_epochs": 2,
            "learning_rate": 2e-5,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 8,
            "lr_scheduler_type": "linear",
            "warmup_ratio": 0.1,
            "seed": 7,
            "bf16": True,
            "gradient_checkpointing": True,
            "do_eval": True,
            "eval_strategy": "epoch",
            "save_strategy": "no",
            "report_to": "none",
        }
        for key, value in expected.items():
            self.assertEqual(kwargs[key], value, key)
        self.assertNotIn("fp16", kwargs)
        self.assertNotIn("evaluation_strategy", kwargs)  # renamed in transformers 4.41
        self.assertNotIn("max_seq_length", kwargs)  # an SFTTrainer argument in trl 0.8
        json.dumps(kwargs)  # plain values only

    def test_gpu_kwargs_are_the_default(self):
        args = fine_tune.parse_args(REQUIRED)
        default = fine_tune.training_arguments_kwargs(args, output_dir="/x")
        self.assertEqual(fine_tune.training_arguments_kwargs(args, output_dir="/x", use_cpu=False), default)
        self.assertIs(default["bf16"], True)
        self.assertNotIn("use_cpu", default)
        self.assertNotIn("no_cuda", default)

    def test_cpu_kwargs(self):
        args = fine_tune.parse_args(REQUIRED + ["--epochs", "1", "--seed", "3"])
        gpu = fine_tune.training_arguments_kwargs(args, output_dir="/x")
        cpu = fine_tune.training_arguments_kwargs(args, output_dir="/x", use_cpu=True)
        self.assertIs(cpu["use_cpu"], True)
        self.assertIs(cpu["bf16"], False)
        self.assertNotIn("fp16", cpu)
        self.assertNotIn("no_cuda", cpu)  # deprecated spelling
        # Everything else is the GPU configuration.
        rest = {k: v for k, v in cpu.items() if k not in ("use_cpu", "bf16")}
        self.assertEqual(rest, {k: v for k, v in gpu.items() if k != "bf16"})
        json.dumps(cpu)

    def test_training_dtype_name(self):
        self.assertEqual(fine_tune.training_dtype_name(True), "float32")
        self.assertEqual(fine_tune.training_dtype_name(False), "bfloat16")
        for use_cpu in (True, False):  # a name _torch_dtype understands
            self.assertIn(fine_tune.training_dtype_name(use_cpu), fine_tune.SERVING_DTYPES)

    def test_model_metadata_records_the_training_precision(self):
        args = fine_tune.parse_args(REQUIRED)
        self.assertIn("bf16", fine_tune.model_metadata(args)["trained_with"])
        cpu = fine_tune.model_metadata(args, use_cpu=True)["trained_with"]
        self.assertIn("fp32", cpu)
        self.assertNotIn("bf16", cpu)

    def test_default_output_dir_is_outside_the_model_output(self):
        args = fine_tune.parse_args(REQUIRED)
        out = fine_tune.training_arguments_kwargs(args)["output_dir"]
        self.assertTrue(os.path.isabs(out))
        self.assertNotEqual(os.path.abspath(out), os.path.abspath(args.model_output))

    def test_sft_trainer_kwargs(self):
        args = fine_tune.parse_args(REQUIRED + ["--max-seq-length", "1024"])
        self.assertEqual(fine_tune.sft_trainer_kwargs(args),
                         {"dataset_text_field": "text", "max_seq_length": 1024, "packing": True})

    def test_trl_api_supported(self):
        for version in ("0.8.6", "0.9.4", "0.11.4", fine_tune.TARGET_TRL_VERSION):
            self.assertTrue(fine_tune.trl_api_supported(version), version)
        for version in ("0.7.11", "0.12.0", "0.19.1", "1.0.0", "garbage", ""):
            self.assertFalse(fine_tune.trl_api_supported(version), version)

    def test_numeric_metrics(self):
        logs = {"loss": 1.5, "grad_norm": 3, "epoch": 0.5, "flag": True, "note": "x",
                "bad": float("nan"), "inf": float("inf"), "eval loss(x)": 2.0}
        self.assertEqual(fine_tune.numeric_metrics(logs),
                         {"loss": 1.5, "grad_norm": 3.0, "epoch": 0.5, "eval loss_x_": 2.0})
        self.assertEqual(fine_tune.numeric_metrics({"loss": 1}, prefix="final_"), {"final_loss": 1.0})
        self.assertEqual(fine_tune.numeric_metrics(None), {})

    def test_run_params_hold_no_paths(self):
        args = fine_tune.parse_args(REQUIRED)
        params = fine_tune.run_params(args)
        self.assertEqual(params["learning_rate"], "5e-06")
        self.assertNotIn("train_file", params)
        self.assertNotIn("model_output", params)
        self.assertTrue(all(isinstance(v, str) and len(v) <= 250 for v in params.values()))


class ServingConfigTest(unittest.TestCase):
    def test_prompt_template_from_rendered(self):
        marker = "@@P@@"
        rendered = PHI3_BOS + "<|system|>\n{json}<|end|>\n<|user|>\n" + marker + "<|end|>\n<|assistant|>\n"
        template = fine_tune.prompt_template_from_rendered(rendered, marker, PHI3_BOS)
        self.assertFalse(template.startswith(PHI3_BOS))
        self.assertEqual(template.format(prompt="Q?"),
                         "<|system|>\n{json}<|end|>\n<|user|>\nQ?<|end|>\n<|assistant|>\n")
        with self.assertRaises(ValueError):
            fine_tune.prompt_template_from_rendered("no marker", marker)
        with self.assertRaises(ValueError):
            fine_tune.prompt_template_from_rendered(marker + marker, marker)

    def test_build_prompt_template_matches_training_format(self):
        tokenizer = FakeTokenizer()
        template = fine_tune.build_prompt_template(tokenizer)
        self.assertEqual(template, "<|system|>\n<|end|>\n<|user|>\n{prompt}<|end|>\n<|assistant|>\n")
        (messages, generation_prompt), = tokenizer.template_calls
        self.assertTrue(generation_prompt)
        self.assertEqual(messages[0], {"role": "system", "content": ""})

    def test_params_cover_what_the_prompt_flow_client_sends(self):
        import call_endpoint

        sent = call_endpoint.build_payload("q", "prompt-list", 0.7, 128)["params"]
        for key, value in sent.items():
            self.assertIn(key, fine_tune.DEFAULT_INFERENCE_PARAMS, key)
            self.assertIs(type(fine_tune.DEFAULT_INFERENCE_PARAMS[key]), type(value), key)
        self.assertFalse(fine_tune.DEFAULT_INFERENCE_PARAMS["return_full_text"])

    def test_input_example_and_documented_shape(self):
        inputs, params = fine_tune.serving_input_example()
        self.assertEqual(len(inputs), 1)
        self.assertIsInstance(inputs[0], str)
        self.assertEqual(params, fine_tune.DEFAULT_INFERENCE_PARAMS)
        self.assertEqual(fine_tune.SERVING_PAYLOAD_SHAPE, "prompt-list")
        self.assertIn('{"input_data": ["Who founded Microsoft?"]', fine_tune.__doc__)

    def test_extra_pip_requirements(self):
        self.assertIn("azureml-ai-monitoring", fine_tune.EXTRA_PIP_REQUIREMENTS)
        self.assertIn("mlflow==2.16.2", fine_tune.EXTRA_PIP_REQUIREMENTS)

    def test_ensure_empty_dir(self):
        with tempfile.TemporaryDirectory() as tmp:
            target = os.path.join(tmp, "new", "model")
            fine_tune.ensure_empty_dir(target)
            self.assertTrue(os.path.isdir(target))
            fine_tune.ensure_empty_dir(target)  # empty: fine
            with open(os.path.join(target, "x"), "w"):
                pass
            with self.assertRaisesRegex(ValueError, "not empty"):
                fine_tune.ensure_empty_dir(target)
            with self.assertRaisesRegex(ValueError, "not a directory"):
                fine_tune.ensure_empty_dir(os.path.join(target, "x"))


class CondaPinsTest(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(helpers.FINETUNING_DIR, "conda.yml"), encoding="utf-8") as handle:
            self.text = handle.read()
        self.pins = dict(re.findall(r"^\s*-\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", self.text, re.M))

    def test_pins(self):
        self.assertRegex(self.text, r"(?m)^\s*-\s*python=3\.10\s*$")
        self.assertEqual(self.pins.get("trl"), fine_tune.TARGET_TRL_VERSION)
        self.assertTrue(fine_tune.trl_api_supported(self.pins["trl"]))
        self.assertEqual(self.pins.get("mlflow"), "2.16.2")
        self.assertEqual(self.pins.get("mlflow-skinny"), self.pins.get("mlflow"))
        for name in ("azureml-mlflow", "azureml-ai-monitoring", "transformers", "datasets",
                     "accelerate", "torch"):
            self.assertIn(name, self.pins, name)
        major, minor = (int(x) for x in self.pins["transformers"].split(".")[:2])
        self.assertGreaterEqual((major, minor), (4, 41), "eval_strategy needs transformers >= 4.41")


# --------------------------------------------------------------------------------------------
# main() end to end with fake torch / transformers / trl / datasets / mlflow
# --------------------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.calls = []

    def add(self, name, *args, **kwargs):
        self.calls.append((name, args, kwargs))

    def named(self, name):
        return [c for c in self.calls if c[0] == name]


def make_fakes(rec, trl_version="0.8.6", cuda=False, bf16=True):
    torch = types.ModuleType("torch")
    torch.float16, torch.bfloat16 = "torch.float16", "torch.bfloat16"
    torch.float32 = "torch.float32"
    torch.cuda = types.SimpleNamespace(is_available=lambda: cuda, is_bf16_supported=lambda: bf16)

    class FakeModel:
        def __init__(self):
            self.config = types.SimpleNamespace(use_cache=False)
            self.dtype = torch.bfloat16

        def to(self, dtype=None):
            rec.add("model.to", dtype=dtype)
            self.dtype = dtype
            return self

    transformers = types.ModuleType("transformers")

    class AutoModelForCausalLM:
        @staticmethod
        def from_pretrained(name, **kwargs):
            rec.add("model.from_pretrained", name, **kwargs)
            return FakeModel()

    class AutoTokenizer:
        @staticmethod
        def from_pretrained(name, **kwargs):
            rec.add("tokenizer.from_pretrained", name, **kwargs)
            return FakeTokenizer()

    class TrainingArguments:
        def __init__(self, **kwargs):
            rec.add("TrainingArguments", **kwargs)
            self.kwargs = kwargs

    class TrainerCallback:
        pass

    transformers.AutoModelForCausalLM = AutoModelForCausalLM
    transformers.AutoTokenizer = AutoTokenizer
    transformers.TrainingArguments = TrainingArguments
    transformers.TrainerCallback = TrainerCallback

    class FakeDataset:
        def __init__(self, rows):
            self.rows = rows
            self.column_names = sorted({k for r in rows for k in r})

        def __len__(self):
            return len(self.rows)

        def map(self, fn, remove_columns=(), num_proc=None, desc=None):
            out = []
            for row in self.rows:
                new = {k: v for k, v in row.items() if k not in remove_columns}
                new.update(fn(dict(row)))
                out.append(new)
            return FakeDataset(out)

    datasets = types.ModuleType("datasets")

    def load_dataset(kind, data_files=None, split=None):
        rec.add("load_dataset", kind, data_files=data_files, split=split)
        with open(data_files, encoding="utf-8") as handle:
            return FakeDataset([json.loads(line) for line in handle if line.strip()])

    datasets.load_dataset = load_dataset

    trl = types.ModuleType("trl")
    trl.__version__ = trl_version

    class SFTTrainer:
        def __init__(self, **kwargs):
            rec.add("SFTTrainer", **kwargs)
            self.model = kwargs["model"]
            self.kwargs = kwargs
            self.accelerator = types.SimpleNamespace(unwrap_model=lambda m: m)

        def train(self):
            callback = self.kwargs["callbacks"][0]
            state = types.SimpleNamespace(is_world_process_zero=True, global_step=20)
            callback.on_log(None, state, None, logs={"loss": 1.25, "epoch": 0.5, "note": "x"})
            return types.SimpleNamespace(metrics={"train_loss": 1.0, "train_runtime": 3.5})

        def log_metrics(self, split, metrics):
            rec.add("trainer.log_metrics", split, metrics)

    trl.SFTTrainer = SFTTrainer

    mlflow = types.ModuleType("mlflow")

    @contextlib.contextmanager
    def start_run():
        rec.add("start_run")
        yield types.SimpleNamespace()
        rec.add("end_run")

    mlflow.start_run = start_run
    mlflow.log_params = lambda params: rec.add("log_params", params)
    mlflow.log_metrics = lambda metrics, step=None: rec.add("log_metrics", metrics, step=step)
    mlflow.log_artifacts = lambda local_dir, artifact_path=None: rec.add(
        "log_artifacts", local_dir, artifact_path=artifact_path)
    mlflow_transformers = types.ModuleType("mlflow.transformers")
    mlflow_transformers.save_model = lambda **kwargs: rec.add("save_model", **kwargs)
    mlflow.transformers = mlflow_transformers
    mlflow_models = types.ModuleType("mlflow.models")

    def infer_signature(model_input=None, model_output=None, params=None):
        rec.add("infer_signature", model_input=model_input, model_output=model_output, params=params)
        return "SIGNATURE"

    mlflow_models.infer_signature = infer_signature
    mlflow.models = mlflow_models

    return {
        "torch": torch, "transformers": transformers, "datasets": datasets, "trl": trl,
        "mlflow": mlflow, "mlflow.transformers": mlflow_transformers, "mlflow.models": mlflow_models,
    }


class MainWithFakesTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        train_dir = os.path.join(self.tmp.name, "train")
        os.makedirs(train_dir)
        with open(os.path.join(train_dir, "train.jsonl"), "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                                  {"role": "assistant", "content": "Hello"}]}) + "\n")
            handle.write(json.dumps({"messages": [{"role": "system", "content": "S"},
                                                  {"role": "user", "content": "Q"},
                                                  {"role": "assistant", "content": "A"}]}) + "\n")
        self.eval_file = os.path.join(self.tmp.name, "test.jsonl")
        with open(self.eval_file, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"messages": [{"role": "user", "content": "Q2"},
                                                  {"role": "assistant", "content": "A2"}]}) + "\n")
        self.train_dir = train_dir
        self.model_output = os.path.join(self.tmp.name, "model_output")
        os.makedirs(self.model_output)

    def run_main(self, extra=(), **fake_options):
        rec = Recorder()
        argv = ["--train-file", self.train_dir, "--eval-file", self.eval_file,
                "--model-output", self.model_output, *extra]
        with mock.patch.dict(sys.modules, make_fakes(rec, **fake_options)), \
                mock.patch.dict(os.environ, {}, clear=False):
            code = fine_tune.main(argv)
        return code, rec

    def run_main_capturing_stdout(self, extra=(), **fake_options):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code, rec = self.run_main(extra, **fake_options)
        return code, rec, out.getvalue()

    def test_wiring(self):
        code, rec, out = self.run_main_capturing_stdout(["--epochs", "2", "--max-seq-length", "512"],
                                                        cuda=True)
        self.assertNotIn("CPU", out)
        self.assertEqual(code, 0)

        (_, (name,), kwargs), = rec.named("model.from_pretrained")
        self.assertEqual(name, fine_tune.DEFAULT_BASE_MODEL)
        self.assertEqual(kwargs["torch_dtype"], "torch.bfloat16")
        self.assertFalse(kwargs["use_cache"])

        loaded = [c[1][0] for c in rec.named("load_dataset")]
        self.assertEqual(loaded, ["json", "json"])
        files = [c[2]["data_files"] for c in rec.named("load_dataset")]
        self.assertEqual(files, [os.path.join(self.train_dir, "train.jsonl"), self.eval_file])

        (_, _, sft), = rec.named("SFTTrainer")
        self.assertEqual(sft["max_seq_length"], 512)
        self.assertTrue(sft["packing"])
        self.assertEqual(sft["dataset_text_field"], "text")
        texts = [row["text"] for row in sft["train_dataset"].rows]
        self.assertEqual(texts[0], phi3_render([{"role": "system", "content": ""},
                                                {"role": "user", "content": "Hi"},
                                                {"role": "assistant", "content": "Hello"}]))
        self.assertIn("<|system|>\nS<|end|>", texts[1])
        self.assertEqual(sft["train_dataset"].column_names, ["text"])
        self.assertEqual(len(sft["eval_dataset"]), 1)
        self.assertEqual(sft["tokenizer"].pad_token, "<unk>")

        (_, _, targs), = rec.named("TrainingArguments")
        self.assertEqual(targs["num_train_epochs"], 2)
        self.assertIs(targs["bf16"], True)
        self.assertNotIn("use_cpu", targs)

        step_logs = [c for c in rec.named("log_metrics") if c[2].get("step") == 20]
        self.assertEqual(step_logs[0][1][0], {"loss": 1.25, "epoch": 0.5})

        (_, _, saved), = rec.named("save_model")
        self.assertEqual(saved["path"], self.model_output)
        self.assertEqual(saved["task"], "text-generation")
        self.assertEqual(saved["torch_dtype"], "torch.float16")
        self.assertEqual(saved["signature"], "SIGNATURE")
        self.assertEqual(saved["input_example"], fine_tune.serving_input_example())
        self.assertIn("azureml-ai-monitoring", saved["extra_pip_requirements"])
        self.assertIn("mlflow==2.16.2", saved["extra_pip_requirements"])
        self.assertIn("{prompt}", saved["prompt_template"])
        self.assertEqual(saved["transformers_model"]["model"].dtype, "torch.float16")
        self.assertTrue(saved["transformers_model"]["model"].config.use_cache)
        self.assertEqual(saved["transformers_model"]["tokenizer"].padding_side, "left")

        (_, _, signature_call), = rec.named("infer_signature")
        self.assertEqual(signature_call["params"], fine_tune.DEFAULT_INFERENCE_PARAMS)
        self.assertEqual(signature_call["model_input"], fine_tune.serving_input_example()[0])

        (_, (local_dir,), art), = rec.named("log_artifacts")
        self.assertEqual((local_dir, art["artifact_path"]), (self.model_output, "model_output"))
        names = [c[0] for c in rec.calls]
        self.assertLess(names.index("start_run"), names.index("SFTTrainer"))
        self.assertLess(names.index("save_model"), names.index("end_run"))

    def test_cpu_profile(self):
        code, rec, out = self.run_main_capturing_stdout(["--serving-dtype", "float32"], cuda=False)
        self.assertEqual(code, 0)
        cpu_lines = [line for line in out.splitlines() if "CPU" in line]
        self.assertEqual(len(cpu_lines), 1, out)
        self.assertIn("float32", cpu_lines[0])

        (_, _, loaded), = rec.named("model.from_pretrained")
        self.assertEqual(loaded["torch_dtype"], "torch.float32")
        (_, _, targs), = rec.named("TrainingArguments")
        self.assertIs(targs["use_cpu"], True)
        self.assertIs(targs["bf16"], False)

        (_, _, saved), = rec.named("save_model")
        self.assertEqual(saved["torch_dtype"], "torch.float32")
        self.assertEqual(saved["transformers_model"]["model"].dtype, "torch.float32")
        self.assertEqual(saved["metadata"]["serving_dtype"], "float32")
        self.assertIn("fp32", saved["metadata"]["trained_with"])

    def test_cpu_ignores_the_bf16_probe(self):
        # Without CUDA, torch.cuda.is_bf16_supported() says nothing about the CPU: no refusal.
        code, rec, _ = self.run_main_capturing_stdout(cuda=False, bf16=False)
        self.assertEqual(code, 0)
        (_, _, targs), = rec.named("TrainingArguments")
        self.assertIs(targs["use_cpu"], True)

    def test_bfloat16_serving_and_no_run_copy(self):
        _, rec = self.run_main(["--serving-dtype", "bfloat16", "--no-log-model-to-run"], cuda=True)
        (_, _, saved), = rec.named("save_model")
        self.assertEqual(saved["torch_dtype"], "torch.bfloat16")
        self.assertEqual(rec.named("log_artifacts"), [])

    def test_refuses_unsupported_trl(self):
        with self.assertRaisesRegex(RuntimeError, "trl 0.12.0"):
            self.run_main(trl_version="0.12.0")

    def test_refuses_gpu_without_bf16(self):
        with self.assertRaisesRegex(RuntimeError, "bfloat16"):
            self.run_main(cuda=True, bf16=False)

    def test_refuses_non_empty_output_before_training(self):
        with open(os.path.join(self.model_output, "stale"), "w"):
            pass
        rec = Recorder()
        with mock.patch.dict(sys.modules, make_fakes(rec)), self.assertRaisesRegex(ValueError, "not empty"):
            fine_tune.main(["--train-file", self.train_dir, "--eval-file", self.eval_file,
                            "--model-output", self.model_output])
        self.assertEqual(rec.named("model.from_pretrained"), [])


if __name__ == "__main__":
    unittest.main()
