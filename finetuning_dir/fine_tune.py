"""Supervised fine-tuning of a Phi-3 chat model on Azure Machine Learning (command job).

Recipe (facts from the code-first Phi-3 + Prompt flow sample, reimplemented):

* base model ``microsoft/Phi-3-mini-4k-instruct`` (``--base-model``), loaded in bfloat16 on a
  GPU (float32 on CPU, see below) with the eager attention implementation and
  ``use_cache=False`` for training. Only transformers' own Phi-3 code runs (no code from the
  hub): Phi-3.5-mini-instruct and Phi-3-mini-128k-instruct ship ``rope_scaling.type:
  longrope``, which transformers 4.41.2 knows under its earlier name ``su`` (later releases map
  ``su`` back to ``longrope``), so the config is renamed on load (:func:`native_config_dict`)
  and the saved model loads with the pinned transformers on the serving image;
* every row's ``messages`` go through the tokenizer's chat template, with an empty system turn
  inserted in front when the conversation has none (:func:`normalize_messages`);
* trl ``SFTTrainer`` with packing, gradient checkpointing and a cosine schedule; on a GPU
  ``--precision bf16-mixed`` (default: float32 master weights, bfloat16 autocast) or ``bf16``
  (weights kept in bfloat16: half the memory, but at lr 5e-6 AdamW's updates mostly round away),
  and ``--method full`` (default) or ``lora`` (PEFT adapters on the frozen bfloat16 base, merged
  into the weights before the save, so serving is unchanged); every RNG is seeded with ``--seed``
  before the model loads and trl packs the data (:func:`build_trainer`), so every node of a
  multi-node job packs the same order; epochs, learning rate, per-device batch size, max sequence length, warmup ratio,
  scheduler and seed come from the command line (defaults 3, 5e-6, 4, 2048, 0.2, cosine, 0);
* evaluation on the test split after every epoch; every number the trainer logs (loss,
  learning rate, eval loss, runtime...) goes to the active MLflow run through a small callback
  (the stock ``MLflowCallback`` is disabled: it logs every TrainingArguments field as a param
  and Azure ML rejects some of them, the INVALID_PARAMETER_VALUE error the sample works
  around);
* without CUDA (a CPU cluster such as Standard_E16s_v3 with the
  ``mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04`` image, fine for a few rows of data)
  the trainer runs on the CPU in plain float32: ``use_cpu=True``, ``bf16=False`` and the model
  loaded in float32 (bfloat16 is emulated and slow on those VMs); see
  :func:`training_dtype_name`. A CUDA GPU without native bfloat16 (compute capability below
  8.0: V100, T4) is refused before anything is loaded (:func:`gpu_has_native_bf16`;
  ``torch.cuda.is_bf16_supported()`` is not used: from torch 2.4 it counts emulation);
* distributed-ready: under ``torchrun`` / Azure ML's PyTorch distribution (``RANK``,
  ``WORLD_SIZE`` set) every process trains its shard (DDP; gloo on CPU, NCCL on GPU) and only
  rank 0 talks to MLflow and writes the model (:func:`is_main_process`);
* the trained model is cast to ``--serving-dtype`` (float16 by default: the V100/T4 GPUs of
  the usual serving SKUs have no bfloat16; float32 for CPU serving such as Standard_E4s_v3,
  where float16 matmuls are slow or unsupported; bfloat16 for A100/H100/A10) and written with ``mlflow.transformers.save_model``
  straight into ``--model-output``, so an Azure ML ``mlflow_model`` / ``uri_folder`` job output
  holds the MLflow model (``MLmodel`` at its root). Its pip requirements are written out
  explicitly (:func:`serving_pip_requirements`: the pins of ``conda.yml`` next to this file,
  read before training starts), not inferred: MLflow's inference adds ``torchvision`` for any
  torch model and imports it to read its version, which crashes at the very end of training
  in an environment without torchvision, and would pin the training machine's builds. With
  ``--log-model-to-run`` (default off: the stack registers the job's ``model_output``, and a
  second ~7.6 GB upload failing after hours of training would fail the job) the same directory
  is also uploaded to the run's artifacts under ``model_output``, for the sample's registration
  URI ``azureml://jobs/<job>/outputs/artifacts/paths/model_output``.

Targeted library API: trl 0.8.6, peft 0.12.0 (see ``conda.yml``): ``SFTTrainer(model, args=
transformers.TrainingArguments(...), tokenizer=..., dataset_text_field=..., max_seq_length=...,
packing=...)`` with transformers 4.41 (``eval_strategy``), mlflow 2.16.2.

Serving contract (what the logged MLflow model accepts)
-------------------------------------------------------
The model is saved with task ``text-generation`` (not ``llm/v1/chat``: Azure ML's no-code MLflow
scoring server hands ``input_data`` to the pyfunc as-is, and the ``llm/v1/chat`` signature
expects an OpenAI-style ``{"messages": ...}`` object, which is neither of the payload shapes our
clients speak; the ``{"input_data": {"input_string": [...], "parameters": {...}}}`` chat shape
is produced by the custom scoring script of Azure's model-catalog containers, not by the
generic MLflow server). So the endpoint accepts the **list-of-prompts** shape::

    {"input_data": ["Who founded Microsoft?"],
     "params": {"temperature": 0.7, "max_new_tokens": 256, "do_sample": true,
                "return_full_text": false, "top_p": 0.95}}

and answers a JSON list with one generated string per prompt, e.g. ``["Bill Gates and ..."]``.
Every ``params`` key is optional (defaults: :data:`DEFAULT_INFERENCE_PARAMS`). The model's
``predict`` is ``phi3_serving.Phi3ChatModel`` (``phi3_serving.py``, copied into the model): a
temperature of 0 means greedy decoding, a bad parameter value or a prompt whose tokens plus
``max_new_tokens`` exceed the context length (recorded as ``context_length``) is refused with
an ``MlflowException(INVALID_PARAMETER_VALUE)`` naming the parameter or the overflow, only the
answer is returned (never the template, ``return_full_text`` whatever), and the prompt is
tokenized with ``<s>`` exactly as in training. Each prompt is wrapped in the chat template before generation (MLflow
``prompt_template`` built from the tokenizer's own template with the same empty system turn used
in training)::

    <|system|>\\n<|end|>\\n<|user|>\\n{prompt}<|end|>\\n<|assistant|>\\n

so clients send the bare question, and only the answer comes back. A conversation goes in the same shape: the client writes the earlier turns into the
prompt so that, once the template is applied, the model reads the whole conversation in Phi-3's
chat format (``Q1<|end|>\\n<|assistant|>\\nA1<|end|>\\n<|user|>\\nQ2`` becomes
``...<|user|>\\nQ1<|end|>\\n<|assistant|>\\nA1<|end|>\\n<|user|>\\nQ2<|end|>\\n<|assistant|>\\n``);
the Prompt flow tool and ``npm run chat`` do this (:data:`CONVERSATION_TURN_SEPARATOR` is
recorded in the model's metadata). When the model refuses a conversation as over its context,
they drop the oldest turns and ask again.

The ``{"input_data": {"input_string": [messages], "parameters": {...}}}`` shape of Azure's
catalog chat models is *not* accepted: Azure's no-code scoring script unwraps it and hands the
message dicts to the model, which MLflow would turn into a table whose ``role`` column it
answered; the model refuses them instead.

Command line::

    python fine_tune.py --train-file PATH --eval-file PATH --model-output DIR
        [--base-model ID] [--epochs 3] [--learning-rate 5e-6] [--per-device-batch-size 4]
        [--max-seq-length 2048] [--warmup-ratio 0.2] [--lr-scheduler cosine] [--seed 0]
        [--serving-dtype float16|bfloat16|float32] [--logging-steps 20]
        [--precision bf16-mixed|bf16] [--method full|lora] [--lora-rank 16]
        [--log-model-to-run | --no-log-model-to-run]

``--train-file`` / ``--eval-file`` take a JSONL file or a folder holding exactly one ``.jsonl``
(an Azure ML ``uri_folder`` input such as the outputs of ``prepare_data.py``).

Heavy libraries (torch, transformers, trl, datasets, mlflow) are imported inside the functions
that use them, so the pure helpers import and test with the standard library alone.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import sys
import tempfile
from typing import Any, Dict, List, Mapping, Optional, Sequence

DEFAULT_BASE_MODEL = "microsoft/Phi-3-mini-4k-instruct"

#: trl release this script is written against (keep in sync with conda.yml).
TARGET_TRL_VERSION = "0.8.6"

#: Roles accepted in a chat message.
ALLOWED_ROLES = ("system", "user", "assistant")

#: Learning-rate schedules offered on the command line (transformers SchedulerType values).
LR_SCHEDULERS = (
    "cosine",
    "linear",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)

#: GPU training precisions (``--precision``): pure bfloat16 weights, or float32 master weights
#: with bfloat16 autocast (mixed precision).
PRECISIONS = ("bf16-mixed", "bf16")

#: Training methods (``--method``): all weights, or LoRA adapters (PEFT) merged before saving.
METHODS = ("full", "lora")

#: Phi-3's linear layers the LoRA adapters attach to (transformers' Phi3 module names).
LORA_TARGET_MODULES = ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")

#: Canonical serving dtype names and the spellings accepted for them.
_DTYPE_ALIASES = {
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "torch.float16": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "torch.bfloat16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "torch.float32": "float32",
}
SERVING_DTYPES = ("float16", "bfloat16", "float32")

#: Generation parameters a caller may send in ``params`` (with their defaults). They form the
#: params schema of the model signature; MLflow ignores keys outside the schema.
DEFAULT_INFERENCE_PARAMS: Dict[str, Any] = {
    "max_new_tokens": 256,
    "temperature": 0.7,
    "top_p": 0.95,
    "do_sample": True,
    "return_full_text": False,
}

#: Payload shape accepted by the saved model (recorded in its metadata).
SERVING_PAYLOAD_SHAPE = "prompt-list"

#: Packages the saved model needs at serving time, pinned from ``conda.yml`` (see
#: :func:`serving_pip_requirements`). Without azureml-ai-monitoring the no-code MLflow
#: deployment answers 502; mlflow is pinned because later versions fail to log to Azure ML.
#: No torchvision: nothing imports it.
SERVING_PACKAGES = ("mlflow", "torch", "transformers", "accelerate", "azureml-ai-monitoring")

#: What a client puts between turns when it writes a conversation into one prompt (see
#: "Serving contract"): it closes a turn and opens the next role's turn.
CONVERSATION_TURN_SEPARATOR = "<|end|>\n<|{role}|>\n"

#: The conda environment file that travels with this script in the code asset.
CONDA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conda.yml")

#: Run artifact path of the model copy (the sample registers ``.../paths/model_output``).
RUN_ARTIFACT_PATH = "model_output"

_PROMPT_MARKER = "<<<__MLFLOW_PROMPT_PLACEHOLDER__>>>"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def serving_dtype_name(value: Any) -> str:
    """Canonical name (``"float16"``, ``"bfloat16"`` or ``"float32"``) of a serving dtype spelling.

    Accepts ``float16``/``fp16``/``half``/``bfloat16``/``bf16``/``float32``/``fp32``/``float``
    (any case, optional ``torch.`` prefix) or a ``torch.dtype``. Pick float32 for CPU instance
    types (float16 matmuls are slow or unsupported on CPU), float16 for V100/T4 GPUs (no
    bfloat16), bfloat16 for A100/H100/A10. Raises ``ValueError`` for anything else.
    """
    text = str(value).strip().lower()
    try:
        return _DTYPE_ALIASES[text]
    except KeyError:
        raise ValueError(
            f"unsupported serving dtype {value!r}: use one of {', '.join(SERVING_DTYPES)} "
            "(float32 for CPU instance types, float16 for V100/T4 GPUs, bfloat16 for A100/H100/A10)"
        ) from None


def _dtype_arg(text: str) -> str:
    try:
        return serving_dtype_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    # Local module (next to this file), imported here so the module-level imports stay
    # standard-library only.
    from cli_types import non_negative_int, positive_float, positive_int, ratio

    parser = argparse.ArgumentParser(
        description="SFT of a Phi-3 chat model with trl; saves an MLflow model to --model-output."
    )
    parser.add_argument("--train-file", required=True,
                        help="training JSONL file, or a folder holding exactly one .jsonl")
    parser.add_argument("--eval-file", required=True,
                        help="evaluation JSONL file, or a folder holding exactly one .jsonl")
    parser.add_argument("--model-output", "--model_output_dir", dest="model_output", required=True,
                        help="empty directory that receives the MLflow model (job output)")
    parser.add_argument("--base-model", default=DEFAULT_BASE_MODEL,
                        help=f"Hugging Face model id or local path (default {DEFAULT_BASE_MODEL})")
    parser.add_argument("--epochs", type=positive_int, default=3)
    parser.add_argument("--learning-rate", type=positive_float, default=5e-6)
    parser.add_argument("--per-device-batch-size", type=positive_int, default=4)
    parser.add_argument("--max-seq-length", type=positive_int, default=2048)
    parser.add_argument("--warmup-ratio", type=ratio, default=0.2)
    parser.add_argument("--lr-scheduler", choices=LR_SCHEDULERS, default="cosine")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--serving-dtype", type=_dtype_arg, default="float16",
                        help="dtype of the saved weights: float16 (default; V100/T4 have no "
                             "bf16), bfloat16 (A100/H100/A10) or float32 (CPU instance types)")
    parser.add_argument("--logging-steps", type=positive_int, default=20,
                        help="log loss and learning rate every N optimizer steps (default 20)")
    parser.add_argument("--precision", choices=PRECISIONS, default="bf16-mixed",
                        help="GPU training precision: bf16-mixed (default; float32 master weights, "
                             "bfloat16 autocast) or bf16 (weights kept in bfloat16: half the memory, "
                             "but most small updates round away). Ignored on CPU (float32)")
    parser.add_argument("--method", choices=METHODS, default="full",
                        help="full fine-tune (default) or lora (PEFT adapters on a frozen base, "
                             "merged into the weights before the MLflow save)")
    parser.add_argument("--lora-rank", type=positive_int, default=16,
                        help="LoRA rank r (alpha = 2r, dropout 0.05; --method lora only)")
    parser.add_argument("--log-model-to-run", action=argparse.BooleanOptionalAction, default=False,
                        help=f"also upload the saved model to the run's artifacts under "
                             f"'{RUN_ARTIFACT_PATH}' (default: no; the job's model_output is what "
                             "the stack registers, a second upload is ~7.6 GB)")
    return parser


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parses the command line (``argv`` without the program name). Exits with status 2 on
    invalid arguments, like any argparse program."""
    return build_parser().parse_args(argv)


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def resolve_jsonl(path: str) -> str:
    """Returns the JSONL file designated by ``path``.

    ``path`` is either a file (returned as is) or a folder (an Azure ML ``uri_folder`` input)
    holding exactly one ``*.jsonl`` file at its top level; hidden files are ignored.
    Raises ``FileNotFoundError`` when nothing exists at ``path`` and ``ValueError`` when a
    folder holds no or several JSONL files.
    """
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no file or folder at {path!r}")
    with os.scandir(path) as entries:
        candidates = sorted(
            entry.path
            for entry in entries
            if entry.is_file() and not entry.name.startswith(".") and entry.name.lower().endswith(".jsonl")
        )
    if len(candidates) != 1:
        found = ", ".join(os.path.basename(c) for c in candidates) or "none"
        raise ValueError(
            f"folder {path!r} must hold exactly one .jsonl file, found {len(candidates)} ({found})"
        )
    return candidates[0]


