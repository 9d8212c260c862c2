"""End to end on this machine: the model `npm run train:local` wrote, served by
`npm run serve:local` (Azure ML's online-endpoint contract on 127.0.0.1), asked by the real
`npm run chat` and by the real Prompt flow (`pf flow test` with a local CustomConnection, in
.venv/promptflow). Runs in .venv/train.
"""

import json
import os
import secrets
import signal
import subprocess
import threading
import time
import unittest

import helpers

helpers.add_to_path(helpers.FINETUNING_DIR)

import fine_tune  # noqa: E402

QUESTION = "Who founded Microsoft?"


def phi3_prompt(tokenizer, messages):
    """Phi-3's own rendering of a conversation (the tokenizer's chat template)."""
    return tokenizer.apply_chat_template(fine_tune.normalize_messages(messages), tokenize=False,
                                         add_generation_prompt=True)


class LocalEndpointTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from transformers import AutoTokenizer

        model = helpers.trained_model()["model"]
        cls.tokenizer = AutoTokenizer.from_pretrained(os.path.join(model, "components", "tokenizer"))
        cls.key = secrets.token_urlsafe(24)
        cls.trace_file = os.path.join(helpers.scratch_dir("endpoint"), "trace.jsonl")
        env = dict(os.environ, ENDPOINT_KEY=cls.key)
        cls.server = subprocess.Popen(
            ["npx", "--no-install", "tsx", "cli/serve-local.ts", "--model", model, "--port", "0", "--trace", cls.trace_file],
            cwd=helpers.REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )
        cls.server_err = []
        threading.Thread(target=lambda: cls.server_err.extend(cls.server.stderr), daemon=True).start()
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and "listening on" not in line:
            line = cls.server.stdout.readline()
            if not line and cls.server.poll() is not None:
                break
        if "listening on" not in line:
            cls.tearDownClass()
            raise AssertionError("serve:local did not start:\n" + "".join(cls.server_err)[-3000:])
        cls.url = line.split("listening on ", 1)[1].strip()

    @classmethod
    def tearDownClass(cls):
        if cls.server.poll() is None:
            os.killpg(cls.server.pid, signal.SIGTERM)
            cls.server.wait(timeout=30)
        cls.server.stdout.close()
        cls.server.stderr.close()

    def trace(self):
        return helpers.read_jsonl(self.trace_file) if os.path.exists(self.trace_file) else []

    def chat(self, args, stdin=None, key=None):
        env = dict(os.environ, ENDPOINT_URI=self.url, ENDPOINT_KEY=key or self.key)
        done = helpers.run(["npx", "--no-install", "tsx", "cli/chat.ts", *args], env=env, stdin=stdin, timeout=300)
        for stream in (done.stdout, done.stderr):
            self.assertNotIn(self.key, stream)
        return done

    def test_the_server_speaks_the_contract(self):
        import urllib.error
        import urllib.request

        def post(body, key):
            request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST",
                                             headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        self.assertEqual(post({"input_data": [QUESTION]}, "wrong")[0], 401)
        self.assertEqual(post({"params": {}}, self.key)[0], 400)
        status, answer = post({"input_data": [QUESTION], "params": {"max_new_tokens": 3, "do_sample": False}}, self.key)
        self.assertEqual((status, len(answer)), (200, 1))
        # What API clients send (issue 20): temperature 0 is greedy, return_full_text returns no
        # template, bad values are 400s naming the parameter, a prompt over the context a 400
        # saying by how much; never a 500.
        greedy = {"max_new_tokens": 4, "temperature": 0, "do_sample": True}
        status, zero = post({"input_data": [QUESTION], "params": greedy}, self.key)
        self.assertEqual(status, 200, zero)
        status, full = post({"input_data": [QUESTION], "params": {**greedy, "return_full_text": True}}, self.key)
        self.assertEqual((status, full), (200, zero))
        self.assertNotIn("<|", full[0])
        for params, name in (({"max_new_tokens": "3"}, "max_new_tokens"), ({"max_new_tokens": -1}, "max_new_tokens"),
                             ({"max_new_tokens": 100000}, "max_new_tokens"), ({"temperature": -1}, "temperature"),
                             ({"top_p": 2}, "top_p")):
            status, body = post({"input_data": [QUESTION], "params": params}, self.key)
            self.assertEqual(status, 400, (params, body))
            self.assertIn(name, body["error"])
        status, body = post({"input_data": ["word " * 4090], "params": {"max_new_tokens": 8}}, self.key)
        self.assertEqual(status, 400, body)
        self.assertRegex(body["error"], r"context_length_exceeded: .* over the model's context length of 4096 by \d+ tokens")
        status, body = post({"input_data": [{"role": "user", "content": QUESTION}]}, self.key)
        self.assertEqual(status, 400, body)
        self.assertIn("list of prompt strings", body["error"])
        with urllib.request.urlopen(self.url.rsplit("/score", 1)[0] + "/", timeout=10) as response:
            self.assertEqual(response.status, 200)

    def test_npm_run_chat_one_question_at_temperature_0_is_greedy(self):
        first = self.chat(["--temperature", "0", "--max-new-tokens", "6", QUESTION])
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertTrue(first.stdout.strip())
        second = self.chat(["--temperature", "0", "--max-new-tokens", "6", QUESTION])
        self.assertEqual(second.stdout, first.stdout)
        records = self.trace()
        self.assertEqual(records[-1]["prompt"], phi3_prompt(self.tokenizer, [{"role": "user", "content": QUESTION}]))
        self.assertEqual(records[-2]["params"], {"temperature": 0, "max_new_tokens": 6, "do_sample": False, "return_full_text": False})

    def test_npm_run_chat_interactive_sends_the_conversation_in_phi3_format(self):
        done = self.chat(["-i", "--temperature", "0", "--max-new-tokens", "4"], stdin="First question?\nSecond question?\nexit\n")
        self.assertEqual(done.returncode, 0, done.stderr)
        prompts = [r["prompt"] for r in self.trace() if "prompt" in r][-2:]
        self.assertEqual(prompts[0], phi3_prompt(self.tokenizer, [{"role": "user", "content": "First question?"}]))
        head, tail = prompts[0], "<|end|>\n<|user|>\nSecond question?<|end|>\n<|assistant|>\n"
        self.assertTrue(prompts[1].startswith(head) and prompts[1].endswith(tail), prompts[1])
        first_answer = prompts[1][len(head):-len(tail)]
        self.assertTrue(done.stdout.startswith(first_answer + "\n"))
        conversation = [{"role": "user", "content": "First question?"}, {"role": "assistant", "content": first_answer},
                        {"role": "user", "content": "Second question?"}]
        self.assertEqual(prompts[1], phi3_prompt(self.tokenizer, conversation))

    def test_npm_run_chat_catalog_shape_is_refused_with_a_clear_400(self):
        done = self.chat(["--shape", "chat", QUESTION])
        self.assertEqual(done.returncode, 1)
        self.assertIn("HTTP 400", done.stderr)
        self.assertIn("list of prompt strings", done.stderr)

    def test_npm_run_chat_with_a_wrong_key(self):
        wrong = secrets.token_urlsafe(24)
        done = self.chat([QUESTION], key=wrong)
        self.assertEqual(done.returncode, 1)
        self.assertIn("rejected the key", done.stderr)
        self.assertNotIn(wrong, done.stderr + done.stdout)

    def test_prompt_flow_chat_flow_through_pf_flow_test(self):
        flow, env, pf = helpers.promptflow_sandbox(self)
        work = os.path.dirname(flow)

        def pf_run(*args):
            done = subprocess.run([pf, *args], env=env, capture_output=True, text=True, timeout=180)
            self.assertEqual(done.returncode, 0, done.stdout[-2000:] + done.stderr[-2000:])
            self.assertNotIn(self.key, done.stdout + done.stderr)
            return done

        pf_run("config", "set", "telemetry.enabled=false", "trace.destination=none")
        connection = os.path.join(work, "connection.yaml")
        with open(connection, "w", encoding="utf-8") as handle:
            json.dump({"name": "phi3-endpoint", "type": "custom",
                       "configs": {"endpoint": self.url, "max_new_tokens": "5", "timeout_seconds": "120"},
                       "secrets": {"key": self.key}}, handle)  # JSON is YAML
        pf_run("connection", "create", "--file", connection)
        history = [{"inputs": {"question": QUESTION}, "outputs": {"answer": "Bill Gates and Paul Allen."}}]
        done = pf_run("flow", "test", "--flow", flow, "--inputs", "question=When?", f"chat_history={json.dumps(history)}")
        output = json.loads(done.stdout[done.stdout.index("{"):done.stdout.rindex("}") + 1])
        self.assertIsInstance(output["answer"], str)
        records = self.trace()
        conversation = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": "Bill Gates and Paul Allen."},
                        {"role": "user", "content": "When?"}]
        self.assertEqual(records[-1]["prompt"], phi3_prompt(self.tokenizer, conversation))
        self.assertEqual(records[-2]["params"]["max_new_tokens"], 5)  # from the connection
        self.assertEqual(records[-2]["params"]["do_sample"], True)  # the flow's temperature 0.7


if __name__ == "__main__":
    unittest.main()
