"""Issue 20 with the real libraries: what the served model does with every reasonable request, and
training that is right at every scale. Runs in .venv/train.

The served model is the one `npm run train:local` writes (helpers.trained_model(), shared with
test_real_model.py and test_local_endpoint.py); the training checks use one tiny random Phi-3
base built once for this module. Each test would have failed before its fix:

* ``temperature: 0`` raised in the transformers pipeline (HTTP 500);
* ``return_full_text: true`` returned the Phi-3 template markup before the answer;
* a prompt over the 4,096-position context was answered (silently degraded output);
* served prompts had no ``<s>``: the pipeline tokenizes with ``add_special_tokens=False``;
* the packing order came from the unseeded global ``random`` (each process its own order);
* pure-bf16 AdamW at lr 5e-6 rounds most updates away.
"""

import json
import os
import sys
import unittest

import helpers

helpers.add_to_path(helpers.FINETUNING_DIR)
helpers.add_to_path(helpers.LOCAL_DIR)

import fine_tune  # noqa: E402
import phi3_serving  # noqa: E402
import score_server  # noqa: E402
import tiny_phi3  # noqa: E402

TRAIN = os.path.join(helpers.FIXTURES, "train.jsonl")
TEST = os.path.join(helpers.FIXTURES, "test.jsonl")
DEFAULTS = fine_tune.DEFAULT_INFERENCE_PARAMS

_base = {}


def tiny_base():
    """One tiny random Phi-3 (tokenizer trained on the fixture) for this module's training checks."""
    if "path" not in _base:
        _base["path"] = tiny_phi3.build_tiny_phi3(helpers.scratch_dir("serving-base"), [TRAIN])
    return _base["path"]


class GenerationSettingsTest(unittest.TestCase):
    """The parameter rules of the served model, table-driven (no model needed)."""

    def test_valid_params(self):
        cases = [
            ({"temperature": 0.0}, {"max_new_tokens": 256, "do_sample": False}),
            ({"temperature": 0, "do_sample": True}, {"max_new_tokens": 256, "do_sample": False}),
            ({"temperature": 1e-6}, {"max_new_tokens": 256, "do_sample": False}),
            ({"temperature": 0.7, "max_new_tokens": 8}, {"max_new_tokens": 8, "do_sample": True, "temperature": 0.7, "top_p": 0.95}),
            ({"do_sample": False, "temperature": 0.7}, {"max_new_tokens": 256, "do_sample": False}),
            ({"max_new_tokens": 3.0, "top_p": 1}, {"max_new_tokens": 3, "do_sample": True, "temperature": 0.7, "top_p": 1.0}),
            ({"return_full_text": True, "max_new_tokens": 4096}, {"max_new_tokens": 4096, "do_sample": True, "temperature": 0.7, "top_p": 0.95}),
            (None, {"max_new_tokens": 256, "do_sample": True, "temperature": 0.7, "top_p": 0.95}),
        ]
        for params, expected in cases:
            self.assertEqual(phi3_serving.generation_settings(params, DEFAULTS, 4096), expected, params)

    def test_invalid_params_name_the_parameter(self):
        cases = [
            ({"max_new_tokens": "3"}, "params.max_new_tokens must be an integer"),
            ({"max_new_tokens": 0}, "params.max_new_tokens must be between 1 and 4096"),
            ({"max_new_tokens": -5}, "params.max_new_tokens must be between 1 and 4096"),
            ({"max_new_tokens": 4097}, "params.max_new_tokens must be between 1 and 4096"),
            ({"max_new_tokens": 2.5}, "params.max_new_tokens must be an integer"),
            ({"max_new_tokens": True}, "params.max_new_tokens must be an integer"),
            ({"temperature": -0.1}, "params.temperature must be >= 0"),
            ({"temperature": "hot"}, "params.temperature must be a finite number"),
            ({"temperature": float("nan")}, "params.temperature must be a finite number"),
            ({"top_p": 0}, r"params.top_p must be in \(0, 1\]"),
            ({"top_p": 1.5}, r"params.top_p must be in \(0, 1\]"),
            ({"do_sample": "yes"}, "params.do_sample must be true or false"),
            ({"return_full_text": 1}, "params.return_full_text must be true or false"),
        ]
        for params, message in cases:
            with self.assertRaisesRegex(phi3_serving.InvalidRequest, message, msg=params) as ctx:
                phi3_serving.generation_settings(params, DEFAULTS, 4096)
            self.assertEqual(score_server.refusal_status(ctx.exception), 400)

    def test_context_problem_says_by_how_much(self):
        self.assertIsNone(phi3_serving.context_problem(4000, 96, 4096))
        message = phi3_serving.context_problem(4006, 256, 4096)
        self.assertIn("context_length_exceeded", message)
        self.assertIn("4006 tokens", message)
        self.assertIn("by 166 tokens", message)

    def test_prompts_from_input(self):
        self.assertEqual(phi3_serving.prompts_from_input("q"), ["q"])
        self.assertEqual(phi3_serving.prompts_from_input(["a", "b"]), ["a", "b"])
        for bad in ([], [1], [{"role": "user", "content": "x"}], {"a": "b"}, 3):
            with self.assertRaisesRegex(phi3_serving.InvalidRequest, "list of prompt strings", msg=bad):
                phi3_serving.prompts_from_input(bad)


