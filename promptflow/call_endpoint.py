"""Prompt flow tool: the chat node that asks the fine-tuned Phi-3 model behind an Azure ML
online endpoint, with the conversation so far.

The flow (``flow.dag.yml``) is a chat flow: a chat input ``question``, a ``chat_history`` input
(Prompt flow's list of ``{"inputs": {"question": ...}, "outputs": {"answer": ...}}`` turns) and
the chat output ``answer``, so ``pf flow test --interactive`` and the Azure AI Foundry portal's
chat drive it. The endpoint comes from a Prompt flow ``CustomConnection`` (default name
``phi3-endpoint``). The stack creates it as a ``CustomKeys`` workspace connection with
``credentials.keys = {endpoint, key}``, which Prompt flow exposes as *secrets*, and metadata
(*configs*) holding the endpoint again and the generation defaults that fit the deployment's
instance type (``max_new_tokens``, ``timeout_seconds``; a CPU deployment generates about a token
per second). An optional ``deployment`` entry pins a deployment with the
``azureml-model-deployment`` header.

Payload shapes (``payload_shape`` node input):

* ``prompt-list`` (default; what ``finetuning_dir/fine_tune.py`` saves the MLflow model for)::

      {"input_data": ["<conversation prompt>"],
       "params": {"temperature": t, "max_new_tokens": n, "do_sample": t > 0,
                  "return_full_text": false}}

  answered with a JSON list such as ``["<answer>"]``. The model wraps each prompt in Phi-3's
  chat template (``<|system|>\\n<|end|>\\n<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n``),
  so earlier turns are written into the prompt with the turn separator the model records in its
  metadata (:func:`conversation_prompt`): the model then reads the whole conversation in Phi-3's
  chat format, exactly as it was trained;
* ``chat`` (Azure model-catalog chat deployments)::

      {"input_data": {"input_string": [{"role": "user", "content": "..."}, ...],
                      "parameters": {"temperature": t, "max_new_tokens": n, "do_sample": t > 0}}}

  answered with ``{"output": "<answer>"}``; the history goes in as messages;
* ``chat-list`` (the model Microsoft's chat-completion fine-tuning pipeline registers, the
  stack's ``training.mode: managed``; Phi-3 Cookbook ``md/03.FineTuning/FineTuning_MLSDK.md``)::

      {"input_data": {"input_string": [[{"role": "user", "content": "..."}, ...]],
                      "parameters": {...}}, "params": {}}

  one conversation in a list of conversations, answered with a list.

Without a ``payload_shape`` node input the connection's ``payload_shape`` config decides (the
stack writes the one its served model takes), else ``prompt-list``.

HTTP goes through ``urllib.request`` (no ``requests`` dependency). Errors name the HTTP status
and the first 300 characters of the body, never the key. ``promptflow`` is imported guarded so
the module (and its tests) work without it.

This file deliberately has no ``from __future__ import annotations``: Prompt flow reads the
tool's annotations at run time to recognise the ``CustomConnection`` input.
"""

import base64
import json
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Tuple

try:  # promptflow >= 1.8
    from promptflow.core import tool
except ImportError:  # pragma: no cover - depends on the installed promptflow
    try:
        from promptflow import tool  # older promptflow
    except ImportError:

        def tool(func: Optional[Callable] = None, **_kwargs: Any) -> Any:
            """No-op stand-in for ``promptflow.core.tool`` when promptflow is absent."""
            if func is None:
                return lambda inner: inner
            return func

try:
    from promptflow.connections import CustomConnection
except ImportError:  # pragma: no cover - depends on the installed promptflow

    class CustomConnection:  # type: ignore[no-redef]
        """Minimal stand-in for ``promptflow.connections.CustomConnection``."""

        def __init__(self, configs: Optional[Dict[str, Any]] = None,
                     secrets: Optional[Dict[str, Any]] = None) -> None:
            self.configs = dict(configs or {})
            self.secrets = dict(secrets or {})


PAYLOAD_SHAPES = ("prompt-list", "chat", "chat-list")
DEFAULT_SHAPE = "prompt-list"
DEFAULT_TIMEOUT_SECONDS = 200.0  # the deployment's request timeout (180 s) plus queueing
DEFAULT_MAX_NEW_TOKENS = 256  # a GPU deployment; the connection's configs carry the CPU value
BODY_SNIPPET_CHARS = 300

#: Closes a turn and opens the next one inside a conversation prompt; the same string as
#: ``CONVERSATION_TURN_SEPARATOR`` in finetuning_dir/fine_tune.py (a test checks).
CONVERSATION_TURN_SEPARATOR = "<|end|>\n<|{role}|>\n"


