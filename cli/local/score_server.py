"""A local stand-in for an Azure ML managed online endpoint serving an MLflow model.

``npm run serve:local -- --model DIR`` runs it (cli/serve-local.ts). It loads the model with
``mlflow.pyfunc.load_model`` and answers requests the way an online endpoint with key
authentication and no-code MLflow scoring does, so ``npm run chat`` and the Prompt flow tool can
be tried against the model that ``npm run train:local`` wrote before anything is deployed:

* ``GET /`` is the liveness route (200 ``Healthy``);
* ``POST /score`` with ``Authorization: Bearer <key>`` (401 without the key) and a JSON body
  ``{"input_data": ..., "params": {...}}`` (``params`` optional), answered with the model's
  predictions as JSON;
* ``input_data`` goes to the model the way Azure's no-code MLflow scoring script passes it for a
  model with the ``transformers`` flavor: the ``{"input_string": ..., "parameters": ...}`` chat
  shape of catalog models is unwrapped (``parameters`` become the params), a string, a list of
  strings and a list of string-valued dicts go through unchanged. The model decides: the one
  ``fine_tune.py`` saves (finetuning_dir/phi3_serving.py) refuses anything but prompt strings,
  as it does on Azure;
* with ``--deployment NAME`` the server is that deployment of an endpoint: a request whose
  ``azureml-model-deployment`` header names another deployment answers 404, as Azure's endpoint
  does for an unknown deployment (a request without the header is routed to it, the endpoint's
  only deployment); this is how the smoke test of ``pulumi up`` (jobs/smoke-test.ts) reaches a
  deployment before it has traffic
  (https://learn.microsoft.com/azure/machine-learning/how-to-safely-rollout-online-endpoints);
* then ``model.predict(input_data, params=params)``. A request the model refuses (an
  ``MlflowException`` with error code ``INVALID_PARAMETER_VALUE`` or ``BAD_REQUEST``: a bad
  parameter value, the wrong input shape, a prompt over the context length) answers 400 with the
  model's message, which names the parameter, as ``mlflow models serve`` does; any other failure
  in the model 500 with the error's first line; a request over ``--request-timeout`` seconds 408;
  more than ``--max-concurrent-requests`` at once 429 after ``--max-queue-wait`` seconds.

Where this server still differs from Azure's no-code MLflow deployment (azureml-inference-server-http
1.5.1 running Azure's MLflow scoring script, read from the package's ``server/routes.py`` and the
script in Azure/azureml-assets); the 400s and 401 here are tested in test/python:

======================================  ================================  =========================
Azure's contract: https://learn.microsoft.com/azure/machine-learning/how-to-deploy-mlflow-models-online-endpoints
(no-code deployment, ``input_data`` / ``params``) and
https://learn.microsoft.com/azure/machine-learning/how-to-authenticate-online-endpoint (key auth).
Request limits follow the deployment's ``request_settings`` (seed values: 3 concurrent, 180 s).

``--trace FILE`` appends JSON lines: ``{"params": ...}`` for every request the model runs and
``{"prompt": ...}`` for every generation, the exact text the tokenizer receives (after the
model's prompt template): a debugging aid, and what the tests use to prove that a conversation
reaches the model in Phi-3's chat format with the client's generation parameters. The key never
appears in any output.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional, Tuple

MAX_BODY_BYTES = 10 * 1024 * 1024


class RequestError(Exception):
    """A request the endpoint refuses, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def signature_takes_string_list(model: Any) -> bool:
    """True when the model's signature input is one unnamed string column (a list of prompts)."""
    signature = getattr(getattr(model, "metadata", None), "signature", None)
    inputs = getattr(signature, "inputs", None)
    specs = getattr(inputs, "inputs", None) or []
    return len(specs) == 1 and getattr(specs[0], "name", None) is None and str(getattr(specs[0], "type", "")) in ("string", "DataType.string")