class ServedModelTest(unittest.TestCase):
    """``mlflow.pyfunc.load_model(...).predict`` on the model train:local writes: what Azure ML's
    no-code scoring script, ``mlflow models serve`` and serve:local all call."""

    @classmethod
    def setUpClass(cls):
        import logging

        import mlflow

        logging.getLogger("mlflow").setLevel(logging.ERROR)
        cls.model_dir = helpers.trained_model()["model"]
        cls.model = mlflow.pyfunc.load_model(cls.model_dir)
        cls.impl = cls.model._model_impl
        cls.tokenizer = cls.impl.tokenizer

    def predict(self, prompts, **params):
        return self.model.predict(prompts, params=params)

    def test_the_model_keeps_the_transformers_flavor_and_loads_our_predict(self):
        from mlflow.models import Model

        meta = Model.load(self.model_dir)
        self.assertIn("transformers", meta.flavors, "Azure's scoring script passes prompt lists through for it")
        self.assertEqual(meta.flavors["python_function"]["loader_module"], "phi3_serving")
        self.assertTrue(os.path.isfile(os.path.join(self.model_dir, "code", "phi3_serving.py")))
        self.assertIsInstance(self.impl, phi3_serving.Phi3ChatModel)
        self.assertEqual(meta.metadata["context_length"], 4096)
        self.assertEqual(self.impl.context_length, 4096)
        self.assertEqual(self.tokenizer.model_max_length, 4096, "the real context, not the packing length")

    def test_temperature_0_answers_greedily(self):
        zero = self.predict(["Who founded Microsoft?"], max_new_tokens=8, temperature=0.0)
        greedy = self.predict(["Who founded Microsoft?"], max_new_tokens=8, do_sample=False)
        self.assertEqual(len(zero), 1)
        self.assertIsInstance(zero[0], str)
        self.assertEqual(zero, greedy)
        self.assertEqual(zero, self.predict(["Who founded Microsoft?"], max_new_tokens=8, temperature=0.0, do_sample=True))

    def test_return_full_text_never_returns_the_template(self):
        full = self.predict(["Who founded Microsoft?"], max_new_tokens=8, temperature=0.0, return_full_text=True)
        self.assertNotIn("<|", full[0])
        self.assertEqual(full, self.predict(["Who founded Microsoft?"], max_new_tokens=8, temperature=0.0))
        # Also when the prompt carries a conversation (turn separators are template tokens).
        prompt = fine_tune.conversation_prompt([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                                                {"role": "user", "content": "Who founded Microsoft?"}])
        self.assertNotIn("<|", self.predict([prompt], max_new_tokens=8, temperature=0.7, return_full_text=True)[0])

    def test_invalid_params_are_refused_naming_the_parameter(self):
        from mlflow.exceptions import MlflowException

        cases = [
            ({"max_new_tokens": "3"}, "max_new_tokens"),  # MLflow's own params-schema check
            ({"max_new_tokens": -1}, "max_new_tokens"),
            ({"max_new_tokens": 5000}, "max_new_tokens"),
            ({"temperature": -1.0}, "temperature"),
            ({"top_p": 0.0}, "top_p"),
            ({"do_sample": "yes"}, "do_sample"),
        ]
        for params, name in cases:
            with self.assertRaises(MlflowException, msg=params) as ctx:
                self.predict(["q"], **params)
            self.assertIn(name, ctx.exception.message)
            self.assertEqual(score_server.refusal_status(ctx.exception), 400, params)

    def test_a_prompt_that_cannot_fit_is_refused_saying_by_how_much(self):
        prompt = "word " * 4090
        ids = self.impl.prompt_ids(prompt)
        with self.assertRaises(phi3_serving.InvalidRequest) as ctx:
            self.predict([prompt], max_new_tokens=8)
        over = len(ids) + 8 - 4096
        self.assertIn(f"by {over} tokens", ctx.exception.message)
        self.assertEqual(score_server.refusal_status(ctx.exception), 400)

    def test_chat_messages_are_refused_not_answered_from_the_role_column(self):
        for data in ([{"role": "user", "content": "Who founded Microsoft?"}],
                     score_server.split_request({"input_data": {"input_string": [{"role": "user", "content": "x"}],
                                                                "parameters": {"max_new_tokens": 2}}})[0]):
            with self.assertRaisesRegex(phi3_serving.InvalidRequest, "list of prompt strings"):
                self.predict(data, max_new_tokens=2, temperature=0.0)

    def test_served_token_ids_are_the_training_token_ids(self):
        """trl's packing (the real ConstantLengthDataset, as SFTTrainer builds it) tokenizes the
        conversation with <s>; the served prompt of the same conversation has the same ids."""
        import datasets
        from trl.trainer.utils import ConstantLengthDataset

        question, answer = "Who founded Microsoft?", "Bill Gates and Paul Allen."
        messages = fine_tune.normalize_messages([{"role": "user", "content": question}, {"role": "assistant", "content": answer}])
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        packed = ConstantLengthDataset(self.tokenizer, datasets.Dataset.from_list([{"text": text}]), dataset_text_field="text",
                                       seq_length=4, shuffle=False, eos_token_id=self.tokenizer.eos_token_id)
        training_ids = [int(i) for example in packed for i in example["input_ids"]]
        serving_ids = self.impl.prompt_ids(question)
        self.assertEqual(serving_ids[0], self.tokenizer.bos_token_id)
        self.assertLess(len(serving_ids), len(training_ids))
        self.assertEqual(training_ids[:len(serving_ids)], serving_ids)
        # What the transformers 4.41 text-generation pipeline tokenized (no <s>) did not match.
        pipeline_ids = self.tokenizer(self.impl.prompt_text(question), add_special_tokens=False)["input_ids"]
        self.assertNotEqual(training_ids[:len(pipeline_ids)], pipeline_ids)


