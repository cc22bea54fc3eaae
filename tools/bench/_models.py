"""Shared by the benchmarks: the mid-size random Llama (~100 M parameters) that stands between the tiny twin and a
7 B model, bare or inside a CoDi-2 model."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from codi2_sdk.model import CoDi2Config, CoDi2Model
from codi2_sdk.model.prompt import add_special_tokens
from codi2_sdk.testing.twins import TWIN_WORDS, tiny_llama_tokenizer

MID_LLAMA = {"hidden_size": 768, "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12,
             "num_key_value_heads": 12, "max_position_embeddings": 512}  # fmt: skip


def mid_llama(vocab_size: int = 32000, **config: object) -> LlamaForCausalLM:
    """A random Llama of :data:`MID_LLAMA`'s shape with an untied head (as Llama-2's), seeded, in eval mode."""
    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=False, **MID_LLAMA, **config)).eval()


def mid_model() -> CoDi2Model:
    """:func:`mid_llama` with the twin's tokenizer inside a CoDi-2 model (no encoders or decoders)."""
    tokenizer = tiny_llama_tokenizer(TWIN_WORDS)
    add_special_tokens(tokenizer)
    llm = mid_llama(len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    return CoDi2Model(CoDi2Config(name="llama-100m", llm=MID_LLAMA), llm, tokenizer, {}, {})