def split_request(body: Any, string_list_model: bool = True) -> Tuple[Any, Optional[dict]]:
    """``(input_data, params)`` from a request body, or :class:`RequestError` (400), the way
    Azure's no-code MLflow scoring script reads it for a transformers-flavor model: the
    ``{"input_string": ..., "parameters": ...}`` shape is unwrapped when no ``params`` are
    given. (``string_list_model`` is kept for callers; the model itself checks the input.)"""
    if not isinstance(body, dict) or "input_data" not in body:
        raise RequestError(400, 'the body must be a JSON object with "input_data" (and optional "params")')
    input_data = body["input_data"]
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        raise RequestError(400, '"params" must be a JSON object')
    if isinstance(input_data, dict) and params is None and "parameters" in input_data:
        rest = dict(input_data)
        params = rest.pop("parameters")
        input_data = rest["input_string"] if set(rest) == {"input_string"} else rest
    return input_data, params


def jsonable(result: Any) -> Any:
    """Predictions as JSON-serialisable values (lists, dicts, strings, numbers)."""
    if hasattr(result, "to_dict"):
        return result.to_dict(orient="records")
    if hasattr(result, "tolist"):
        return result.tolist()
    return result


_trace_lock = threading.Lock()


def trace_record(path: Optional[str], record: dict) -> None:
    """Appends ``record`` as a JSON line to the trace file (nothing without one)."""
    if path:
        with _trace_lock, open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def refusal_status(err: BaseException) -> Optional[int]:
    """400 for an error the model raises to refuse a request (``MlflowException`` with error
    code ``INVALID_PARAMETER_VALUE`` or ``BAD_REQUEST``, what MLflow's own scoring server
    answers with 400), else None (a 500)."""
    code = getattr(err, "error_code", None)
    return 400 if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST") else None


def install_trace(model: Any, path: str) -> None:
    """Records every text the model tokenizes (after the prompt template)."""
    impl = getattr(model, "_model_impl", None)
    if hasattr(impl, "on_prompt"):  # phi3_serving.Phi3ChatModel (what fine_tune.py saves)
        impl.on_prompt = lambda text: trace_record(path, {"prompt": text})
        return
    pipeline = getattr(impl, "pipeline", None)
    if pipeline is None:
        raise RuntimeError("--trace needs an MLflow transformers model")
    original = pipeline.preprocess

    def preprocess(prompt_text, *args, **kwargs):
        trace_record(path, {"prompt": prompt_text})
        return original(prompt_text, *args, **kwargs)

    pipeline.preprocess = preprocess


#: The header that sends a request to one deployment of an endpoint.
DEPLOYMENT_HEADER = "azureml-model-deployment"