class EndpointError(RuntimeError):
    """The endpoint could not be reached, timed out, or answered with a non-2xx status."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


def history_messages(chat_history: Any) -> List[Dict[str, str]]:
    """User/assistant messages from Prompt flow's ``chat_history``.

    Each turn is ``{"inputs": {...}, "outputs": {...}}``; the user text is ``inputs["question"]``
    (else the turn's only string input) and the answer ``outputs["answer"]`` (else its only
    string output). ``None`` or an empty list gives no messages. Raises ``ValueError`` naming the
    turn that has neither.
    """
    messages: List[Dict[str, str]] = []
    for index, turn in enumerate(chat_history or []):
        if not isinstance(turn, dict):
            raise ValueError(f"chat_history[{index}] is not an object")
        for side, key, role in (("inputs", "question", "user"), ("outputs", "answer", "assistant")):
            values = turn.get(side) or {}
            text = values.get(key) if isinstance(values, dict) else None
            if not isinstance(text, str) and isinstance(values, dict):
                strings = [v for v in values.values() if isinstance(v, str)]
                text = strings[0] if len(strings) == 1 else None
            if not isinstance(text, str):
                raise ValueError(f"chat_history[{index}].{side} has no '{key}' text")
            messages.append({"role": role, "content": text})
    return messages


def conversation_prompt(messages: List[Dict[str, str]]) -> str:
    """The one prompt that carries ``messages`` (user first and last, user/assistant turns)
    through the model's prompt template (see the module docstring). Raises ``ValueError``."""
    if not messages or messages[0]["role"] != "user" or messages[-1]["role"] != "user":
        raise ValueError("a conversation prompt must start and end with a user turn")
    parts = [messages[0]["content"]]
    for message in messages[1:]:
        parts.append(CONVERSATION_TURN_SEPARATOR.format(role=message["role"]) + message["content"])
    return "".join(parts)


def context_overflow(err: BaseException) -> Optional[int]:
    """Tokens a request was over the model's context, from the HTTP 400 the served model
    (finetuning_dir/phi3_serving.py) answers: ``context_length_exceeded: ... by N tokens``;
    None for any other error."""
    if not isinstance(err, EndpointError) or err.status != 400:
        return None
    match = re.search(r"context_length_exceeded:.*? by (\d+) tokens", str(err))
    return int(match.group(1)) if match else None


def drop_oldest_turn(messages: List[Dict[str, str]]) -> Optional[List[Dict[str, str]]]:
    """``messages`` without the oldest user turn and the answers up to the next user turn; a
    leading system message is kept. None when only the last user turn would be left."""
    start = 1 if messages and messages[0].get("role") == "system" else 0
    nxt = start + 1
    while nxt < len(messages) and messages[nxt].get("role") != "user":
        nxt += 1
    if nxt >= len(messages):
        return None
    return messages[:start] + messages[nxt:]