def normalize_messages(messages: Any) -> List[Dict[str, Any]]:
    """Validates a chat conversation and puts an empty system turn in front when it has none.

    Each message must be a dict with a ``role`` in :data:`ALLOWED_ROLES` and a string
    ``content``; a system message is only allowed first, and at least one non-system message
    is required. Nothing else is changed: contents are not stripped and extra keys are kept.
    Returns a new list (the input is not modified). Raises ``ValueError`` when invalid.
    """
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list")
    out: List[Dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"message {index} is not an object")
        role = message.get("role")
        if role not in ALLOWED_ROLES:
            raise ValueError(
                f"message {index} has role {role!r}; expected one of {', '.join(ALLOWED_ROLES)}"
            )
        if not isinstance(message.get("content"), str):
            raise ValueError(f"message {index} ({role}) has no string content")
        if role == "system" and index != 0:
            raise ValueError(f"message {index}: a system message is only allowed first")
        out.append(dict(message))
    if out[0]["role"] != "system":
        out.insert(0, {"role": "system", "content": ""})
    if len(out) < 2:
        raise ValueError("messages hold no user or assistant turn")
    return out


# --------------------------------------------------------------------------------------------
# Trainer configuration
# --------------------------------------------------------------------------------------------


def default_checkpoint_dir() -> str:
    """Scratch directory for the trainer (no checkpoints are saved; kept out of the outputs)."""
    return os.path.join(tempfile.gettempdir(), "phi3-sft-trainer")


