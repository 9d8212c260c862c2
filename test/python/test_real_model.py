"""The Python that Azure ML runs, proven with the real libraries at the job's pins.

Runs in .venv/train (cli/local/requirements.txt: conda.yml's pins, torch's CPU build). Nothing
is downloaded: the base model is a tiny random-weight Phi-3 (cli/local/tiny_phi3.py), the data
a hub-like copy of the example JSONL. Each test here would have failed before the fix it names:

* MLflow's save needed torchvision (crash at the very end of training);
* longrope configs (Phi-3.5-mini, Phi-3-mini-128k) do not load in transformers 4.41.2;
* the bf16 guard trusted ``torch.cuda.is_bf16_supported()``, True on V100/T4 from torch 2.4;
* a conversation sent as chat messages was silently mangled by MLflow (it answered the ``role``
  column), so conversations travel as one prompt through the model's template and the model
  refuses message objects (test_serving.py covers the rest of the served model's rules);
* under ``torchrun`` every rank would have logged to MLflow and written the model.
"""

import json
import logging
import os
import re
import sys
import unittest
from unittest import mock

import helpers

helpers.add_to_path(helpers.FINETUNING_DIR)
helpers.add_to_path(helpers.PROMPTFLOW_DIR)
helpers.add_to_path(helpers.LOCAL_DIR)

import call_endpoint  # noqa: E402  (the Prompt flow tool; stdlib apart from promptflow)
import fine_tune  # noqa: E402
import phi3_serving  # noqa: E402
import score_server  # noqa: E402
import tiny_phi3  # noqa: E402

logging.getLogger("mlflow").setLevel(logging.ERROR)  # "params override the saved config" on every predict