def make_handler(model: Any, key: str, request_timeout: float, slots: threading.BoundedSemaphore,
                 queue_wait: float, trace: Optional[str] = None, deployment: Optional[str] = None):
    string_list_model = signature_takes_string_list(model)

    class Handler(BaseHTTPRequestHandler):
        server_version = "phi3-local-endpoint"

        def log_message(self, fmt: str, *args: Any) -> None:  # one short line per request
            sys.stderr.write("%s %s\n" % (self.command, fmt % args))

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if self.path in ("/", ""):
                self._send(200, "Healthy")
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:  # noqa: N802 - http.server naming
            if self.path.split("?")[0] != "/score":
                return self._send(404, {"error": f"no route {self.path}; POST /score"})
            auth = self.headers.get("Authorization", "")
            given = auth[len("Bearer "):] if auth.startswith("Bearer ") else ""
            if not hmac.compare_digest(given.encode(), key.encode()):
                return self._send(401, {"error": "key_auth_access_denied: missing or wrong key"})
            wanted = self.headers.get(DEPLOYMENT_HEADER)
            if deployment is not None and wanted is not None and wanted != deployment:
                return self._send(404, {"error": f"deployment {wanted} not found on this endpoint"})
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                return self._send(413, {"error": "request body too large"})
            try:
                body = json.loads(self.rfile.read(length).decode("utf-8"))
                input_data, params = split_request(body, string_list_model)
            except ValueError:
                return self._send(400, {"error": "the body is not valid JSON"})
            except RequestError as err:
                return self._send(err.status, {"error": str(err)})
            if not slots.acquire(timeout=queue_wait):
                return self._send(429, {"error": "too many requests: all instances are busy"})
            trace_record(trace, {"params": params})
            outcome: dict = {}

            def work() -> None:
                try:
                    outcome["result"] = jsonable(model.predict(input_data, params=params))
                except Exception as err:  # noqa: BLE001 - reported to the client (400 or 500)
                    status = refusal_status(err)
                    if status is not None:
                        outcome["refused"] = (status, getattr(err, "message", str(err)))
                    else:
                        outcome["error"] = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                finally:
                    slots.release()

            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            worker.join(request_timeout)
            if worker.is_alive():
                return self._send(408, {"error": f"request timed out after {request_timeout:g} s"})
            if "refused" in outcome:
                status, message = outcome["refused"]
                return self._send(status, {"error": message})
            if "error" in outcome:
                return self._send(500, {"error": outcome["error"]})
            return self._send(200, outcome["result"])

    return Handler


def read_key(path: Optional[str]) -> str:
    """The endpoint key: ``$ENDPOINT_KEY``, else the first line of ``path``. Raises ``ValueError``."""
    key = os.environ.get("ENDPOINT_KEY", "").strip()
    if not key and path:
        with open(path, encoding="utf-8") as handle:
            key = handle.readline().strip()
    if not key:
        raise ValueError("no key: set ENDPOINT_KEY or pass --key-file")
    return key


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(description="Serve an MLflow model like an Azure ML online endpoint.")
    parser.add_argument("--model", required=True, help="folder of the MLflow model (MLmodel at its root)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5001, help="0 picks a free port")
    parser.add_argument("--key-file", help="file whose first line is the key (else $ENDPOINT_KEY)")
    parser.add_argument("--request-timeout", type=float, default=180.0, help="seconds (deployment default 180)")
    parser.add_argument("--max-concurrent-requests", type=int, default=3)
    parser.add_argument("--max-queue-wait", type=float, default=0.5, help="seconds a request waits for a free slot")
    parser.add_argument("--trace", help="append the exact generation prompts to this JSONL file")
    parser.add_argument("--deployment", help="deployment name: another name in the azureml-model-deployment header answers 404")
    args = parser.parse_args(argv)
    try:
        key = read_key(args.key_file)
    except (OSError, ValueError) as err:
        print(f"serve:local: {err}", file=sys.stderr)
        return 2
    if not os.path.isfile(os.path.join(args.model, "MLmodel")):
        print(f"serve:local: {args.model} holds no MLmodel file (not an MLflow model folder)", file=sys.stderr)
        return 2

    import logging

    import mlflow

    # Expected here, so silenced (said once): the model pins the serving image's torch, this
    # environment has the CPU build; mlflow warns about the mismatch on every load.
    logging.getLogger("mlflow.utils.requirements_utils").addFilter(
        lambda record: not record.getMessage().startswith("Detected one or more mismatches"))
    print("serve:local: the torch version warning of mlflow is silenced (the model pins the serving image's torch, "
          "this environment has the CPU build)", file=sys.stderr)

    model = mlflow.pyfunc.load_model(args.model)
    if args.trace:
        install_trace(model, args.trace)
    slots = threading.BoundedSemaphore(args.max_concurrent_requests)
    handler = make_handler(model, key, args.request_timeout, slots, args.max_queue_wait, args.trace, args.deployment)
    server = ThreadingHTTPServer((args.host, args.port), handler)
    host, port = server.server_address[:2]
    print(f"listening on http://{host}:{port}/score", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