def build_payload(question: str, shape: str = DEFAULT_SHAPE, temperature: float = 0.7,
                  max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                  history: Optional[List[Dict[str, str]]] = None) -> Dict[str, Any]:
    """JSON body for ``question`` after the ``history`` messages, in the given payload shape.

    ``do_sample`` follows the temperature: greedy decoding at 0 (transformers refuses
    ``temperature=0`` with sampling). Raises ``ValueError`` for an empty question, an unknown
    shape, a negative temperature or ``max_new_tokens < 1``.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    if shape not in PAYLOAD_SHAPES:
        raise ValueError(f"unknown payload shape {shape!r}; expected one of {', '.join(PAYLOAD_SHAPES)}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    temperature = float(temperature)
    do_sample = temperature > 0
    messages = list(history or []) + [{"role": "user", "content": question}]
    parameters = {"temperature": temperature, "max_new_tokens": max_new_tokens, "do_sample": do_sample}
    if shape == "chat":
        return {"input_data": {"input_string": messages, "parameters": parameters}}
    if shape == "chat-list":
        return {"input_data": {"input_string": [messages], "parameters": parameters}, "params": {}}
    return {
        "input_data": [conversation_prompt(messages)],
        "params": {
            "temperature": temperature,
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "return_full_text": False,
        },
    }


def _snippet(text: str, limit: int = BODY_SNIPPET_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _answer_from(item: Any) -> Optional[str]:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in ("0", "generated_text", "output"):
            if isinstance(item.get(key), str):
                return item[key]
    return None


def parse_response(body: Any) -> str:
    """Answer text from an endpoint response (raw ``str``/``bytes`` JSON, or already parsed).

    Understands ``{"output": "..."}`` (catalog chat models), ``["..."]`` (MLflow text
    generation), ``[{"0": "..."}]`` / ``[{"generated_text": "..."}]`` (data-frame or pipeline
    style) and the same wrapped in ``{"predictions": ...}``; a JSON string that itself holds
    JSON (double encoding) is unwrapped once. Raises ``ValueError`` otherwise.
    """
    value = body
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except ValueError:
            raise ValueError(f"endpoint response is not JSON: {_snippet(text)!r}") from None
        if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
            try:
                value = json.loads(value)
            except ValueError:
                pass  # a plain answer that starts with a bracket
    if isinstance(value, dict) and "predictions" in value:
        value = value["predictions"]
    if isinstance(value, dict) and isinstance(value.get("output"), str):
        return value["output"]
    if isinstance(value, list) and value:
        answer = _answer_from(value[0])
        if answer is not None:
            return answer
    if isinstance(value, str):
        return value
    raise ValueError(
        "unexpected endpoint response shape (expected {\"output\": str}, [str], "
        f"[{{\"0\": str}}] or [{{\"generated_text\": str}}]): {_snippet(json.dumps(value, ensure_ascii=False))!r}"
    )


MASK = "***"


def _base64_cores(secret: bytes) -> List[str]:
    """Base64 of ``secret`` at byte offsets 0, 1 and 2, without the characters a neighbour's
    bits can change: so the key is found inside any base64 blob (``Bearer <key>``, a JSON)."""
    cores = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + secret).decode("ascii").rstrip("=")
        start = 0 if offset == 0 else 4
        end = len(encoded) if (offset + len(secret)) % 3 == 0 else len(encoded) - 4
        if end - start >= 8:
            cores.append(encoded[start:end])
    return cores


def secret_forms(secret: str) -> List[str]:
    """Every form of ``secret`` that :func:`mask_secret` replaces, longest first: plain,
    URL-encoded (upper- and lower-case escapes, ``+`` for spaces), JSON-escaped (once and
    twice), base64 and base64url at any byte alignment. The same table as lib/secrets.ts
    ``secretForms`` (test/fixtures/secret-forms.json holds its output; a test compares)."""
    if not secret:
        return []
    forms = {secret}
    uri = urllib.parse.quote(secret, safe="-_.!~*'()")
    forms.add(uri)
    forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), uri))
    forms.add(uri.replace("%20", "+"))
    once = json.dumps(secret, ensure_ascii=False)[1:-1]
    forms.add(once)
    forms.add(json.dumps(once, ensure_ascii=False)[1:-1])
    for core in _base64_cores(secret.encode("utf-8")):
        forms.add(core)
        forms.add(core.replace("+", "-").replace("/", "_"))
    return sorted((f for f in forms if f), key=len, reverse=True)


def mask_secret(text: str, secret: Optional[str]) -> str:
    """``text`` with every form (:func:`secret_forms`) of ``secret`` replaced by ``***``."""
    if not secret or not text:
        return text
    for form in secret_forms(secret):
        text = text.replace(form, MASK)
    return text


def _scrub(text: str, secret: str) -> str:
    return mask_secret(text, secret)


def _is_timeout(reason: Any) -> bool:
    return isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason).lower()


def call_endpoint(url: str, key: str, payload: Any, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                  opener: Optional[urllib.request.OpenerDirector] = None,
                  headers: Optional[Dict[str, str]] = None) -> str:
    """POSTs ``payload`` as JSON to ``url`` with ``Authorization: Bearer <key>``; returns the
    response body (text) of a 2xx answer.

    Raises ``EndpointError`` on a non-2xx status (message: status and the first 300 characters
    of the body), on a timeout after ``timeout`` seconds and on connection failures. The key
    never appears in a message (it is masked even if the server echoes it). ``opener`` defaults
    to ``urllib.request.build_opener()`` (which honours the proxy environment variables).
    """
    if not key:
        raise ValueError("the endpoint key is empty")
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
        raise ValueError(f"timeout must be a number > 0, got {timeout!r}")
    request_headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "Authorization": f"Bearer {key}",
    }
    request_headers.update(headers or {})
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode("utf-8"), headers=request_headers, method="POST"
    )
    opener = opener or urllib.request.build_opener()
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as err:
        try:
            text = err.read().decode("utf-8", errors="replace")
        except Exception:  # noqa: BLE001 - the body is best effort
            text = ""
        raise EndpointError(
            f"endpoint {url} answered HTTP {err.code}: {_snippet(_scrub(text, key))!r}", status=err.code
        ) from None
    except urllib.error.URLError as err:
        if _is_timeout(err.reason):
            raise EndpointError(f"endpoint {url} did not answer within {timeout:g} s") from None
        raise EndpointError(f"cannot reach endpoint {_scrub(url, key)}: {_scrub(str(err.reason), key)}") from None
    except (socket.timeout, TimeoutError):
        raise EndpointError(f"endpoint {url} did not answer within {timeout:g} s") from None
    # The key in any form is masked before anything reads the body: an answer that is not
    # JSON is quoted in the error, and a snippet must never cut a key in two before masking.
    text = _scrub(text, key)
    if not 200 <= status < 300:
        raise EndpointError(
            f"endpoint {url} answered HTTP {status}: {_snippet(text)!r}", status=status
        )
    return text


def normalize_scoring_url(endpoint: str) -> str:
    """The scoring URL: ``endpoint`` as given, with ``/score`` appended when it has no path
    (``https://<name>.<region>.inference.ml.azure.com``). Raises ``ValueError`` unless it is an
    http(s) URL."""
    endpoint = (endpoint or "").strip()
    parsed = urllib.parse.urlsplit(endpoint)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("the connection's endpoint is not an http(s) URL")
    if parsed.path in ("", "/"):
        parsed = parsed._replace(path="/score")
    return urllib.parse.urlunsplit(parsed)


def _lookup(source: Any, name: str) -> Optional[str]:
    if source is None:
        return None
    try:
        value = source.get(name) if hasattr(source, "get") else None
    except Exception:  # noqa: BLE001 - unusual mapping types
        value = None
    return value if isinstance(value, str) and value.strip() else None


def resolve_connection(connection: Any) -> Tuple[str, str, Optional[str]]:
    """``(scoring_url, key, deployment)`` from a CustomConnection (or a plain dict).

    ``key`` comes from ``secrets["key"]``; ``endpoint`` from ``configs`` or ``secrets``
    (configs first); ``deployment`` (optional) likewise. Raises ``ValueError`` naming what is
    missing, never its value.
    """
    if isinstance(connection, dict):
        configs: Any = connection
        secrets: Any = connection
    else:
        configs = getattr(connection, "configs", None)
        secrets = getattr(connection, "secrets", None)
    key = _lookup(secrets, "key")
    if key is None:
        raise ValueError("the connection has no secret 'key' (expected credentials.keys.key)")
    endpoint = _lookup(configs, "endpoint") or _lookup(secrets, "endpoint")
    if endpoint is None:
        raise ValueError("the connection has no 'endpoint' in its configs or secrets")
    deployment = _lookup(configs, "deployment") or _lookup(secrets, "deployment")
    return normalize_scoring_url(endpoint), key.strip(), deployment


def connection_number(connection: Any, name: str, default: float) -> float:
    """A positive number from the connection's configs (strings, as the stack writes them), else
    ``default``. Raises ``ValueError`` naming the entry when it is not a positive number."""
    configs = connection if isinstance(connection, dict) else getattr(connection, "configs", None)
    text = _lookup(configs, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise ValueError(f"the connection's '{name}' must be a positive number, got {text!r}")
    return value


@tool
def ask_phi3(
    connection: CustomConnection,
    question: str,
    chat_history: list = None,
    payload_shape: str = None,
    temperature: float = 0.7,
    max_new_tokens: int = None,
    timeout_seconds: float = None,
) -> str:
    """Sends ``question``, after the turns of ``chat_history``, to the endpoint of
    ``connection`` and returns the model's answer. ``payload_shape``, ``max_new_tokens`` and
    ``timeout_seconds`` default to the connection's configs (set by the stack for the served
    model and the deployment's instance type), else prompt-list, 256 tokens and 200 s."""
    url, key, deployment = resolve_connection(connection)
    if payload_shape is None:
        configs = connection if isinstance(connection, dict) else getattr(connection, "configs", None)
        payload_shape = _lookup(configs, "payload_shape") or DEFAULT_SHAPE
    if max_new_tokens is None:
        max_new_tokens = int(connection_number(connection, "max_new_tokens", DEFAULT_MAX_NEW_TOKENS))
    if timeout_seconds is None:
        timeout_seconds = connection_number(connection, "timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    headers = {"azureml-model-deployment": deployment} if deployment else None
    # The question goes last; the history is what may be trimmed.
    conversation = history_messages(chat_history) + [{"role": "user", "content": question}]
    dropped = 0
    while True:
        payload = build_payload(question, payload_shape, float(temperature), int(max_new_tokens), conversation[:-1])
        try:
            body = call_endpoint(url, key, payload, float(timeout_seconds), headers=headers)
            break
        except EndpointError as err:
            # A conversation over the model's context (issue 20): drop the oldest turns until
            # it fits, and say so in the flow's log.
            over = context_overflow(err)
            shorter = drop_oldest_turn(conversation) if over is not None else None
            if shorter is None:
                raise
            conversation, dropped = shorter, dropped + 1
            print(f"ask_phi3: the conversation is {over} tokens over the model's context: "
                  f"dropped the oldest turn ({dropped} so far)", flush=True)
    return parse_response(body)