def free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chat_ts_payload(shape, messages, temperature, max_new_tokens):
    """The exact body `npm run chat` sends (cli/chat.ts buildPayload, run by Node)."""
    script = (
        "import { buildPayload } from './cli/chat';"
        f"console.log(JSON.stringify(buildPayload({json.dumps(shape)}, {json.dumps(messages)}, "
        f"{{ temperature: {temperature}, maxNewTokens: {max_new_tokens} }})));"
    )
    done = helpers.run(["npx", "--no-install", "tsx", "-e", script], env=dict(os.environ))
    if done.returncode != 0:
        raise AssertionError(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


class TrainLocalTest(unittest.TestCase):
    """prepare_data.py's folders -> npm run train:local -> an MLflow model."""

    @classmethod
    def setUpClass(cls):
        cls.result = helpers.trained_model()
        cls.model_dir = cls.result["model"]

    def test_prepare_data_slices_and_splits_with_the_real_datasets_library(self):
        self.assertIn("42 rows", self.result["prep"].stdout)  # train_sft[:75%] of 56 rows
        train = helpers.read_jsonl(os.path.join(self.result["train_dir"], "train.jsonl"))
        test = helpers.read_jsonl(os.path.join(self.result["test_dir"], "test.jsonl"))
        self.assertEqual((len(train), len(test)), (34, 8))  # test_size 0.2, seed 0
        self.assertEqual(set(train[0]), {"messages"})

    def test_progress_and_timing_are_printed(self):
        err = self.result["train"].stdout + self.result["train"].stderr
        self.assertRegex(err, r"(?m)^step 1/\d+  loss \d+\.\d{4}  lr ")
        self.assertRegex(err, r"(?m)^step \d+/\d+  eval_loss \d+\.\d{4}")
        self.assertRegex(err, r"MLflow model written to .* in \d+\.\d s")
        # The job's arguments with the local overrides.
        self.assertRegex(err, r"--learning-rate 0\.000005 --per-device-batch-size 4 --max-seq-length 128 "
                              r"--warmup-ratio 0\.2 --lr-scheduler cosine --seed 0 --serving-dtype float32")

    def test_writes_an_mlflow_transformers_model_with_the_prompt_list_signature(self):
        from mlflow.models import Model

        meta = Model.load(self.model_dir)
        self.assertIn("transformers", meta.flavors)
        self.assertEqual(meta.flavors["python_function"]["loader_module"], "phi3_serving")
        self.assertEqual(meta.flavors["transformers"]["task"], "text-generation")
        self.assertTrue(score_server.signature_takes_string_list(type("M", (), {"metadata": meta})()))
        params = {p.name: p.default for p in meta.signature.params.params}
        self.assertEqual(params, fine_tune.DEFAULT_INFERENCE_PARAMS)
        self.assertEqual(meta.metadata["conversation_turn_separator"], fine_tune.CONVERSATION_TURN_SEPARATOR)

    def test_recorded_requirements_are_the_jobs_pins_without_torchvision(self):
        with open(os.path.join(self.model_dir, "requirements.txt"), encoding="utf-8") as handle:
            reqs = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
        self.assertEqual(reqs, fine_tune.serving_pip_requirements())
        self.assertFalse(any("torchvision" in r for r in reqs))
        import yaml

        with open(os.path.join(self.model_dir, "conda.yaml"), encoding="utf-8") as handle:
            conda = yaml.safe_load(handle)
        pip = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
        self.assertEqual([p for p in pip if not p.startswith("-")], reqs)

    def test_invalid_jsonl_exits_1_naming_file_and_line_before_any_training(self):
        bad = os.path.join(helpers.FIXTURES, "bad", "mixed.jsonl")
        out = helpers.scratch_dir("never")
        done = helpers.run(["npx", "--no-install", "tsx", "cli/train-local.ts", "--train-file", bad,
                            "--eval-file", self.result["test_dir"], "--output", os.path.join(out, "m")])
        self.assertEqual(done.returncode, 1, done.stderr)
        self.assertIn(f"{bad}:3: invalid JSON", done.stderr)
        self.assertIn("nothing was trained", done.stderr)
        self.assertNotIn("fine_tune.py", done.stderr)
        self.assertFalse(os.path.exists(os.path.join(out, "m")))


class PredictTest(unittest.TestCase):
    """``model.predict(input_data, params=params)`` as Azure ML's no-code MLflow scoring calls
    it, with the bodies the real clients send."""

    @classmethod
    def setUpClass(cls):
        import mlflow
        from transformers import AutoTokenizer

        cls.model = mlflow.pyfunc.load_model(helpers.trained_model()["model"])
        cls.trace = os.path.join(helpers.scratch_dir("trace"), "prompts.jsonl")
        score_server.install_trace(cls.model, cls.trace)
        cls.tokenizer = AutoTokenizer.from_pretrained(os.path.join(helpers.trained_model()["model"], "components", "tokenizer"))

    def score(self, body):
        input_data, params = score_server.split_request(body, score_server.signature_takes_string_list(self.model))
        return self.model.predict(input_data, params=params)

    def last_prompts(self, count):
        return [r["prompt"] for r in helpers.read_jsonl(self.trace)[-count:]]

    def phi3(self, messages):
        """Phi-3's own rendering of a conversation (the tokenizer's chat template), without <s>."""
        text = self.tokenizer.apply_chat_template(fine_tune.normalize_messages(messages), tokenize=False,
                                                  add_generation_prompt=True)
        return text

    def test_prompt_flow_tool_body_with_history_reaches_the_model_in_phi3_chat_format(self):
        history = call_endpoint.history_messages([
            {"inputs": {"question": "Who founded Microsoft?"}, "outputs": {"answer": "Bill Gates and Paul Allen."}},
        ])
        body = call_endpoint.build_payload("When?", "prompt-list", 0.7, 8, history)
        answer = self.score(body)
        self.assertIsInstance(answer, list)
        self.assertEqual(len(answer), 1)
        self.assertIsInstance(answer[0], str)
        self.assertEqual(call_endpoint.parse_response(json.dumps(answer)), answer[0])
        expected = self.phi3(history + [{"role": "user", "content": "When?"}])
        self.assertEqual(self.last_prompts(1), [expected])
        self.assertIn("<|user|>\nWho founded Microsoft?<|end|>\n<|assistant|>\nBill Gates and Paul Allen.<|end|>\n<|user|>\nWhen?<|end|>\n<|assistant|>\n", expected)

    def test_npm_run_chat_prompt_list_bodies_with_temperature_0_are_greedy(self):
        conversation = [{"role": "user", "content": "Who founded Microsoft?"},
                        {"role": "assistant", "content": "Two friends."},
                        {"role": "user", "content": "Name them."}]
        body = chat_ts_payload("prompt-list", conversation, 0, 6)
        self.assertEqual(body["params"]["do_sample"], False)
        first, second = self.score(body), self.score(body)
        self.assertEqual(first, second)  # greedy decoding is deterministic
        self.assertEqual(self.last_prompts(1), [self.phi3(conversation)])
        sampled = chat_ts_payload("prompt-list", conversation[:1], 0.7, 6)
        self.assertEqual(sampled["params"]["do_sample"], True)
        self.assertEqual(len(self.score(sampled)), 1)

    def test_npm_run_chat_chat_shape_is_refused_by_the_model_as_on_azure(self):
        # Azure's scoring script unwraps {"input_string", "parameters"} and hands the messages to
        # the model, as serve:local does; the model refuses them (HTTP 400 locally).
        body = chat_ts_payload("chat", [{"role": "user", "content": "Who founded Microsoft?"}], 0.7, 6)
        traced = len(helpers.read_jsonl(self.trace)) if os.path.exists(self.trace) else 0
        with self.assertRaises(phi3_serving.InvalidRequest) as ctx:
            self.score(body)
        self.assertEqual(score_server.refusal_status(ctx.exception), 400)
        self.assertIn("list of prompt strings", str(ctx.exception))
        self.assertEqual(len(helpers.read_jsonl(self.trace)) if os.path.exists(self.trace) else 0, traced, "nothing generated")

    def test_messages_as_dicts_are_refused_not_answered_from_the_role_column(self):
        with self.assertRaisesRegex(phi3_serving.InvalidRequest, r"objects \(keys: role\)"):
            self.model.predict([{"role": "user", "content": "Who founded Microsoft?"}], params={"max_new_tokens": 2, "do_sample": False})

    def test_max_new_tokens_is_applied(self):
        def tokens(max_new):
            answer = self.score({"input_data": ["Who founded Microsoft?"],
                                 "params": {"max_new_tokens": max_new, "do_sample": False, "temperature": 0.0}})[0]
            return self.tokenizer(answer, add_special_tokens=False).input_ids

        one, twelve = tokens(1), tokens(12)
        self.assertLessEqual(len(one), 1)
        self.assertGreater(len(twelve), len(one))

    def test_temperature_0_with_sampling_is_greedy_in_the_model_itself(self):
        body = {"input_data": ["q"], "params": {"temperature": 0.0, "do_sample": True, "max_new_tokens": 4}}
        self.assertEqual(self.score(body), self.score({"input_data": ["q"], "params": {"do_sample": False, "max_new_tokens": 4}}))


class LongRopeTest(unittest.TestCase):
    """Phi-3.5-mini-instruct / Phi-3-mini-128k-instruct ship rope_scaling type longrope."""

    @classmethod
    def setUpClass(cls):
        cls.base = tiny_phi3.build_tiny_phi3(helpers.scratch_dir("longrope-base"),
                                             [os.path.join(helpers.FIXTURES, "train.jsonl")], longrope=True)

    def test_transformers_4_41_refuses_longrope_natively(self):
        from transformers import AutoModelForCausalLM

        with self.assertRaisesRegex(ValueError, r"must be one of \['su', 'yarn'\], got longrope"):
            AutoModelForCausalLM.from_pretrained(self.base)

    def test_fine_tune_trains_it_without_remote_code_and_the_model_serves(self):
        import mlflow

        out = os.path.join(helpers.scratch_dir("longrope-model"), "model")
        done = helpers.run([sys.executable, "fine_tune.py", "--train-file", os.path.join(helpers.FIXTURES, "train.jsonl"),
                            "--eval-file", os.path.join(helpers.FIXTURES, "test.jsonl"), "--model-output", out,
                            "--base-model", self.base, "--epochs", "1", "--max-seq-length", "128",
                            "--serving-dtype", "float32", "--no-log-model-to-run"], cwd=helpers.FINETUNING_DIR)
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        with open(os.path.join(out, "model", "config.json"), encoding="utf-8") as handle:
            config = json.load(handle)
        self.assertEqual(config["rope_scaling"]["type"], "su")
        self.assertNotIn("auto_map", config)
        answer = mlflow.pyfunc.load_model(out).predict(["Hi"], params={"max_new_tokens": 2, "do_sample": False})
        self.assertEqual(len(answer), 1)


class Bf16GuardTest(unittest.TestCase):
    def test_v100_is_refused_before_anything_loads_although_torch_says_bf16(self):
        import torch
        import transformers

        args = fine_tune.parse_args(["--train-file", "t", "--eval-file", "e", "--model-output", "o"])
        with mock.patch.object(torch.cuda, "is_available", return_value=True), \
                mock.patch.object(torch.cuda, "is_bf16_supported", return_value=True), \
                mock.patch.object(torch.cuda, "get_device_capability", return_value=(7, 0)), \
                mock.patch.object(torch.cuda, "get_device_name", return_value="Tesla V100-PCIE-16GB"), \
                mock.patch.object(transformers.AutoModelForCausalLM, "from_pretrained",
                                  side_effect=AssertionError("the model must not load")):
            with self.assertRaisesRegex(RuntimeError, r"Tesla V100-PCIE-16GB has no native bfloat16"):
                fine_tune.train(args)

    def test_a100_passes_the_guard(self):
        import torch

        args = fine_tune.parse_args(["--train-file", "/nonexistent.jsonl", "--eval-file", "e", "--model-output", "o"])
        with mock.patch.object(torch.cuda, "is_available", return_value=True), \
                mock.patch.object(torch.cuda, "get_device_capability", return_value=(8, 0)):
            with self.assertRaises(FileNotFoundError):  # the next check: the data
                fine_tune.train(args)


class TorchrunTest(unittest.TestCase):
    def test_two_cpu_processes_train_and_rank_0_alone_writes_one_model(self):
        work = helpers.scratch_dir("torchrun")
        base = tiny_phi3.build_tiny_phi3(os.path.join(work, "base"), [os.path.join(helpers.FIXTURES, "train.jsonl")])
        out = os.path.join(work, "model")
        mlruns = os.path.join(work, "mlruns")  # created by MLflow
        torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
        done = helpers.run([torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), "fine_tune.py",
                            "--train-file", os.path.join(helpers.FIXTURES, "train.jsonl"),
                            "--eval-file", os.path.join(helpers.FIXTURES, "test.jsonl"), "--model-output", out,
                            "--base-model", base, "--epochs", "1", "--max-seq-length", "128",
                            "--per-device-batch-size", "2", "--serving-dtype", "float32", "--logging-steps", "1"],
                           cwd=helpers.FINETUNING_DIR, env=helpers.job_env(MLFLOW_TRACKING_URI="file://" + mlruns))
        self.assertEqual(done.returncode, 0, done.stderr[-4000:])
        self.assertIn("distributed: 2 processes (gloo); rank 0 saves the model", done.stdout)
        self.assertEqual(len(re.findall(r"(?m)^step 1/", done.stdout)), 1, "rank 0 alone prints progress")
        self.assertTrue(os.path.isfile(os.path.join(out, "MLmodel")))
        runs = [r for exp in os.listdir(mlruns) if exp.isdigit()
                for r in os.listdir(os.path.join(mlruns, exp)) if len(r) == 32]
        self.assertEqual(len(runs), 1, "one MLflow run, from rank 0")


if __name__ == "__main__":
    unittest.main()
