"""Tests of finetuning_dir/fine_tune.py's pure logic (argument parsing, trainer settings,
serving configuration, pins). What the script does with torch, transformers, trl and mlflow is
proven with the real libraries in test_real_model.py."""

import json
import os
import re
import sys
import tempfile
import unittest

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
        self.assertEqual(args.logging_steps, 20)
        self.assertEqual((args.precision, args.method, args.lora_rank), ("bf16-mixed", "full", 16))
        # The stack registers model_output: no second ~7.6 GB upload unless asked (issue 20 item 8).
        self.assertFalse(args.log_model_to_run)
        self.assertTrue(fine_tune.parse_args(REQUIRED + ["--log-model-to-run"]).log_model_to_run)

    def test_precision_and_method_choices(self):
        args = fine_tune.parse_args(REQUIRED + ["--precision", "bf16", "--method", "lora", "--lora-rank", "8"])
        self.assertEqual((args.precision, args.method, args.lora_rank), ("bf16", "lora", 8))
        for bad in (["--precision", "fp16"], ["--method", "qlora"], ["--lora-rank", "0"]):
            with helpers.quiet_stderr(), self.assertRaises(SystemExit):
                fine_tune.parse_args(REQUIRED + bad)
        kwargs = fine_tune.lora_config_kwargs(8)
        self.assertEqual((kwargs["r"], kwargs["lora_alpha"]), (8, 16))
        self.assertEqual(set(kwargs["target_modules"]), {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"})

    def test_all_options(self):
        args = fine_tune.parse_args(REQUIRED + [
            "--base-model", "microsoft/Phi-3.5-mini-instruct", "--epochs", "1",
            "--learning-rate", "1e-5", "--per-device-batch-size", "2", "--max-seq-length", "1024",
            "--warmup-ratio", "0", "--lr-scheduler", "linear", "--seed", "42",
            "--serving-dtype", "bf16", "--logging-steps", "1", "--no-log-model-to-run",
        ])
        self.assertEqual(args.base_model, "microsoft/Phi-3.5-mini-instruct")
        self.assertEqual((args.epochs, args.learning_rate, args.per_device_batch_size), (1, 1e-5, 2))
        self.assertEqual((args.max_seq_length, args.warmup_ratio, args.lr_scheduler), (1024, 0.0, "linear"))
        self.assertEqual(args.seed, 42)
        self.assertEqual(args.serving_dtype, "bfloat16")
        self.assertEqual(args.logging_steps, 1)
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
            REQUIRED + ["--logging-steps", "0"],
            REQUIRED + ["--trust-remote-code"],  # removed: no code from the hub runs
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
        cases = [  # (use_cpu, precision, method) -> dtype the model is loaded in
            ((True, "bf16-mixed", "full"), "float32"),
            ((True, "bf16", "full"), "float32"),
            ((True, "bf16-mixed", "lora"), "float32"),
            ((False, "bf16-mixed", "full"), "float32"),  # fp32 master weights, bf16 autocast
            ((False, "bf16", "full"), "bfloat16"),
            ((False, "bf16-mixed", "lora"), "bfloat16"),  # frozen base; PEFT keeps adapters fp32
            ((False, "bf16", "lora"), "bfloat16"),
        ]
        for given, expected in cases:
            self.assertEqual(fine_tune.training_dtype_name(*given), expected, given)
            self.assertIn(expected, fine_tune.SERVING_DTYPES)  # a name _torch_dtype understands
        self.assertEqual(fine_tune.training_dtype_name(False), "float32", "bf16-mixed is the default")

    def test_model_metadata_records_the_training_precision(self):
        args = fine_tune.parse_args(REQUIRED)
        self.assertIn("bf16-mixed", fine_tune.model_metadata(args)["trained_with"])
        lora = fine_tune.parse_args(REQUIRED + ["--method", "lora", "--precision", "bf16"])
        self.assertIn("bf16, LoRA r=16 merged", fine_tune.model_metadata(lora)["trained_with"])
        self.assertEqual(fine_tune.model_metadata(args, context=4096)["context_length"], 4096)
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

    def test_serving_pip_requirements_are_the_conda_pins_without_torchvision(self):
        reqs = fine_tune.serving_pip_requirements()
        self.assertEqual(reqs, ["mlflow==2.16.2", "torch==2.4.0", "transformers==4.41.2",
                                "accelerate==0.33.0", "azureml-ai-monitoring==1.0.0", "numpy<2.0"])
        self.assertFalse(any("torchvision" in r for r in reqs))

    def test_serving_pip_requirements_name_the_file_and_the_missing_pin(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "conda.yml")
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("dependencies:\n  - python=3.10\n  - pip:\n      - mlflow==2.16.2\n      - torch>=2.4\n")
            with self.assertRaisesRegex(ValueError, r"conda\.yml: no '==' pin for torch, transformers, accelerate, azureml-ai-monitoring"):
                fine_tune.serving_pip_requirements(path)

    def test_conversation_prompt(self):
        conv = [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]
        self.assertEqual(fine_tune.conversation_prompt(conv), "Q1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nQ2")
        self.assertEqual(fine_tune.conversation_prompt(conv[:1]), "Q1")
        # Through the model's template, that is exactly Phi-3's rendering of the conversation.
        template = "<|system|>\n<|end|>\n<|user|>\n{prompt}<|end|>\n<|assistant|>\n"
        rendered = phi3_render(fine_tune.normalize_messages(conv), add_generation_prompt=True)
        self.assertEqual(PHI3_BOS + template.format(prompt=fine_tune.conversation_prompt(conv)), rendered)
        for bad in ([], conv[:2], conv[1:], [{"role": "system", "content": "s"}] + conv):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                fine_tune.conversation_prompt(bad)
        self.assertEqual(fine_tune.model_metadata(fine_tune.parse_args(REQUIRED))["conversation_turn_separator"],
                         fine_tune.CONVERSATION_TURN_SEPARATOR)

    def test_clients_use_the_same_turn_separator(self):
        import call_endpoint

        self.assertEqual(call_endpoint.CONVERSATION_TURN_SEPARATOR, fine_tune.CONVERSATION_TURN_SEPARATOR)
        with open(os.path.join(helpers.REPO_ROOT, "cli", "chat.ts"), encoding="utf-8") as handle:
            ts = re.search(r'export const CONVERSATION_TURN_SEPARATOR = "([^"]*)";', handle.read()).group(1)
        self.assertEqual(ts.replace("\\n", "\n"), fine_tune.CONVERSATION_TURN_SEPARATOR)

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


class DeviceAndDistributionTest(unittest.TestCase):
    def test_native_bf16_needs_compute_capability_8(self):
        for capability in ((8, 0), (8, 6), (9, 0), (10, 0)):  # A100, A10, H100, B200
            self.assertTrue(fine_tune.gpu_has_native_bf16(capability), capability)
        for capability in ((7, 0), (7, 5), (6, 1)):  # V100, T4, P40
            self.assertFalse(fine_tune.gpu_has_native_bf16(capability), capability)

    def test_rank(self):
        self.assertEqual(fine_tune.distributed_rank({}), 0)
        self.assertEqual(fine_tune.distributed_rank({"RANK": "3"}), 3)
        self.assertTrue(fine_tune.is_main_process({"RANK": "0", "WORLD_SIZE": "2"}))
        self.assertFalse(fine_tune.is_main_process({"RANK": "1"}))
        with self.assertRaisesRegex(ValueError, "RANK"):
            fine_tune.distributed_rank({"RANK": "-1"})

    def test_native_config_dict(self):
        hub = {"model_type": "phi3", "auto_map": {"AutoConfig": "configuration_phi3.Phi3Config"},
               "rope_scaling": {"type": "longrope", "short_factor": [1.0], "long_factor": [2.0]}}
        native = fine_tune.native_config_dict(hub)
        self.assertEqual(native, {"model_type": "phi3",
                                  "rope_scaling": {"type": "su", "short_factor": [1.0], "long_factor": [2.0]}})
        self.assertEqual(hub["rope_scaling"]["type"], "longrope")  # input untouched
        plain = {"model_type": "phi3", "rope_scaling": None}
        self.assertEqual(fine_tune.native_config_dict(plain), plain)

    def test_progress_line(self):
        self.assertEqual(fine_tune.progress_line(3, 40, {"loss": 1.23456, "learning_rate": 4.1e-6, "epoch": 0.1}),
                         "step 3/40  loss 1.2346  lr 4.10e-06")
        self.assertEqual(fine_tune.progress_line(40, 40, {"eval_loss": 2.0}), "step 40/40  eval_loss 2.0000")
        self.assertIsNone(fine_tune.progress_line(40, 40, {"train_runtime": 1.0}))


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
        self.assertIn("rich", self.pins, "trl 0.8.6 imports rich without declaring it")

    def test_the_preparation_environment_pins_the_same_datasets(self):
        with open(os.path.join(helpers.FINETUNING_DIR, "conda-prep.yml"), encoding="utf-8") as handle:
            prep = dict(re.findall(r"^\s*-\s*([A-Za-z0-9_.\-]+)==([^\s#]+)", handle.read(), re.M))
        self.assertEqual(prep, {"datasets": self.pins["datasets"]})

    def test_local_requirements_carry_the_same_pins(self):
        """cli/local/requirements.txt (local runs, tests) = conda.yml's pip pins, torch excepted."""
        path = os.path.join(helpers.REPO_ROOT, "cli", "local", "requirements.txt")
        with open(path, encoding="utf-8") as handle:
            lines = [l.strip() for l in handle if l.strip() and not l.startswith("#")]
        local = dict(l.split("==", 1) for l in lines if "==" in l)
        self.assertEqual(local.pop("torch"), "2.13.0", "the CPU wheel on disk")
        job = dict(self.pins)
        job.pop("torch")
        self.assertEqual(local, job)
        self.assertIn("numpy<2.0", lines)
        self.assertRegex(self.text, r"(?m)^\s*-\s*numpy<2\.0\s*$")


if __name__ == "__main__":
    unittest.main()


class ExpectedLocalWarningsTest(unittest.TestCase):
    """A local run silences only the warnings it always prints, and says once why."""

    def test_drops_the_expected_records_and_keeps_the_rest(self):
        import io
        import logging

        flt = fine_tune.ExpectedWarnings()
        cases = [
            ("mlflow.utils.requirements_utils", "Detected one or more mismatches between the model's dependencies", False),
            ("mlflow.transformers", "Unable to find license information for this model.", False),
            ("mlflow.transformers", "The model card could not be retrieved from the hub", False),
            ("transformers.models.phi3.modeling_phi3", "You are not running the flash-attention implementation, expect numerical differences.", False),
            ("mlflow.transformers", "Some other warning", True),
            ("mlflow.utils.requirements_utils", "Something else", True),
            ("other.logger", "Unable to find license information", True),
        ]
        for name, message, kept in cases:
            record = logging.LogRecord(name, logging.WARNING, __file__, 1, message, None, None)
            self.assertEqual(flt.filter(record), kept, (name, message))
        said = io.StringIO()
        fine_tune.quiet_expected_local_warnings(stream=said)
        self.assertIn("expected warnings are silenced", said.getvalue())
        self.assertEqual(said.getvalue().count("\n"), 1)
