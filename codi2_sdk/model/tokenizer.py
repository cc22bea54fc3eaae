"""The tokenizer's special tokens, and a word-level tokenizer for small models.

CoDi-2's prompt needs real special tokens, not strings re-tokenised word by word: the media tags
``<image>`` ``</image>`` ``<audio>`` ``</audio>``, a ``<|media|>`` placeholder for each feature slot, and
the role markers of the chat template (see :mod:`codi2_sdk.model.prompt`).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..content import MEDIA_MODALITIES

__all__ = [
    "LLAMA2_CHAT_TEMPLATE",
    "REQUIRED_TOKENS",
    "ROLE_TOKENS",
    "SPECIAL_TOKENS",
    "add_special_tokens",
    "build_word_tokenizer",
    "load_tokenizer",
]

MEDIA_TAGS = {m: (f"<{m}>", f"</{m}>") for m in MEDIA_MODALITIES}
"""Each medium's start and end tags, from the one list of media kinds."""
MEDIA_SLOT = "<|media|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END_OF_TURN = "<|end|>"
PAD, UNK, BOS = "<pad>", "<unk>", "<s>"

REQUIRED_TOKENS: list[str] = [MEDIA_SLOT, *ROLE_TOKENS.values(), END_OF_TURN]
"""The tokens every CoDi-2 tokenizer has; a model reads and writes the media whose tags its tokenizer has."""
SPECIAL_TOKENS: list[str] = [*(tag for pair in MEDIA_TAGS.values() for tag in pair), *REQUIRED_TOKENS]
"""Every special token: new tokenizers get all of them."""


LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>>\\n' + messages[0]['content'].strip() + '\\n<</SYS>>\\n\\n' %}"
    "{% set messages = messages[1:] %}"
    "{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('roles must alternate user/assistant/user/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'].strip() + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)
"""Llama-2-chat's prompt format (``<s>[INST] <<SYS>> ... <</SYS>> ... [/INST] answer </s>``), as the chat template
Meta's published tokenizer carries; for Llama-2 folders saved without one (see :func:`codi2_sdk.model.assemble`)."""


def build_word_tokenizer(words: Iterable[str], *, extends: Any = None) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` over ``words`` (punctuation split off), with the special tokens.

    Small models trained from scratch (codi2-mini) use it: one token per word of a closed grammar. ``extends``
    (a tokenizer this function built) keeps its tokens' ids and appends what is new, so a trained model's
    rows stay where they are when its vocabulary grows.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    if extends is not None:
        vocab = dict(sorted(extends.get_vocab().items(), key=lambda item: item[1]))
    for token in [PAD, UNK, BOS, *SPECIAL_TOKENS, *sorted(set(words))]:
        vocab.setdefault(token, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.normalizer = normalizers.Lowercase()
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    core.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces, tidies punctuation
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, unk_token=UNK, bos_token=BOS, eos_token=END_OF_TURN
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    return tokenizer


def add_special_tokens(tokenizer: Any) -> int:
    """Add the special tokens to an existing tokenizer (for example Llama-2's); returns how many were new."""
    added = tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return int(added)


def load_tokenizer(path: str | Path) -> Any:
    """Load a tokenizer from a local folder (never downloads) and check it has the special tokens."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    missing = [t for t in REQUIRED_TOKENS if tokenizer.convert_tokens_to_ids(t) in (None, tokenizer.unk_token_id)]
    if missing:
        raise ValueError(f"tokenizer at {path} lacks the special tokens {missing}")
    return tokenizer