def training_dtype_name(use_cpu: bool, precision: str = "bf16-mixed", method: str = "full") -> str:
    """dtype the base model is loaded in for training: ``"float32"`` on CPU (bfloat16 is
    emulated and slow on the CPU VMs); on a GPU ``"float32"`` for ``bf16-mixed`` full
    fine-tuning (the optimizer updates float32 master weights; bfloat16 only in autocast) and
    ``"bfloat16"`` for ``bf16`` and for LoRA (the frozen base stays bfloat16; PEFT keeps the
    adapters in float32, ``autocast_adapter_dtype``)."""
    if use_cpu:
        return "float32"
    if method == "lora":
        return "bfloat16"
    return "float32" if precision == "bf16-mixed" else "bfloat16"


def training_arguments_kwargs(args: argparse.Namespace, output_dir: Optional[str] = None,
                              use_cpu: bool = False) -> Dict[str, Any]:
    """Keyword arguments for ``transformers.TrainingArguments`` (the trainer config of trl 0.8).

    bf16 mixed precision on a GPU, plain float32 with ``use_cpu=True`` when ``use_cpu`` (no
    CUDA device), gradient checkpointing (non-reentrant), evaluation and logging-only
    reporting, no intermediate checkpoints (a full Phi-3 checkpoint with optimizer states is
    ~45 GB; only the final model is kept, in ``--model-output``).
    """
    kwargs: Dict[str, Any] = {
        "output_dir": output_dir or default_checkpoint_dir(),
        "overwrite_output_dir": True,
        "num_train_epochs": args.epochs,
        "learning_rate": args.learning_rate,
        "per_device_train_batch_size": args.per_device_batch_size,
        "per_device_eval_batch_size": args.per_device_batch_size,
        "gradient_accumulation_steps": 1,
        "lr_scheduler_type": args.lr_scheduler,
        "warmup_ratio": args.warmup_ratio,
        "seed": args.seed,
        "bf16": True,
        "gradient_checkpointing": True,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "do_eval": True,
        "eval_strategy": "epoch",
        "logging_strategy": "steps",
        "logging_steps": getattr(args, "logging_steps", 20),
        "save_strategy": "no",
        "report_to": "none",
        # Progress goes out as one line per log record (make_mlflow_callback), which reads well
        # in Azure ML's std_log and in a terminal; tqdm's carriage returns do neither.
        "disable_tqdm": True,
        "remove_unused_columns": True,
    }
    if use_cpu:
        kwargs["use_cpu"] = True
        kwargs["bf16"] = False
    return kwargs


