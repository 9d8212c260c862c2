"""Tests for promptflow/call_endpoint.py and promptflow/flow.dag.yml, run in .venv/promptflow
with the real ``promptflow`` package (its ``@tool`` decorator, ``CustomConnection``, the flow
loader and ``pf flow validate``).

HTTP tests talk to a throwaway http.server bound to 127.0.0.1 on a free port. The tool against a
real model behind the local scoring server (``pf flow test``) is in test_local_endpoint.py.
"""

import contextlib
import http.server
import inspect
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest
import urllib.request
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import helpers  # noqa: E402

helpers.add_to_path(helpers.PROMPTFLOW_DIR)
helpers.add_to_path(helpers.FINETUNING_DIR)

import call_endpoint  # noqa: E402
import fine_tune  # noqa: E402  (standard library at module level: the serving contract's constants)

KEY = "test-key-3f9a1c"
# The table of secret forms lib/secrets.ts makes (test/secret-sweep.test.ts keeps it current):
# the tool's own masking must cover the same forms.
with open(os.path.join(helpers.REPO_ROOT, "test", "fixtures", "secret-forms.json"), encoding="utf-8") as _f:
    FORMS_TABLE = json.load(_f)
NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes: /ok -> 200 ["..."], /chat -> 200 {"output"}, /unauthorized -> 401 (echoes the
    Authorization header in a long body), /boom -> 500, /slow -> sleeps, /notjson -> 200 text."""

    requests = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        Handler.requests.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
        if self.path == "/ok":
            self.reply(200, json.dumps(["Bill Gates and Paul Allen."]))
        elif self.path == "/score":
            self.reply(200, json.dumps([{"0": "from /score"}]))
        elif self.path == "/chat":
            self.reply(200, json.dumps({"output": "chat answer"}))
        elif self.path == "/unauthorized":
            echoed = self.headers.get("Authorization", "")
            self.reply(401, "denied for " + echoed + " " + "x" * 1000)
        elif self.path == "/boom":
            self.reply(500, '{"error": "model crashed"}')
        elif self.path == "/slow":
            time.sleep(1.0)
            self.reply(200, "[]")
        elif self.path == "/small":  # a model whose context holds two user turns of a prompt
            prompt = json.loads(body)["input_data"][0]
            turns = prompt.count("<|user|>") + 1
            if turns > 2:
                over = (turns - 2) * 100
                self.reply(400, json.dumps({"error": "context_length_exceeded: the prompt has 5000 tokens and max_new_tokens "
                                                      f"is 8: 5008 tokens, over the model's context length of 4096 by {over} tokens"}))
            else:
                self.reply(200, json.dumps([f"answer to {turns} turns"]))
        elif self.path == "/notjson":
            self.reply(200, "<html>upstream</html>")
        elif self.path.startswith("/echo/"):
            # Echoes the key it was sent in every encoding of the shared table, in the body
            # (past and across the 300-character cut) and in headers.
            key = self.headers.get("Authorization", "")[len("Bearer "):]
            row = next((r for r in FORMS_TABLE if r["secret"] == key), None)
            encoded = list(row["encodings"].values()) if row else [key]
            body = "x" * 290 + key + " " + " ".join(f"{i}={v}" for i, v in enumerate(encoded))
            status = int(self.path.split("/")[2])
            self.reply(status, body, {f"x-echo-{i}": v for i, v in enumerate(encoded)})
        else:
            self.reply(404, "no route")

    def reply(self, status, text, headers=None):
        data = text.encode("utf-8")
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout test)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


def setUpModule():
    global SERVER, BASE, _env_patch
    _env_patch = mock.patch.dict(os.environ)
    _env_patch.start()
    for name in PROXY_VARS:
        os.environ.pop(name, None)
    SERVER = Server(("127.0.0.1", 0), Handler)
    BASE = f"http://127.0.0.1:{SERVER.server_address[1]}"
    threading.Thread(target=SERVER.serve_forever, daemon=True).start()


def tearDownModule():
    SERVER.shutdown()
    SERVER.server_close()
    _env_patch.stop()


class StdlibImportTest(unittest.TestCase):
    def test_only_stdlib_or_guarded_promptflow_at_module_level(self):
        path = os.path.join(helpers.PROMPTFLOW_DIR, "call_endpoint.py")
        imports = helpers.top_level_imports(path)
        for name, guarded in imports:
            if name == "promptflow":
                self.assertTrue(guarded, "promptflow imports must sit in try/except")
            else:
                self.assertIn(name, sys.stdlib_module_names, name)
        self.assertIn(("promptflow", True), imports)
        self.assertNotIn("__future__", [name for name, _ in imports],
                         "Prompt flow needs real annotations to recognise the connection")

    def test_tool_signature(self):
        params = inspect.signature(call_endpoint.ask_phi3).parameters
        self.assertIs(params["connection"].annotation, call_endpoint.CustomConnection)
        self.assertIs(params["question"].annotation, str)


class BuildPayloadTest(unittest.TestCase):
    def test_prompt_list(self):
        self.assertEqual(
            call_endpoint.build_payload("Who founded Microsoft?", "prompt-list", 0.7, 128),
            {"input_data": ["Who founded Microsoft?"],
             "params": {"temperature": 0.7, "max_new_tokens": 128, "do_sample": True,
                        "return_full_text": False}},
        )

    def test_chat(self):
        self.assertEqual(
            call_endpoint.build_payload("Who founded Microsoft?", "chat", 0.5, 64),
            {"input_data": {"input_string": [{"role": "user", "content": "Who founded Microsoft?"}],
                            "parameters": {"temperature": 0.5, "max_new_tokens": 64, "do_sample": True}}},
        )

    def test_greedy_at_zero_temperature_and_int_temperature(self):
        payload = call_endpoint.build_payload("q", "prompt-list", 0, 10)
        self.assertIs(payload["params"]["do_sample"], False)
        self.assertIsInstance(payload["params"]["temperature"], float)
        self.assertIs(call_endpoint.build_payload("q", "chat", 0, 10)["input_data"]["parameters"]["do_sample"], False)

    def test_default_shape_is_prompt_list(self):
        self.assertEqual(call_endpoint.DEFAULT_SHAPE, "prompt-list")
        self.assertIn("params", call_endpoint.build_payload("q"))

    def test_invalid(self):
        cases = [("", "chat", 0.7, 10), ("   ", "chat", 0.7, 10), (None, "chat", 0.7, 10),
                 ("q", "openai", 0.7, 10), ("q", "chat", -0.1, 10), ("q", "chat", float("nan"), 10),
                 ("q", "chat", 0.7, 0), ("q", "chat", 0.7, 1.5), ("q", "chat", True, 10),
                 ("q", "chat", 0.7, True)]
        for args in cases:
            with self.subTest(args=args), self.assertRaises(ValueError):
                call_endpoint.build_payload(*args)


class ParseResponseTest(unittest.TestCase):
    def test_shapes(self):
        cases = [
            ('{"output": "catalog"}', "catalog"),
            ('["mlflow list"]', "mlflow list"),
            ('[{"0": "frame"}]', "frame"),
            ('[{"generated_text": "pipeline"}]', "pipeline"),
            ('{"predictions": ["wrapped"]}', "wrapped"),
            (b'["bytes \xc3\xa9"]', "bytes é"),
            (["already parsed"], "already parsed"),
            ('"[\\"double encoded\\"]"', "double encoded"),
            ('"[not json] plain"', "[not json] plain"),
            ('"just a string"', "just a string"),
        ]
        for body, expected in cases:
            with self.subTest(body=body):
                self.assertEqual(call_endpoint.parse_response(body), expected)

    def test_unexpected_shapes_raise_clear_errors(self):
        for body in ("[]", "{}", '{"output": 3}', "[1]", '[{"text": "x"}]', "null", "42"):
            with self.subTest(body=body), self.assertRaisesRegex(ValueError, "unexpected endpoint response"):
                call_endpoint.parse_response(body)
        with self.assertRaisesRegex(ValueError, "not JSON"):
            call_endpoint.parse_response("<html>" + "y" * 1000)
        try:
            call_endpoint.parse_response("<html>" + "y" * 1000)
        except ValueError as err:
            self.assertLess(len(str(err)), 400)


class SecretFormsTest(unittest.TestCase):
    """The tool masks the key in every form lib/secrets.ts masks, in every channel of its errors."""

    def test_forms_are_the_table_of_lib_secrets(self):
        for row in FORMS_TABLE:
            self.assertEqual(set(call_endpoint.secret_forms(row["secret"])), set(row["forms"]), row["secret"])

    def test_every_encoding_is_masked_inside_text(self):
        for row in FORMS_TABLE:
            for name, value in row["encodings"].items():
                masked = call_endpoint.mask_secret(f"a{value}b", row["secret"])
                self.assertNotIn(value, masked, f"{name} of {row['secret']!r}")

    def assert_no_form(self, text, secret):
        for form in call_endpoint.secret_forms(secret):
            self.assertNotIn(form, text)
        self.assertNotIn(secret[:8], text)

    def test_errors_never_hold_the_key_in_any_form(self):
        for row in FORMS_TABLE:
            key = row["secret"]
            for status in (400, 401, 500):
                with self.assertRaises(call_endpoint.EndpointError) as ctx:
                    call_endpoint.call_endpoint(BASE + f"/echo/{status}", key, {}, 5, opener=NO_PROXY_OPENER)
                self.assertIn(f"HTTP {status}", str(ctx.exception))
                self.assert_no_form(str(ctx.exception), key)

    def test_a_200_that_is_not_json_is_quoted_without_the_key(self):
        for row in FORMS_TABLE:
            key = row["secret"]
            body = call_endpoint.call_endpoint(BASE + "/echo/200", key, {}, 5, opener=NO_PROXY_OPENER)
            self.assert_no_form(body, key)
            with self.assertRaises(ValueError) as ctx:
                call_endpoint.parse_response(body)
            self.assertIn("not JSON", str(ctx.exception))
            self.assert_no_form(str(ctx.exception), key)


class CallEndpointTest(unittest.TestCase):
    def setUp(self):
        Handler.requests.clear()

    def test_200_returns_body_and_sends_key_and_json(self):
        payload = call_endpoint.build_payload("Who founded Microsoft?")
        body = call_endpoint.call_endpoint(BASE + "/ok", KEY, payload, 5, opener=NO_PROXY_OPENER)
        self.assertEqual(json.loads(body), ["Bill Gates and Paul Allen."])
        (request,) = Handler.requests
        self.assertEqual(request["headers"]["authorization"], f"Bearer {KEY}")
        self.assertEqual(request["headers"]["content-type"], "application/json")
        self.assertEqual(json.loads(request["body"]), payload)

    def test_default_opener(self):
        body = call_endpoint.call_endpoint(BASE + "/chat", KEY, {"x": 1}, 5)
        self.assertEqual(call_endpoint.parse_response(body), "chat answer")

    def test_extra_headers(self):
        call_endpoint.call_endpoint(BASE + "/ok", KEY, {}, 5, opener=NO_PROXY_OPENER,
                                    headers={"azureml-model-deployment": "blue"})
        self.assertEqual(Handler.requests[0]["headers"]["azureml-model-deployment"], "blue")

    def test_401_names_status_and_body_but_never_the_key(self):
        with self.assertRaises(call_endpoint.EndpointError) as ctx:
            call_endpoint.call_endpoint(BASE + "/unauthorized", KEY, {}, 5, opener=NO_PROXY_OPENER)
        message = str(ctx.exception)
        self.assertEqual(ctx.exception.status, 401)
        self.assertIn("HTTP 401", message)
        self.assertIn("denied for Bearer ***", message)
        self.assertNotIn(KEY, message)
        self.assertIn("x" * 250, message)
        self.assertNotIn("x" * 301, message)

    def test_500(self):
        with self.assertRaises(call_endpoint.EndpointError) as ctx:
            call_endpoint.call_endpoint(BASE + "/boom", KEY, {}, 5, opener=NO_PROXY_OPENER)
        self.assertEqual(ctx.exception.status, 500)
        self.assertIn("HTTP 500", str(ctx.exception))
        self.assertIn("model crashed", str(ctx.exception))

    def test_timeout(self):
        started = time.monotonic()
        with self.assertRaisesRegex(call_endpoint.EndpointError, "did not answer within 0.2 s"):
            call_endpoint.call_endpoint(BASE + "/slow", KEY, {}, 0.2, opener=NO_PROXY_OPENER)
        self.assertLess(time.monotonic() - started, 0.9)

    def test_connection_refused(self):
        probe = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        port = probe.server_address[1]
        probe.server_close()
        with self.assertRaisesRegex(call_endpoint.EndpointError, "cannot reach endpoint"):
            call_endpoint.call_endpoint(f"http://127.0.0.1:{port}/score", KEY, {}, 2, opener=NO_PROXY_OPENER)

    def test_non_2xx_from_a_custom_opener(self):
        class FakeResponse:
            status = 302

            def read(self):
                return b"moved to " + KEY.encode()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        class FakeOpener:
            def open(self, request, timeout=None):
                self.request, self.timeout = request, timeout
                return FakeResponse()

        opener = FakeOpener()
        with self.assertRaises(call_endpoint.EndpointError) as ctx:
            call_endpoint.call_endpoint("https://e.example/score", KEY, {"a": 1}, 7, opener=opener)
        self.assertEqual(ctx.exception.status, 302)
        self.assertIn("HTTP 302", str(ctx.exception))
        self.assertNotIn(KEY, str(ctx.exception))
        self.assertEqual(opener.timeout, 7)
        self.assertEqual(opener.request.get_method(), "POST")

    def test_argument_checks(self):
        with self.assertRaises(ValueError):
            call_endpoint.call_endpoint(BASE + "/ok", "", {}, 5)
        for timeout in (0, -1, "5", True):
            with self.subTest(timeout=timeout), self.assertRaises(ValueError):
                call_endpoint.call_endpoint(BASE + "/ok", KEY, {}, timeout)
        self.assertEqual(Handler.requests, [])


class ConnectionTest(unittest.TestCase):
    def test_endpoint_and_key_in_secrets(self):
        conn = call_endpoint.CustomConnection(secrets={"endpoint": "https://e.westeurope.inference.ml.azure.com/score",
                                                       "key": KEY})
        self.assertEqual(call_endpoint.resolve_connection(conn),
                         ("https://e.westeurope.inference.ml.azure.com/score", KEY, None))

    def test_endpoint_in_configs_wins_and_deployment(self):
        conn = call_endpoint.CustomConnection(
            configs={"endpoint": "https://cfg.example/score", "deployment": "blue"},
            secrets={"endpoint": "https://secret.example/score", "key": KEY})
        self.assertEqual(call_endpoint.resolve_connection(conn), ("https://cfg.example/score", KEY, "blue"))

    def test_plain_dict_and_base_url(self):
        self.assertEqual(call_endpoint.resolve_connection({"endpoint": "https://e.example", "key": KEY}),
                         ("https://e.example/score", KEY, None))

    def test_missing_values(self):
        cases = [
            call_endpoint.CustomConnection(configs={"endpoint": "https://e.example/score"}, secrets={}),
            call_endpoint.CustomConnection(secrets={"key": KEY}),
            call_endpoint.CustomConnection(configs={"key": KEY, "endpoint": "https://e.example/score"}, secrets={}),
            call_endpoint.CustomConnection(secrets={"key": "  ", "endpoint": "https://e.example/score"}),
            call_endpoint.CustomConnection(secrets={"key": KEY, "endpoint": "ftp://e.example"}),
        ]
        for conn in cases:
            with self.subTest(configs=conn.configs), self.assertRaises(ValueError) as ctx:
                call_endpoint.resolve_connection(conn)
            self.assertNotIn(KEY, str(ctx.exception))

    def test_normalize_scoring_url(self):
        self.assertEqual(call_endpoint.normalize_scoring_url("https://a.example/"), "https://a.example/score")
        self.assertEqual(call_endpoint.normalize_scoring_url(" https://a.example/v1/score "),
                         "https://a.example/v1/score")
        for bad in ("", "a.example/score", "https://"):
            with self.subTest(bad=bad), self.assertRaises(ValueError):
                call_endpoint.normalize_scoring_url(bad)


class ToolTest(unittest.TestCase):
    def setUp(self):
        Handler.requests.clear()

    def test_prompt_list_end_to_end(self):
        conn = call_endpoint.CustomConnection(secrets={"endpoint": BASE + "/ok", "key": KEY})
        self.assertEqual(call_endpoint.ask_phi3(conn, "Who founded Microsoft?"), "Bill Gates and Paul Allen.")
        sent = json.loads(Handler.requests[0]["body"])
        self.assertEqual(sent["input_data"], ["Who founded Microsoft?"])
        self.assertNotIn("azureml-model-deployment", Handler.requests[0]["headers"])

    def test_base_url_gets_score_path_and_deployment_header(self):
        conn = call_endpoint.CustomConnection(configs={"endpoint": BASE, "deployment": "green"},
                                              secrets={"key": KEY})
        self.assertEqual(call_endpoint.ask_phi3(conn, "q"), "from /score")
        self.assertEqual(Handler.requests[0]["path"], "/score")
        self.assertEqual(Handler.requests[0]["headers"]["azureml-model-deployment"], "green")

    def test_chat_shape_end_to_end(self):
        conn = call_endpoint.CustomConnection(secrets={"endpoint": BASE + "/chat", "key": KEY})
        answer = call_endpoint.ask_phi3(conn, "q", payload_shape="chat", temperature=0.2,
                                        max_new_tokens=32, timeout_seconds=5)
        self.assertEqual(answer, "chat answer")
        sent = json.loads(Handler.requests[0]["body"])
        self.assertEqual(sent["input_data"]["parameters"]["max_new_tokens"], 32)

    def test_non_json_success_is_reported(self):
        conn = call_endpoint.CustomConnection(secrets={"endpoint": BASE + "/notjson", "key": KEY})
        with self.assertRaisesRegex(ValueError, "not JSON"):
            call_endpoint.ask_phi3(conn, "q")


class RealPromptflowTest(unittest.TestCase):
    def test_the_real_promptflow_package_is_in_use(self):
        import promptflow.connections
        import promptflow.core

        self.assertIs(call_endpoint.CustomConnection, promptflow.connections.CustomConnection)
        self.assertIs(call_endpoint.tool, promptflow.core.tool)


class ChatHistoryTest(unittest.TestCase):
    HISTORY = [
        {"inputs": {"question": "Who founded Microsoft?"}, "outputs": {"answer": "Bill Gates and Paul Allen."}},
        {"inputs": {"question": "When?"}, "outputs": {"answer": "In 1975."}},
    ]

    def test_history_messages(self):
        self.assertEqual(call_endpoint.history_messages(None), [])
        self.assertEqual(call_endpoint.history_messages([]), [])
        self.assertEqual(call_endpoint.history_messages(self.HISTORY), [
            {"role": "user", "content": "Who founded Microsoft?"},
            {"role": "assistant", "content": "Bill Gates and Paul Allen."},
            {"role": "user", "content": "When?"},
            {"role": "assistant", "content": "In 1975."},
        ])
        # Other input/output names work when the turn has one string each.
        other = [{"inputs": {"chat_input": "q"}, "outputs": {"reply": "a"}}]
        self.assertEqual([m["content"] for m in call_endpoint.history_messages(other)], ["q", "a"])
        for bad in ([1], [{"inputs": {}, "outputs": {"answer": "a"}}], [{"inputs": {"question": "q"}, "outputs": {"x": 1}}]):
            with self.subTest(bad=bad), self.assertRaisesRegex(ValueError, r"chat_history\[0\]"):
                call_endpoint.history_messages(bad)

    def test_conversation_prompt_is_the_models_contract(self):
        messages = call_endpoint.history_messages(self.HISTORY) + [{"role": "user", "content": "Where?"}]
        self.assertEqual(call_endpoint.conversation_prompt(messages), fine_tune.conversation_prompt(messages))
        self.assertEqual(call_endpoint.CONVERSATION_TURN_SEPARATOR, fine_tune.CONVERSATION_TURN_SEPARATOR)

    def test_payloads_with_history(self):
        history = call_endpoint.history_messages(self.HISTORY[:1])
        prompt_list = call_endpoint.build_payload("When?", "prompt-list", 0, 16, history)
        self.assertEqual(prompt_list["input_data"],
                         ["Who founded Microsoft?<|end|>\n<|assistant|>\nBill Gates and Paul Allen.<|end|>\n<|user|>\nWhen?"])
        self.assertEqual(prompt_list["params"]["do_sample"], False)
        chat = call_endpoint.build_payload("When?", "chat", 0.5, 16, history)
        self.assertEqual([m["role"] for m in chat["input_data"]["input_string"]], ["user", "assistant", "user"])

    def test_connection_numbers(self):
        conn = call_endpoint.CustomConnection(configs={"max_new_tokens": "64", "timeout_seconds": "200"}, secrets={"key": KEY})
        self.assertEqual(call_endpoint.connection_number(conn, "max_new_tokens", 256), 64.0)
        self.assertEqual(call_endpoint.connection_number(conn, "missing", 7), 7)
        bad = call_endpoint.CustomConnection(configs={"max_new_tokens": "lots"}, secrets={"key": KEY})
        with self.assertRaisesRegex(ValueError, "'max_new_tokens' must be a positive number"):
            call_endpoint.connection_number(bad, "max_new_tokens", 256)


class ToolWithHistoryTest(unittest.TestCase):
    def setUp(self):
        Handler.requests.clear()

    def test_chat_history_and_connection_defaults_reach_the_request(self):
        conn = call_endpoint.CustomConnection(configs={"max_new_tokens": "64"}, secrets={"endpoint": BASE + "/ok", "key": KEY})
        history = [{"inputs": {"question": "Q1"}, "outputs": {"answer": "A1"}}]
        self.assertEqual(call_endpoint.ask_phi3(conn, "Q2", chat_history=history), "Bill Gates and Paul Allen.")
        sent = json.loads(Handler.requests[0]["body"])
        self.assertEqual(sent["input_data"], ["Q1<|end|>\n<|assistant|>\nA1<|end|>\n<|user|>\nQ2"])
        self.assertEqual(sent["params"]["max_new_tokens"], 64)

    def test_a_conversation_over_the_context_loses_its_oldest_turns_and_says_so(self):
        conn = call_endpoint.CustomConnection(configs={}, secrets={"endpoint": BASE + "/small", "key": KEY})
        history = [{"inputs": {"question": f"Q{i}"}, "outputs": {"answer": f"A{i}"}} for i in (1, 2, 3)]
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            self.assertEqual(call_endpoint.ask_phi3(conn, "Q4", chat_history=history), "answer to 2 turns")
        prompts = [json.loads(r["body"])["input_data"][0] for r in Handler.requests]
        self.assertEqual(len(prompts), 3)
        self.assertEqual(prompts[-1], "Q3<|end|>\n<|assistant|>\nA3<|end|>\n<|user|>\nQ4")
        self.assertIn("the conversation is 200 tokens over the model's context: dropped the oldest turn (1 so far)", out.getvalue())
        self.assertIn("100 tokens over the model's context: dropped the oldest turn (2 so far)", out.getvalue())

    def test_drop_oldest_turn_keeps_the_system_message_and_the_question(self):
        u = lambda c: {"role": "user", "content": c}  # noqa: E731
        a = lambda c: {"role": "assistant", "content": c}  # noqa: E731
        s = {"role": "system", "content": "be brief"}
        self.assertEqual(call_endpoint.drop_oldest_turn([u("1"), a("A1"), u("2")]), [u("2")])
        self.assertEqual(call_endpoint.drop_oldest_turn([s, u("1"), a("A1"), u("2")]), [s, u("2")])
        self.assertIsNone(call_endpoint.drop_oldest_turn([s, u("1")]))
        self.assertIsNone(call_endpoint.drop_oldest_turn([u("1")]))

    def test_other_400s_are_not_retried(self):
        self.assertIsNone(call_endpoint.context_overflow(call_endpoint.EndpointError("HTTP 400: params.top_p", status=400)))
        self.assertIsNone(call_endpoint.context_overflow(ValueError("context_length_exceeded: by 3 tokens")))
        self.assertEqual(call_endpoint.context_overflow(call_endpoint.EndpointError(
            "answered HTTP 400: 'context_length_exceeded: ... by 12 tokens'", status=400)), 12)

    def test_the_connections_payload_shape_is_used(self):
        conn = call_endpoint.CustomConnection(configs={"payload_shape": "chat-list"}, secrets={"endpoint": BASE + "/ok", "key": KEY})
        history = [{"inputs": {"question": "Q1"}, "outputs": {"answer": "A1"}}]
        self.assertEqual(call_endpoint.ask_phi3(conn, "Q2", chat_history=history), "Bill Gates and Paul Allen.")
        sent = json.loads(Handler.requests[0]["body"])
        self.assertEqual(sent["params"], {})
        self.assertEqual(sent["input_data"]["input_string"], [[
            {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}]])
        self.assertEqual(sent["input_data"]["parameters"]["do_sample"], True)
        Handler.requests.clear()
        plain = call_endpoint.CustomConnection(configs={}, secrets={"endpoint": BASE + "/ok", "key": KEY})
        call_endpoint.ask_phi3(plain, "q")
        self.assertEqual(json.loads(Handler.requests[0]["body"])["input_data"], ["q"])

    def test_node_values_win_over_the_connection(self):
        conn = call_endpoint.CustomConnection(configs={"max_new_tokens": "64"}, secrets={"endpoint": BASE + "/ok", "key": KEY})
        call_endpoint.ask_phi3(conn, "q", max_new_tokens=8)
        self.assertEqual(json.loads(Handler.requests[0]["body"])["params"]["max_new_tokens"], 8)


class FlowFilesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        from ruamel.yaml import YAML  # promptflow's own YAML library

        with open(os.path.join(helpers.PROMPTFLOW_DIR, "flow.dag.yml"), encoding="utf-8") as handle:
            cls.text = handle.read()
        cls.flow = YAML(typ="safe").load(cls.text)

    def test_it_is_a_chat_flow(self):
        inputs, outputs = self.flow["inputs"], self.flow["outputs"]
        self.assertEqual(inputs["chat_history"], {"type": "list", "is_chat_history": True, "default": []})
        self.assertEqual(inputs["question"]["type"], "string")
        self.assertIs(inputs["question"]["is_chat_input"], True)
        self.assertEqual(outputs["answer"], {"type": "string", "reference": "${ask_phi3.output}", "is_chat_output": True})

    def test_node_matches_the_tool(self):
        (node,) = self.flow["nodes"]
        self.assertEqual((node["name"], node["type"], node["source"]), ("ask_phi3", "python", {"type": "code", "path": "call_endpoint.py"}))
        params = inspect.signature(call_endpoint.ask_phi3).parameters
        self.assertLessEqual(set(node["inputs"]), set(params), "node inputs must be tool parameters")
        required = {n for n, p in params.items() if p.default is inspect.Parameter.empty}
        self.assertLessEqual(required, set(node["inputs"]), "every required tool parameter must be bound")
        self.assertEqual(node["inputs"]["connection"], "phi3-endpoint")
        self.assertEqual(node["inputs"]["question"], "${inputs.question}")
        self.assertEqual(node["inputs"]["chat_history"], "${inputs.chat_history}")
        # Left to the connection, which the stack writes for the served model and its hardware.
        self.assertNotIn("payload_shape", node["inputs"])
        self.assertNotIn("max_new_tokens", node["inputs"])
        self.assertNotIn("timeout_seconds", node["inputs"])

    def test_pf_flow_validate_accepts_it(self):
        flow, env, pf = helpers.promptflow_sandbox(self)
        done = subprocess.run([pf, "flow", "validate", "--source", flow], env=env, capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn('"result": "Succeeded"', done.stdout)
        with open(os.path.join(flow, ".promptflow", "flow.tools.json"), encoding="utf-8") as handle:
            meta = json.load(handle)["code"]["call_endpoint.py"]["inputs"]
        self.assertEqual(meta["connection"]["type"], ["CustomConnection"])
        self.assertEqual(meta["chat_history"]["type"], ["list"])

    def test_requirements_add_nothing_to_the_runtime(self):
        with open(os.path.join(helpers.PROMPTFLOW_DIR, "requirements.txt"), encoding="utf-8") as handle:
            reqs = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
        self.assertEqual(reqs, [])
        self.assertEqual(self.flow["environment"], {"python_requirements_txt": "requirements.txt"})


if __name__ == "__main__":
    unittest.main()
