"""The served model's ``predict``: what the MLflow model that ``fine_tune.py`` saves runs.

``fine_tune.py`` saves the model with ``mlflow.transformers.save_model`` (so its ``MLmodel``
keeps the ``transformers`` flavor, which Azure ML's no-code MLflow scoring script reads to pass a
list of prompt strings through unchanged) and then points the model's ``python_function``
flavor at this module (copied into the model's ``code/`` folder, ``loader_module:
phi3_serving``). ``mlflow.pyfunc.load_model`` - what Azure's scoring script, ``mlflow models
serve`` and ``npm run serve:local`` call - therefore returns :class:`Phi3ChatModel`, which
generates with the weights and tokenizer of the transformers flavor but decides itself:

* **Parameters.** ``max_new_tokens`` (integer, 1 to the context length), ``temperature``
  (number >= 0; below :data:`GREEDY_TEMPERATURE` it means greedy decoding, ``do_sample``
  false: API clients send ``temperature: 0``, which transformers refuses with sampling),
  ``top_p`` (0 < p <= 1), ``do_sample`` and ``return_full_text`` (booleans). A bad value
  raises :class:`InvalidRequest` (an ``MlflowException`` with error code
  ``INVALID_PARAMETER_VALUE``, which MLflow's scoring server and the local server answer with
  HTTP 400) naming the parameter. MLflow's own params-schema check runs first and refuses
  values of the wrong type (``"max_new_tokens": "x"``) the same way.
* **The answer only.** The generated tokens are decoded without special tokens; the prompt,
  and with it the Phi-3 chat template, is never returned. ``return_full_text: true`` is
  accepted for compatibility and changes nothing (the transformers pipeline would return the
  template markup ``<|system|>...<|assistant|>`` in front of the answer).
* **The training token ids.** The prompt is the model's ``prompt_template`` applied to the
  client's text, tokenized with the tokenizer's special tokens (``<s>`` first) exactly as
  trl's packing tokenizes the training texts; the transformers 4.41 pipeline would drop the
  ``<s>`` (``add_special_tokens=False``). :meth:`Phi3ChatModel.prompt_ids` is that sequence.
* **The context length.** A prompt whose tokens plus ``max_new_tokens`` exceed the model's
  context length (``max_position_embeddings``, 4,096 for Phi-3-mini-4k, recorded in the model's
  metadata as ``context_length``) is refused with :class:`InvalidRequest` saying by how many
  tokens (``context_length_exceeded: ... over by N tokens``); Phi-3-mini-4k has no rope scaling,
  so output past its positions silently degrades. Clients drop the oldest turns and retry.
* **Input.** A list of prompt strings (or one string). Anything else, a list of chat message
  dicts included (MLflow would turn it into a table and answer its ``role`` column), is refused.

Only the standard library is imported at module level (``torch``/``mlflow`` inside functions),
so the pure helpers test without them.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

#: Below this temperature generation is greedy (``do_sample: false``).
GREEDY_TEMPERATURE = 1e-5

#: Machine-readable prefix of the error for a prompt that does not fit (clients look for it).
CONTEXT_ERROR_CODE = "context_length_exceeded"

_BOOL_PARAMS = ("do_sample", "return_full_text")


def _invalid(message: str) -> Exception:
    """An ``MlflowException(INVALID_PARAMETER_VALUE)`` (HTTP 400 in MLflow's scoring server);
    a plain ``ValueError`` where MLflow is not installed."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
    except ImportError:  # pragma: no cover - serving always has mlflow
        return ValueError(message)
    return InvalidRequest(message, error_code=INVALID_PARAMETER_VALUE)


try:  # pragma: no branch
    from mlflow.exceptions import MlflowException as _Base
except ImportError:  # pragma: no cover
    _Base = ValueError  # type: ignore[misc,assignment]


class InvalidRequest(_Base):  # type: ignore[misc,valid-type]
    """A request the model refuses (bad parameter, input shape, or a prompt that does not fit).
    Its message names the parameter; ``error_code`` is ``INVALID_PARAMETER_VALUE``."""


def generation_settings(params: Optional[Mapping[str, Any]], defaults: Mapping[str, Any],
                        context_length: int) -> Dict[str, Any]:
    """Validated generation settings from request ``params`` merged over ``defaults``.

    Returns ``{"max_new_tokens": int, "do_sample": bool, "temperature"?: float, "top_p"?:
    float}`` (temperature and top_p only when sampling). A temperature below
    :data:`GREEDY_TEMPERATURE` (0 included) turns sampling off. Raises :class:`InvalidRequest`
    naming the first bad parameter: a non-integer, below 1 or above ``context_length``
    ``max_new_tokens``; a negative or non-finite ``temperature``; ``top_p`` outside (0, 1];
    a non-boolean ``do_sample`` / ``return_full_text``.
    """
    merged = dict(defaults)
    merged.update({k: v for k, v in (params or {}).items() if v is not None})

    def number(name: str) -> float:
        value = merged.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise _invalid(f"params.{name} must be a finite number, got {value!r}")
        return float(value)

    max_new = merged.get("max_new_tokens")
    if isinstance(max_new, float) and max_new.is_integer():
        max_new = int(max_new)
    if isinstance(max_new, bool) or not isinstance(max_new, int):
        raise _invalid(f"params.max_new_tokens must be an integer, got {max_new!r}")
    if not 1 <= max_new <= context_length:
        raise _invalid(f"params.max_new_tokens must be between 1 and {context_length} "
                       f"(the model's context length), got {max_new}")
    for name in _BOOL_PARAMS:
        if name in merged and not isinstance(merged[name], bool):
            raise _invalid(f"params.{name} must be true or false, got {merged[name]!r}")
    temperature = number("temperature")
    if temperature < 0:
        raise _invalid(f"params.temperature must be >= 0 (0 = greedy decoding), got {merged['temperature']!r}")
    top_p = number("top_p")
    if not 0 < top_p <= 1:
        raise _invalid(f"params.top_p must be in (0, 1], got {merged['top_p']!r}")
    sample = bool(merged.get("do_sample", True)) and temperature >= GREEDY_TEMPERATURE
    out: Dict[str, Any] = {"max_new_tokens": max_new, "do_sample": sample}
    if sample:
        out.update(temperature=temperature, top_p=top_p)
    return out


def context_problem(prompt_tokens: int, max_new_tokens: int, context_length: int) -> Optional[str]:
    """The refusal message when ``prompt_tokens + max_new_tokens`` exceeds ``context_length``
    (saying by how many tokens), else None."""
    total = prompt_tokens + max_new_tokens
    if total <= context_length:
        return None
    return (f"{CONTEXT_ERROR_CODE}: the prompt has {prompt_tokens} tokens and max_new_tokens is "
            f"{max_new_tokens}: {total} tokens, over the model's context length of {context_length} "
            f"by {total - context_length} tokens; shorten the prompt (drop the oldest turns) or "
            "lower max_new_tokens")


def prompts_from_input(data: Any) -> List[str]:
    """The prompt strings of a ``predict`` input: a string, a list of strings, or the one-column
    DataFrame / array MLflow makes of them. Raises :class:`InvalidRequest` otherwise (a list
    of chat message dicts included)."""
    if isinstance(data, str):
        return [data]
    if hasattr(data, "columns") and hasattr(data, "iloc"):  # pandas.DataFrame
        # MLflow turns a list of strings into one column named 0, and a list of objects into
        # columns named by their keys, of which its schema check keeps the first (``role`` for
        # chat messages): a named column means objects were sent.
        named = [str(c) for c in data.columns if isinstance(c, str)]
        if len(data.columns) != 1 or named:
            raise _invalid(f"input_data must be a list of prompt strings; got objects (keys: {', '.join(named)}); "
                           "chat message objects are not accepted: send the conversation as one prompt")
        data = list(data.iloc[:, 0])
    elif hasattr(data, "tolist"):
        data = data.tolist()
    if not isinstance(data, list) or not data or not all(isinstance(item, str) for item in data):
        kind = type(data).__name__ if not isinstance(data, list) else \
            ("an empty list" if not data else f"a list holding {type(next(i for i in data if not isinstance(i, str))).__name__}")
        raise _invalid(f"input_data must be a non-empty list of prompt strings, got {kind}")
    return data


class Phi3ChatModel:
    """The pyfunc implementation (see the module docstring). ``model``/``tokenizer``: the
    transformers objects; ``prompt_template``: a ``str.format`` string with ``{prompt}``;
    ``defaults``: the generation params of the model signature; ``context_length``: tokens."""

    def __init__(self, model: Any, tokenizer: Any, prompt_template: str, context_length: int,
                 defaults: Optional[Mapping[str, Any]] = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.prompt_template = prompt_template
        self.context_length = int(context_length)
        self.defaults = dict(defaults or {})
        #: Called with every templated prompt text before generation (``--trace`` of the local server).
        self.on_prompt: Optional[Callable[[str], None]] = None

    def prompt_text(self, prompt: str) -> str:
        """The client's prompt inside the chat template (what the tokenizer receives)."""
        return self.prompt_template.format(prompt=prompt)

    def prompt_ids(self, prompt: str) -> List[int]:
        """Token ids of the templated prompt, special tokens (``<s>``) included as in training."""
        return list(self.tokenizer(self.prompt_text(prompt), add_special_tokens=True)["input_ids"])

    def predict(self, data: Any, params: Optional[Dict[str, Any]] = None) -> List[str]:
        """One answer string per prompt. Raises :class:`InvalidRequest` for a bad input, a bad
        parameter or a prompt that does not fit in the context (checked for every prompt
        before any generation)."""
        import torch

        prompts = prompts_from_input(data)
        settings = generation_settings(params, self.defaults, self.context_length)
        encoded = []
        for index, prompt in enumerate(prompts):
            ids = self.prompt_ids(prompt)
            problem = context_problem(len(ids), settings["max_new_tokens"], self.context_length)
            if problem:
                where = f"input_data[{index}]: " if len(prompts) > 1 else ""
                raise _invalid(where + problem)
            encoded.append((prompt, ids))
        answers = []
        for prompt, ids in encoded:
            if self.on_prompt is not None:
                self.on_prompt(self.prompt_text(prompt))
            input_ids = torch.tensor([ids], device=self.model.device)
            with torch.no_grad():
                output = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                             pad_token_id=self.tokenizer.pad_token_id, **settings)
            answers.append(self.tokenizer.decode(output[0, len(ids):], skip_special_tokens=True))
        return answers


def _model_root(path: str) -> str:
    """The MLflow model folder (``MLmodel`` at its root) from the pyfunc data path."""
    here = os.path.abspath(path)
    while not os.path.isfile(os.path.join(here, "MLmodel")):
        parent = os.path.dirname(here)
        if parent == here:
            raise FileNotFoundError(f"no MLmodel file at or above {path}")
        here = parent
    return here


def _load_pyfunc(path: str, model_config: Optional[Dict[str, Any]] = None) -> Phi3ChatModel:
    """pyfunc loader (``loader_module: phi3_serving``): the transformers flavor's weights and
    tokenizer, its ``prompt_template``, the signature's params defaults and the recorded
    ``context_length``."""
    import mlflow.transformers
    from mlflow.models import Model

    root = _model_root(path)
    meta = Model.load(os.path.join(root, "MLmodel"))
    conf = meta.flavors["transformers"]
    # The pipeline, as the stock transformers pyfunc loads it: the same device choice (GPU 0 when
    # one is available, MLFLOW_DEFAULT_PREDICTION_DEVICE / device_map otherwise) and torch_dtype.
    pipeline = mlflow.transformers.load_model(root, return_type="pipeline")
    model, tokenizer = pipeline.model, pipeline.tokenizer
    model.eval()
    defaults = {}
    if meta.signature is not None and meta.signature.params is not None:
        defaults = {p.name: p.default for p in meta.signature.params.params}
    metadata = meta.metadata or {}
    context = metadata.get("context_length") or getattr(model.config, "max_position_embeddings")
    # MLflow 2.16 records the prompt_template given to save_model in the model's metadata.
    template = metadata.get("prompt_template") or conf.get("prompt_template")
    if not template or "{prompt}" not in template:
        raise ValueError(f"{root}: the MLflow model records no prompt_template with a {{prompt}} placeholder")
    return Phi3ChatModel(model, tokenizer, template, int(context), defaults)


def point_pyfunc_here(model_dir: str) -> None:
    """Makes the saved MLflow model at ``model_dir`` load as :class:`Phi3ChatModel`: copies
    this file into ``code/`` and sets the ``python_function`` flavor's ``loader_module`` and
    ``code`` (the ``transformers`` flavor, which Azure's scoring script looks for, is kept)."""
    import shutil

    from mlflow.models import Model

    code = os.path.join(model_dir, "code")
    os.makedirs(code, exist_ok=True)
    shutil.copyfile(os.path.abspath(__file__).replace(".pyc", ".py"), os.path.join(code, "phi3_serving.py"))
    path = os.path.join(model_dir, "MLmodel")
    meta = Model.load(path)
    pyfunc = meta.flavors["python_function"]
    pyfunc["loader_module"] = "phi3_serving"
    pyfunc["code"] = "code"
    meta.save(path)


def serving_tokens_match(training_ids: Sequence[int], serving_ids: Sequence[int]) -> bool:
    """True when ``serving_ids`` (a prompt) is a prefix of ``training_ids`` (the same
    conversation with its answer, as packed for training)."""
    return list(training_ids[:len(serving_ids)]) == list(serving_ids)


__all__ = [
    "CONTEXT_ERROR_CODE", "GREEDY_TEMPERATURE", "InvalidRequest", "Phi3ChatModel", "context_problem",
    "generation_settings", "point_pyfunc_here", "prompts_from_input", "serving_tokens_match",
]
