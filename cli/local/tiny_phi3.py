"""Builds a tiny Phi-3 chat model on disk, with random weights, for local smoke runs and tests.

Nothing is downloaded: the model is a ``transformers.Phi3ForCausalLM`` built from a small
``Phi3Config`` (a few hundred thousand parameters) and the tokenizer is a byte-level BPE trained
on the fly with the ``tokenizers`` library on the given chat JSONL (plus a small fixed text so
every byte is covered), wrapped as a ``PreTrainedTokenizerFast`` carrying Phi-3's special
tokens and chat format. The folder it writes loads with ``AutoModelForCausalLM`` /
``AutoTokenizer`` exactly like ``microsoft/Phi-3-mini-4k-instruct``, so ``fine_tune.py
--base-model <folder>`` runs the real training code path on a CPU in seconds.

Phi-3's chat format (the Hugging Face model card's, reproduced by :data:`PHI3_CHAT_TEMPLATE`)::

    <|system|>\\n{system}<|end|>\\n<|user|>\\n{question}<|end|>\\n<|assistant|>\\n{answer}<|end|>\\n

with ``<s>`` added in front by the tokenizer and ``<|endoftext|>`` closing a training text.
Generation stops at ``<|end|>`` or ``<|endoftext|>`` (both are end-of-sequence ids of the
generation config, as in the real model).

Command line::

    python tiny_phi3.py --output DIR [--corpus FILE.jsonl ...] [--longrope]

``--longrope`` writes the ``rope_scaling`` block that Phi-3.5-mini-instruct and
Phi-3-mini-128k-instruct ship (``type: longrope``), to test what transformers 4.41.2 does with it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Iterable, Iterator, List, Optional, Sequence

#: Phi-3's special tokens, in the order they get ids after the three Llama ones.
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"]

#: Phi-3-mini-4k-instruct's chat format as a Jinja template (system, user and assistant turns,
#: each closed by ``<|end|>``; a generation prompt opens the assistant turn; a training text
#: ends with the end-of-text token).
PHI3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] in ['system', 'user', 'assistant'] %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)

#: Text that makes sure common words and every printable ASCII character have tokens.
BASE_CORPUS = (
    "Who founded Microsoft? Bill Gates and Paul Allen founded Microsoft in 1975. "
    "What does Azure Machine Learning do? It trains, deploys and manages models. "
    "The quick brown fox jumps over the lazy dog. 0123456789 "
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _conversation_texts(paths: Sequence[str]) -> Iterator[str]:
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if not line:
                    continue
                for message in json.loads(line).get("messages", []):
                    if isinstance(message, dict) and isinstance(message.get("content"), str):
                        yield message["content"]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 512):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with Phi-3's special tokens and chat template.

    ``<s>`` is prepended to every encoded text (as Phi-3's Llama tokenizer does); ``<unk>`` is
    the padding token (fine_tune.py pads with it, never with the end-of-text token).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([BASE_CORPUS, *texts], trainer=trainer)
    bos_id = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="<|endoftext|>",
        unk_token="<unk>",
        pad_token="<unk>",
        additional_special_tokens=["<|assistant|>", "<|system|>", "<|end|>", "<|user|>"],
        chat_template=PHI3_CHAT_TEMPLATE,
        model_max_length=4096,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


def tiny_config(tokenizer, longrope: bool = False, max_position_embeddings: int = 4096):
    """A ``Phi3Config`` of about 0.2M parameters whose token ids match ``tokenizer``."""
    from transformers import Phi3Config

    hidden, heads = 32, 4
    rope_scaling = None
    original_max = max_position_embeddings
    if longrope:
        # Shape of Phi-3.5-mini-instruct's block: one factor per rotary frequency pair.
        pairs = hidden // heads // 2
        rope_scaling = {"type": "longrope", "short_factor": [1.0] * pairs, "long_factor": [1.5] * pairs}
        original_max, max_position_embeddings = max_position_embeddings, max_position_embeddings * 32
    kwargs = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_position_embeddings,
        original_max_position_embeddings=original_max,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    config = Phi3Config(**kwargs)
    if rope_scaling is not None:
        # transformers 4.41.2 refuses "longrope" in Phi3Config(...): set it after validation, as
        # the value lands in config.json, which is what the real checkpoints ship.
        config.rope_scaling = rope_scaling
    return config


def build_tiny_phi3(output: str, corpus: Sequence[str] = (), longrope: bool = False, seed: int = 0) -> str:
    """Writes a tiny random-weight Phi-3 (model, tokenizer, generation config) to ``output``.

    ``corpus``: chat JSONL files whose message contents train the tokenizer. Deterministic for a
    given corpus and ``seed``. Returns ``output``.
    """
    import torch
    from transformers import GenerationConfig, Phi3ForCausalLM

    tokenizer = train_tokenizer(_conversation_texts(corpus))
    config = tiny_config(tokenizer, longrope=longrope)
    torch.manual_seed(seed)
    if longrope:
        # Build with plain RoPE, then write the longrope block into config.json.
        model_config = tiny_config(tokenizer, longrope=False)
        model = Phi3ForCausalLM(model_config)
    else:
        model = Phi3ForCausalLM(config)
    end_ids = [tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|end|>")]
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=end_ids, pad_token_id=tokenizer.pad_token_id
    )
    os.makedirs(output, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    if longrope:
        path = os.path.join(output, "config.json")
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        data.update(
            rope_scaling=config.rope_scaling,
            max_position_embeddings=config.max_position_embeddings,
            original_max_position_embeddings=config.original_max_position_embeddings,
            # What the hub checkpoints carry; fine_tune.py must not need the remote code.
            auto_map={"AutoConfig": "configuration_phi3.Phi3Config", "AutoModelForCausalLM": "modeling_phi3.Phi3ForCausalLM"},
        )
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2)
    return output


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write a tiny random-weight Phi-3 for local smoke runs.")
    parser.add_argument("--output", required=True, help="folder to write the model and tokenizer to")
    parser.add_argument("--corpus", action="append", default=[], help="chat JSONL whose text trains the tokenizer")
    parser.add_argument("--longrope", action="store_true", help="write Phi-3.5's longrope rope_scaling block")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build_tiny_phi3(args.output, args.corpus, longrope=args.longrope, seed=args.seed)
    print(f"tiny Phi-3 written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
