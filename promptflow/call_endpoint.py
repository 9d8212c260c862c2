"""Prompt flow tool: asks the fine-tuned Phi-3 model behind an Azure ML online endpoint.

The endpoint comes from a Prompt flow ``CustomConnection`` (default name ``phi3-endpoint``,
set in ``flow.dag.yml``). The project creates it as a ``CustomKeys`` workspace connection with
``credentials.keys = {endpoint, key}``, which Prompt flow exposes as *secrets*; the endpoint is
also looked up in the connection's *configs* (its metadata), so either place works. An optional
``deployment`` entry (configs or secrets) pins a deployment with the
``azureml-model-deployment`` header.

Payload shapes (``payload_shape`` node input):

* ``prompt-list`` (default; what ``finetuning_dir/fine_tune.py`` saves the MLflow model for)::

      {"input_data": ["<question>"],
       "params": {"temperature": t, "max_new_tokens": n, "do_sample": t > 0,
                  "return_full_text": false}}

  answered with a JSON list such as ``["<answer>"]``;
* ``chat`` (Azure model-catalog chat deployments)::

      {"input_data": {"input_string": [{"role": "user", "content": "<question>"}],
                      "parameters": {"temperature": t, "max_new_tokens": n, "do_sample": t > 0}}}

  answered with ``{"output": "<answer>"}``.

HTTP goes through ``urllib.request`` (no ``requests`` dependency). Errors name the HTTP status
and the first 300 characters of the body, never the key. ``promptflow`` is imported guarded so
the module (and its tests) work without it.

This file deliberately has no ``from __future__ import annotations``: Prompt flow reads the
tool's annotations at run time to recognise the ``CustomConnection`` input.
"""

import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Dict, Optional, Tuple

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


PAYLOAD_SHAPES = ("prompt-list", "chat")
DEFAULT_SHAPE = "prompt-list"
DEFAULT_TIMEOUT_SECONDS = 180.0  # the deployment's request timeout (180000 ms)
BODY_SNIPPET_CHARS = 300


class EndpointError(RuntimeError):
    """The endpoint could not be reached, timed out, or answered with a non-2xx status."""

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


def build_payload(question: str, shape: str = DEFAULT_SHAPE, temperature: float = 0.7,
                  max_new_tokens: int = 256) -> Dict[str, Any]:
    """JSON body for one question in the given payload shape (see the module docstring).

    ``do_sample`` follows the temperature (greedy decoding at 0). Raises ``ValueError`` for an
    empty question, an unknown shape, a negative temperature or ``max_new_tokens < 1``.
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
    if shape == "chat":
        return {
            "input_data": {
                "input_string": [{"role": "user", "content": question}],
                "parameters": {
                    "temperature": temperature,
                    "max_new_tokens": max_new_tokens,
                    "do_sample": do_sample,
                },
            }
        }
    return {
        "input_data": [question],
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


def _scrub(text: str, secret: str) -> str:
    return text.replace(secret, "***") if secret else text


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
        raise EndpointError(f"cannot reach endpoint {url}: {_scrub(str(err.reason), key)}") from None
    except (socket.timeout, TimeoutError):
        raise EndpointError(f"endpoint {url} did not answer within {timeout:g} s") from None
    if not 200 <= status < 300:
        raise EndpointError(
            f"endpoint {url} answered HTTP {status}: {_snippet(_scrub(text, key))!r}", status=status
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


@tool
def ask_phi3(
    connection: CustomConnection,
    question: str,
    payload_shape: str = DEFAULT_SHAPE,
    temperature: float = 0.7,
    max_new_tokens: int = 256,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> str:
    """Sends ``question`` to the endpoint of ``connection`` and returns the model's answer."""
    url, key, deployment = resolve_connection(connection)
    payload = build_payload(question, payload_shape, float(temperature), int(max_new_tokens))
    headers = {"azureml-model-deployment": deployment} if deployment else None
    body = call_endpoint(url, key, payload, float(timeout_seconds), headers=headers)
    return parse_response(body)