def gpu_has_native_bf16(capability: Sequence[int]) -> bool:
    """True when a CUDA device of compute capability ``(major, minor)`` computes in bfloat16
    natively: 8.0 and later (A100, A10, H100). V100 (7.0) and T4 (7.5) only emulate it, slowly,
    although ``torch.cuda.is_bf16_supported()`` says True there from torch 2.4."""
    return int(capability[0]) >= 8


def distributed_rank(environ: Optional[Mapping[str, str]] = None) -> int:
    """Global rank of this process as ``torchrun`` and Azure ML's PyTorch distribution set it in
    ``RANK`` (0 when the job is not distributed). Raises ``ValueError`` for a malformed value."""
    env = os.environ if environ is None else environ
    text = env.get("RANK", "0").strip() or "0"
    if not text.isdigit():
        raise ValueError(f"RANK must be a non-negative integer, got {text!r}")
    return int(text)


def is_main_process(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True on rank 0, the only process that logs to MLflow and writes the model."""
    return distributed_rank(environ) == 0


def context_length(config: Any) -> int:
    """The model's context length in tokens: ``max_position_embeddings`` of its config (4,096
    for Phi-3-mini-4k, which has no rope scaling; 131,072 for the longrope 128k models)."""
    value = config.get("max_position_embeddings") if isinstance(config, Mapping) else \
        getattr(config, "max_position_embeddings", None)
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"the model config has no usable max_position_embeddings ({value!r})")
    return value


def lora_config_kwargs(rank: int) -> Dict[str, Any]:
    """``peft.LoraConfig`` keyword arguments for ``--method lora``: rank ``r``, alpha 2r, dropout
    0.05, on every linear layer of Phi-3's attention and MLP (:data:`LORA_TARGET_MODULES`)."""
    return {"r": rank, "lora_alpha": 2 * rank, "lora_dropout": 0.05, "bias": "none",
            "task_type": "CAUSAL_LM", "target_modules": list(LORA_TARGET_MODULES)}