class PackingOrderTest(unittest.TestCase):
    def test_separate_processes_with_separate_caches_pack_in_the_same_order(self):
        """Each process builds the trainer the way fine_tune.py does (build_trainer) with its own
        datasets cache and prints its packed sequences; the same seed gives the same order."""
        import subprocess

        script = (
            "import hashlib, json, sys\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "import fine_tune\n"
            "args = fine_tune.parse_args(['--train-file', sys.argv[2], '--eval-file', sys.argv[3], '--model-output', 'unused',\n"
            "    '--base-model', sys.argv[4], '--max-seq-length', '32', '--seed', sys.argv[5]])\n"
            "trainer, _ = fine_tune.build_trainer(args, sys.argv[2], sys.argv[3], use_cpu=True)\n"
            "ids = trainer.train_dataset['input_ids']\n"
            "print(json.dumps([hashlib.sha1(json.dumps(list(map(int, x))).encode()).hexdigest()[:12] for x in ids]))\n"
        )

        def start(seed):
            cache = helpers.scratch_dir(f"hf-cache-{seed}")
            env = helpers.job_env(HF_DATASETS_CACHE=cache, HF_HOME=cache, PYTHONHASHSEED="random")
            return subprocess.Popen([sys.executable, "-c", script, helpers.FINETUNING_DIR, TRAIN, TEST, tiny_base(), str(seed)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        runs = [start(0), start(0), start(1)]
        orders = []
        for proc in runs:
            out, err = proc.communicate(timeout=600)
            self.assertEqual(proc.returncode, 0, err[-3000:])
            orders.append(json.loads(out.strip().splitlines()[-1]))
        self.assertGreater(len(orders[0]), 4)
        self.assertEqual(orders[0], orders[1])
        self.assertEqual(sorted(orders[0]), sorted(orders[2]), "the same sequences")
        self.assertNotEqual(orders[0], orders[2], "the order depends on the seed, so it was shuffled")


class PrecisionTest(unittest.TestCase):
    def test_one_adamw_step_at_5e_6_changes_few_bf16_weights_and_all_mixed_ones(self):
        """One optimizer step (torch AdamW, the Trainer's, at fine_tune.py's default learning
        rate) on the tiny model loaded the way each precision loads it, bf16 autocast for both."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(tiny_base())
        args = fine_tune.parse_args(["--train-file", "t", "--eval-file", "e", "--model-output", "o"])
        text = "<|user|>\nWho founded Microsoft?<|end|>\n<|assistant|>\nBill Gates and Paul Allen.<|end|>\n"
        ids = tokenizer(text, return_tensors="pt")["input_ids"]

        def changed_fraction(precision):
            dtype = fine_tune._torch_dtype(fine_tune.training_dtype_name(False, precision, "full"))
            model = AutoModelForCausalLM.from_pretrained(tiny_base(), torch_dtype=dtype)
            linear = {n: p for n, p in model.named_parameters() if n.endswith("proj.weight")}
            before = {n: p.detach().clone() for n, p in linear.items()}
            optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=0.0)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            optimizer.step()
            changed = sum(int((p.detach() != before[n]).sum()) for n, p in linear.items())
            return changed / sum(p.numel() for p in linear.values())

        pure, mixed = changed_fraction("bf16"), changed_fraction("bf16-mixed")
        self.assertGreater(mixed, 0.99, f"bf16-mixed changed {mixed:.1%} of the weights")
        self.assertLess(pure, 0.3, f"pure bf16 changed {pure:.1%} of the weights")


class LoraTest(unittest.TestCase):
    def test_lora_trains_merges_and_serves_through_the_same_contract(self):
        import mlflow
        import torch
        from safetensors.torch import load_file

        out = os.path.join(helpers.scratch_dir("lora"), "model")
        done = helpers.run([sys.executable, "fine_tune.py", "--train-file", TRAIN, "--eval-file", TEST, "--model-output", out,
                            "--base-model", tiny_base(), "--epochs", "1", "--max-seq-length", "64", "--method", "lora",
                            "--lora-rank", "4", "--learning-rate", "0.01", "--serving-dtype", "float32"], cwd=helpers.FINETUNING_DIR)
        self.assertEqual(done.returncode, 0, done.stderr[-3000:])
        weights_dir = os.path.join(out, "model")
        saved = {}
        for name in os.listdir(weights_dir):
            if name.endswith(".safetensors"):
                saved.update(load_file(os.path.join(weights_dir, name)))
        self.assertFalse([k for k in saved if "lora" in k], "adapters merged, no PEFT keys left")
        base = load_file(os.path.join(tiny_base(), "model.safetensors"))
        key = "model.layers.0.self_attn.qkv_proj.weight"
        self.assertFalse(torch.equal(saved[key], base[key]), "the merged adapter changed the weights")
        self.assertTrue(torch.equal(saved["model.embed_tokens.weight"], base["model.embed_tokens.weight"]), "frozen base")
        model = mlflow.pyfunc.load_model(out)
        self.assertIsInstance(model._model_impl, phi3_serving.Phi3ChatModel)
        answer = model.predict(["Who founded Microsoft?"], params={"max_new_tokens": 4, "temperature": 0.0, "return_full_text": True})
        self.assertEqual(len(answer), 1)
        self.assertNotIn("<|", answer[0])
        self.assertIn("LoRA r=4 merged", mlflow.models.Model.load(out).metadata["trained_with"])


if __name__ == "__main__":
    unittest.main()