def native_config_dict(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The base model's ``config.json`` made loadable by transformers' own Phi-3 code (4.41.2).

    ``rope_scaling.type`` ``longrope`` (Phi-3.5-mini-instruct, Phi-3-mini-128k-instruct since
    July 2024) becomes ``su``, the name transformers 4.41 gives the same LongRoPE scaling (newer
    transformers map ``su`` back to ``longrope``, so the saved model loads with either), and
    ``auto_map`` (pointers to the hub's own modeling code) is dropped: no remote code runs.
    Returns a new dict; the input is not modified.
    """
    out = dict(config)
    out.pop("auto_map", None)
    rope = out.get("rope_scaling")
    if isinstance(rope, dict) and rope.get("type") == "longrope":
        out["rope_scaling"] = {**rope, "type": "su"}
    return out


def serving_pip_requirements(conda_file: str = CONDA_FILE) -> List[str]:
    """Pip requirements recorded in the saved MLflow model: the ``conda.yml`` pins of
    :data:`SERVING_PACKAGES` plus its conda-level numpy bound, so the serving image installs
    exactly what the job trained with (and no torchvision). Called before training, so a
    missing or unpinned package fails the job in its first second, not after hours.
    Raises ``ValueError`` naming the file and the package.
    """
    import yaml  # PyYAML comes with mlflow

    with open(conda_file, encoding="utf-8") as handle:
        env = yaml.safe_load(handle)
    conda_deps = env.get("dependencies") or []
    pip_deps: List[str] = []
    for dep in conda_deps:
        if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            pip_deps.extend(str(d) for d in dep["pip"])
    pins = {}
    for dep in pip_deps:
        name, sep, version = dep.partition("==")
        if sep:
            pins[name.strip().lower()] = f"{name.strip()}=={version.strip()}"
    missing = [p for p in SERVING_PACKAGES if p not in pins]
    if missing:
        raise ValueError(f"{conda_file}: no '==' pin for {', '.join(missing)} in the pip section")
    numpy = [str(d) for d in conda_deps if isinstance(d, str) and re.match(r"^numpy\b", d)]
    return [pins[p] for p in SERVING_PACKAGES] + [d.replace(" ", "") for d in numpy]


def conversation_prompt(messages: Sequence[Mapping[str, str]]) -> str:
    """The single prompt that carries a conversation through the model's ``prompt_template``.

    ``messages``: user/assistant turns (a leading system turn is not supported: the template
    opens with an empty one, as in training), ending with a user turn. Raises ``ValueError``
    otherwise. Clients (promptflow/call_endpoint.py, ``npm run chat``) build the same string.
    """
    turns = list(messages)
    if not turns or turns[0].get("role") != "user" or turns[-1].get("role") != "user":
        raise ValueError("a conversation prompt must start and end with a user turn")
    parts: List[str] = []
    for index, message in enumerate(turns):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise ValueError(f"message {index}: role {role!r} cannot be sent in a conversation prompt")
        if index > 0:
            parts.append(CONVERSATION_TURN_SEPARATOR.format(role=role))
        parts.append(str(message.get("content", "")))
    return "".join(parts)


def sft_trainer_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    """SFT-specific keyword arguments, passed to ``SFTTrainer`` itself in trl 0.8."""
    return {
        "dataset_text_field": "text",
        "max_seq_length": args.max_seq_length,
        "packing": True,
    }


def trl_api_supported(version: str) -> bool:
    """True when ``trl`` at ``version`` still takes ``tokenizer``/``max_seq_length``/``packing``/
    ``dataset_text_field`` as SFTTrainer arguments (0.8.x to 0.11.x; 0.12 moved them)."""
    match = re.match(r"^\s*(\d+)\.(\d+)", version)
    if not match:
        return False
    major, minor = int(match.group(1)), int(match.group(2))
    return major == 0 and 8 <= minor <= 11


def numeric_metrics(logs: Optional[Mapping[str, Any]], prefix: str = "") -> Dict[str, float]:
    """The finite numbers of a trainer log record, as MLflow metrics.

    Booleans, strings and NaN/inf are dropped; keys are restricted to the characters MLflow
    accepts (others become ``_``) and prefixed with ``prefix``.
    """
    out: Dict[str, float] = {}
    for key, value in (logs or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        number = float(value)
        if not math.isfinite(number):
            continue
        name = re.sub(r"[^0-9A-Za-z_\-. /]", "_", f"{prefix}{key}")
        out[name] = number
    return out


def run_params(args: argparse.Namespace) -> Dict[str, str]:
    """Hyperparameters worth recording as MLflow params (short strings; no paths)."""
    keys = (
        "base_model", "epochs", "learning_rate", "per_device_batch_size", "max_seq_length",
        "warmup_ratio", "lr_scheduler", "seed", "serving_dtype", "precision", "method", "lora_rank",
    )
    return {key: str(getattr(args, key))[:250] for key in keys if hasattr(args, key)}


# --------------------------------------------------------------------------------------------
# Serving configuration
# --------------------------------------------------------------------------------------------


def prompt_template_from_rendered(rendered: str, marker: str = _PROMPT_MARKER,
                                  bos_token: Optional[str] = None) -> str:
    """Turns a chat-template rendering whose user content is ``marker`` into an MLflow
    ``prompt_template`` (a ``str.format`` string with a single ``{prompt}`` placeholder).

    Literal braces are escaped, and a leading ``bos_token`` is dropped (the pipeline's
    tokenizer adds it again). Raises ``ValueError`` unless ``marker`` occurs exactly once.
    """
    count = rendered.count(marker)
    if count != 1:
        raise ValueError(f"the rendered chat template holds the prompt marker {count} times, expected 1")
    if bos_token and rendered.startswith(bos_token):
        rendered = rendered[len(bos_token):]
    escaped = rendered.replace("{", "{{").replace("}", "}}")
    return escaped.replace(marker, "{prompt}")


def build_prompt_template(tokenizer: Any) -> str:
    """MLflow prompt template equivalent to the chat template applied in training."""
    conversation = normalize_messages([{"role": "user", "content": _PROMPT_MARKER}])
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return prompt_template_from_rendered(rendered, _PROMPT_MARKER, getattr(tokenizer, "bos_token", None))


def serving_input_example() -> tuple:
    """``(inputs, params)`` input example: one prompt and the default generation params."""
    return (["Who founded Microsoft?"], dict(DEFAULT_INFERENCE_PARAMS))


def model_metadata(args: argparse.Namespace, use_cpu: bool = False,
                   context: Optional[int] = None) -> Dict[str, Any]:
    """Free-form metadata stored in the MLmodel file (``use_cpu``: trained on CPU in fp32;
    ``context``: the model's context length in tokens, which the served model enforces)."""
    precision = "fp32, cpu" if use_cpu else getattr(args, "precision", "bf16-mixed")
    method = getattr(args, "method", "full")
    if method == "lora":
        precision += f", LoRA r={getattr(args, 'lora_rank', 16)} merged"
    out = {
        "base_model": args.base_model,
        "serving_dtype": args.serving_dtype,
        "payload_shape": SERVING_PAYLOAD_SHAPE,
        "payload_example": {"input_data": ["Who founded Microsoft?"],
                            "params": dict(DEFAULT_INFERENCE_PARAMS)},
        "trained_with": f"trl=={TARGET_TRL_VERSION} SFTTrainer (packing, {precision})",
        "conversation_turn_separator": CONVERSATION_TURN_SEPARATOR,
    }
    if context is not None:
        out["context_length"] = int(context)
    return out


def ensure_empty_dir(path: str) -> None:
    """Creates ``path`` if needed; raises ``ValueError`` when it exists and is not empty
    (``mlflow.transformers.save_model`` refuses non-empty targets, so fail before training)."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ValueError(f"--model-output {path!r} exists and is not a directory")
        with os.scandir(path) as entries:
            non_empty = any(True for _ in entries)
        if non_empty:
            raise ValueError(f"--model-output {path!r} is not empty")
    else:
        os.makedirs(path)


# --------------------------------------------------------------------------------------------
# Training (needs torch, transformers, trl, datasets, mlflow)
# --------------------------------------------------------------------------------------------


def _torch_dtype(name: str) -> Any:
    import torch

    dtypes = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    return dtypes[serving_dtype_name(name)]


def load_model_and_tokenizer(args: argparse.Namespace, use_cpu: bool = False) -> tuple:
    """Loads the base model (transformers' own Phi-3 class, config made native by
    :func:`native_config_dict`) and its tokenizer, padded with ``<unk>`` on the right."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, PretrainedConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    config_dict, _ = PretrainedConfig.get_config_dict(args.base_model)
    config_dict = native_config_dict(config_dict)
    config = CONFIG_MAPPING[config_dict["model_type"]].from_dict(config_dict)
    config.use_cache = False
    model = AutoModelForCausalLM.from_pretrained(
        args.base_model,
        config=config,
        torch_dtype=_torch_dtype(training_dtype_name(use_cpu, getattr(args, "precision", "bf16-mixed"),
                                                     getattr(args, "method", "full"))),
        attn_implementation="eager",
        trust_remote_code=False,
    )
    tokenizer = AutoTokenizer.from_pretrained(args.base_model, config=config, trust_remote_code=False)
    # The real context length (4,096 for Phi-3-mini-4k), not the packing length: the served model
    # refuses prompts over it (phi3_serving.py) and the tokenizer warns against it.
    tokenizer.model_max_length = context_length(config)
    # Padding with the end-of-text token would teach the model to ignore it; <unk> is inert.
    if tokenizer.unk_token is not None and tokenizer.unk_token != tokenizer.eos_token:
        tokenizer.pad_token = tokenizer.unk_token
    elif tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return model, tokenizer


def load_text_datasets(train_path: str, eval_path: str, tokenizer: Any) -> tuple:
    """Loads both JSONL files and renders each conversation to a ``text`` column."""
    import datasets
    from datasets import load_dataset

    datasets.disable_progress_bars()

    def render(example: Dict[str, Any]) -> Dict[str, str]:
        messages = normalize_messages(example["messages"])
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        return {"text": text}

    workers = max(1, min(8, os.cpu_count() or 1))
    out = []
    for name, path in (("train", train_path), ("eval", eval_path)):
        dataset = load_dataset("json", data_files=path, split="train")
        if "messages" not in dataset.column_names:
            raise ValueError(f"{path}: rows have no 'messages' field (columns: {dataset.column_names})")
        if len(dataset) == 0:
            raise ValueError(f"{path}: no rows")
        dataset = dataset.map(
            render,
            remove_columns=dataset.column_names,
            num_proc=workers if len(dataset) >= 64 * workers else None,
            desc=f"Applying the chat template to the {name} split",
        )
        out.append(dataset)
    return tuple(out)


def progress_line(step: int, max_steps: int, logs: Optional[Mapping[str, Any]]) -> Optional[str]:
    """One progress line for a trainer log record (``step 3/40  loss 1.2345  lr 4.1e-06``), or
    None when the record has no loss (runtime summaries)."""
    metrics = numeric_metrics(logs)
    parts = [f"{key} {metrics[key]:.4f}" for key in ("loss", "eval_loss") if key in metrics]
    if not parts:
        return None
    if "learning_rate" in metrics:
        parts.append(f"lr {metrics['learning_rate']:.2e}")
    return f"step {step}/{max_steps}  " + "  ".join(parts)


def make_mlflow_callback() -> Any:
    """A transformers callback that, on rank 0, sends every numeric log record to the active
    MLflow run and prints a progress line (steps, loss)."""
    import mlflow
    from transformers import TrainerCallback

    class MlflowMetricsCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D401 - HF hook
            if not state.is_world_process_zero:
                return
            metrics = numeric_metrics(logs)
            if metrics:
                mlflow.log_metrics(metrics, step=state.global_step)
            line = progress_line(state.global_step, state.max_steps, logs)
            if line:
                print(line, flush=True)

    return MlflowMetricsCallback()


def save_mlflow_model(model: Any, tokenizer: Any, args: argparse.Namespace,
                      pip_requirements: Sequence[str], use_cpu: bool = False) -> None:
    """Casts ``model`` to the serving dtype and saves it as an MLflow model in ``--model-output``.

    A LoRA model (PEFT) has its adapters merged into the weights first, so the saved model is a
    plain transformers Phi-3 and serves exactly like a fully fine-tuned one. The model's
    ``python_function`` flavor then points at ``phi3_serving.py`` (copied into the model), whose
    ``predict`` validates params, decodes greedily at temperature 0, returns the answer only,
    tokenizes like training and refuses prompts over the context length."""
    import mlflow
    from mlflow.models import infer_signature

    import phi3_serving

    if hasattr(model, "merge_and_unload"):  # peft.PeftModel (--method lora)
        model = model.merge_and_unload()
    context = context_length(model.config)
    tokenizer.model_max_length = context
    dtype = _torch_dtype(args.serving_dtype)
    model = model.to(dtype=dtype)
    model.config.use_cache = True
    tokenizer.padding_side = "left"  # batched generation pads on the left

    inputs, params = serving_input_example()
    signature = infer_signature(model_input=inputs, model_output=["Bill Gates and Paul Allen."],
                                params=params)
    mlflow.transformers.save_model(
        transformers_model={"model": model, "tokenizer": tokenizer},
        path=args.model_output,
        task="text-generation",
        torch_dtype=dtype,
        signature=signature,
        input_example=(inputs, params),
        prompt_template=build_prompt_template(tokenizer),
        pip_requirements=list(pip_requirements),
        metadata=model_metadata(args, use_cpu, context),
    )
    phi3_serving.point_pyfunc_here(args.model_output)


def build_trainer(args: argparse.Namespace, train_path: str, eval_path: str, use_cpu: bool,
                  callbacks: Sequence[Any] = ()) -> tuple:
    """Seeds every RNG with ``--seed``, loads the model, tokenizer and data and builds trl's
    ``SFTTrainer`` (which packs the training set). Returns ``(trainer, tokenizer)``; the
    trainer carries ``n_train_rows`` / ``n_eval_rows``.

    ``transformers.set_seed`` comes first on purpose: trl 0.8 packs the data
    (``ConstantLengthDataset(shuffle=True)`` shuffles with the global ``random``) inside
    ``SFTTrainer.__init__``, before ``Trainer`` seeds anything; each node builds its own copy,
    and unseeded each node would get its own order, so ``DistributedSampler``'s shards would
    overlap (some sequences trained twice per epoch, others never).
    """
    import transformers
    from transformers import TrainingArguments
    from trl import SFTTrainer

    transformers.set_seed(args.seed)
    peft_config = None
    if getattr(args, "method", "full") == "lora":
        import peft

        peft_config = peft.LoraConfig(**lora_config_kwargs(args.lora_rank))
    model, tokenizer = load_model_and_tokenizer(args, use_cpu)
    train_dataset, eval_dataset = load_text_datasets(train_path, eval_path, tokenizer)
    trainer = SFTTrainer(
        model=model,
        args=TrainingArguments(**training_arguments_kwargs(args, use_cpu=use_cpu)),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        tokenizer=tokenizer,
        callbacks=list(callbacks),
        peft_config=peft_config,
        **sft_trainer_kwargs(args),
    )
    trainer.n_train_rows, trainer.n_eval_rows = len(train_dataset), len(eval_dataset)
    return trainer, tokenizer


def train(args: argparse.Namespace) -> None:
    """Checks everything that can fail cheaply (trl API, GPU bf16, files, output folder, serving
    requirements), then trains and, on rank 0, saves the MLflow model."""
    import mlflow
    import torch
    import trl

    if not trl_api_supported(trl.__version__):
        raise RuntimeError(
            f"trl {trl.__version__} is installed but this script targets the trl "
            f"{TARGET_TRL_VERSION} SFTTrainer API (see conda.yml)"
        )
    use_cpu = not torch.cuda.is_available()
    if not use_cpu and not gpu_has_native_bf16(torch.cuda.get_device_capability(0)):
        name = torch.cuda.get_device_name(0)
        raise RuntimeError(
            f"{name} has no native bfloat16 (compute capability below 8.0: V100/T4); train on an "
            "A100/H100/A10 size such as Standard_NC24ads_A100_v4 (serving in float16 on V100/T4 is fine)"
        )

    train_path = resolve_jsonl(args.train_file)
    eval_path = resolve_jsonl(args.eval_file)
    main_process = is_main_process()
    if main_process:
        ensure_empty_dir(args.model_output)
    requirements = serving_pip_requirements()
    world_size = int(os.environ.get("WORLD_SIZE", "1") or "1")
    if main_process and use_cpu:
        print("no CUDA device: training on CPU in float32 (use_cpu=True, bf16=False)", flush=True)
    if main_process and world_size > 1:
        print(f"distributed: {world_size} processes ({'gloo' if use_cpu else 'nccl'}); rank 0 saves the model", flush=True)

    if getattr(args, "method", "full") == "lora":
        import peft  # noqa: F401 - pinned in conda.yml; a missing package fails here, not after loading

    run = mlflow.start_run() if main_process else contextlib.nullcontext()
    with run:
        if main_process:
            mlflow.log_params(run_params(args))
        trainer, tokenizer = build_trainer(args, train_path, eval_path, use_cpu, [make_mlflow_callback()])
        if main_process:
            mlflow.log_metrics({"train_rows": float(trainer.n_train_rows), "eval_rows": float(trainer.n_eval_rows)})
        result = trainer.train()
        if not main_process:
            return
        trainer.log_metrics("train", result.metrics)
        mlflow.log_metrics(numeric_metrics(result.metrics, prefix="final_"))

        trained = trainer.accelerator.unwrap_model(trainer.model)
        save_mlflow_model(trained, tokenizer, args, requirements, use_cpu)
        if args.log_model_to_run:
            mlflow.log_artifacts(args.model_output, artifact_path=RUN_ARTIFACT_PATH)


#: Warnings a local run (``npm run train:local`` sets ``PHI3_LOCAL_RUN=1``) always prints and that
#: say nothing there: (logger, start of the message, why it is expected).
EXPECTED_LOCAL_WARNINGS = (
    ("mlflow.utils.requirements_utils", "Detected one or more mismatches",
     "the model pins the serving image's torch, the local environment has the CPU build"),
    ("mlflow.transformers", "The model card could not be retrieved", "the base model is a local folder, not a hub id"),
    ("mlflow.transformers", "Unable to find license information", "the base model is a local folder, not a hub id"),
    ("transformers.models.phi3.modeling_phi3", "You are not running the flash-attention implementation",
     "flash-attention needs a CUDA GPU"),
)


class ExpectedWarnings(logging.Filter):
    """Drops the records of :data:`EXPECTED_LOCAL_WARNINGS` (by logger and message start); keeps every other."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(record.name == name and message.startswith(start) for name, start, _ in EXPECTED_LOCAL_WARNINGS)


def quiet_expected_local_warnings(stream=None) -> None:
    """In a local run, silence the expected warnings, saying once which and why (Azure runs keep them)."""
    flt = ExpectedWarnings()
    for name in {name for name, _, _ in EXPECTED_LOCAL_WARNINGS}:
        logging.getLogger(name).addFilter(flt)
    reasons = "; ".join(sorted({why for _, _, why in EXPECTED_LOCAL_WARNINGS}))
    print(f"fine_tune.py: local run: expected warnings are silenced ({reasons})", file=stream or sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    # Belt and braces: keep transformers' own MLflow integration off (see module docstring).
    os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")
    if os.environ.get("PHI3_LOCAL_RUN") == "1":
        quiet_expected_local_warnings()
    args = parse_args(argv)
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
