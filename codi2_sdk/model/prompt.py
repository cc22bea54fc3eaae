"""The tokenizer's special tokens, and a word-level tokenizer for small models.

CoDi-2's prompt needs real special tokens, not strings re-tokenised word by word: the media tags
``<image>`` ``</image>`` ``<audio>`` ``</audio>``, a ``<|media|>`` placeholder for each feature slot, and
the role markers of the chat template (see :mod:`codi2_sdk.model.prompt`).
"""

from __future__ import annotations

import difflib
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..content import MEDIA_MODALITIES, MediaPart, Part, Text
from ..messages import Example, Message
from .runtime.prefix_cache import Signature

__all__ = [
    "IGNORE_INDEX",
    "LLAMA2_CHAT_TEMPLATE",
    "MediaSlot",
    "Prompt",
    "PromptBuilder",
    "REQUIRED_TOKENS",
    "ROLE_TOKENS",
    "SPECIAL_TOKENS",
    "UnknownWordsError",
    "add_special_tokens",
    "build_word_tokenizer",
    "load_tokenizer",
    "prompt_signature",
]


def prompt_signature(prompt: Prompt) -> Signature:
    """The prompt's token ids, each media slot token replaced by ``(content hash, index in the slot)``."""
    items: list[Any] = list(prompt.ids)
    for slot in prompt.media:
        for j in range(slot.count):
            items[slot.position + j] = (slot.part.sha256, j)
    return tuple(items)


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


IGNORE_INDEX = -100


class UnknownWordsError(ValueError):
    """Text with words outside a closed vocabulary; says which, and the nearest known words to each.

    The message names the first :attr:`NAMED` words, each cut to :attr:`WORD_CHARS` characters, so that hostile
    text (a megabyte of one "word", thousands of made-up ones) gets an error of a few lines; :attr:`words` holds
    them all.
    """

    NAMED = 8
    WORD_CHARS = 40

    def __init__(self, words: list[str], vocabulary: list[str]) -> None:
        self.words = words
        self.suggestions = {
            w: difflib.get_close_matches(w.lower(), vocabulary, n=3, cutoff=0.5) for w in words[: self.NAMED]
        }
        said = "; ".join(
            f"{self._quoted(w)} (nearest: {', '.join(near)})" if near else self._quoted(w)
            for w, near in self.suggestions.items()
        )
        if len(words) > self.NAMED:
            said += f"; and {len(words) - self.NAMED:,} more"
        super().__init__(f"the model does not know the words {said}")

    @classmethod
    def _quoted(cls, word: str) -> str:
        if len(word) <= cls.WORD_CHARS:
            return repr(word)
        return f"{word[: cls.WORD_CHARS]!r}... ({len(word):,} characters)"


@dataclass
class MediaSlot:
    """Where one medium's features go in a prompt."""

    position: int
    """Index of the first ``<|media|>`` token."""
    count: int
    """How many feature tokens (all of the encoder's, or 1 for media the model writes)."""
    part: MediaPart
    target: bool = False
    """True for media in the answer being trained: the hidden state at ``position - 1`` must predict it."""

    @property
    def modality(self) -> str:
        return self.part.type


@dataclass
class Prompt:
    """One sequence: token ids, training labels and media slots."""

    ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    media: list[MediaSlot] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)


class PromptBuilder:
    """Renders examples and messages to :class:`Prompt` objects with a given tokenizer.

    Args:
        tokenizer: a transformers tokenizer holding the special tokens.
        tokens_per_item: encoder token count for each modality.
    """

    def __init__(self, tokenizer: Any, tokens_per_item: dict[str, int], *, closed_vocabulary: bool = False) -> None:
        self.tokenizer = tokenizer
        self.tokens_per_item = tokens_per_item
        self.closed_vocabulary = closed_vocabulary
        ids = tokenizer.convert_tokens_to_ids
        self.chat_template: str | None = getattr(tokenizer, "chat_template", None) or None
        self.bos_id = ids(BOS) if BOS in tokenizer.get_vocab() else tokenizer.bos_token_id
        self.slot_id: int = ids(MEDIA_SLOT)
        self.end_id: int = tokenizer.eos_token_id if self.chat_template else ids(END_OF_TURN)
        self.role_ids: dict[str, int] = {role: ids(tok) for role, tok in ROLE_TOKENS.items()}
        vocab = tokenizer.get_vocab()
        known = {
            m: tags for m, tags in MEDIA_TAGS.items() if tags[0] in vocab and tags[1] in vocab
        }  # this model's media
        self.start_ids: dict[str, int] = {m: ids(tags[0]) for m, tags in known.items()}
        self.close_ids: dict[str, int] = {m: ids(tags[1]) for m, tags in known.items()}
        self.modality_of_start: dict[int, str] = {v: k for k, v in self.start_ids.items()}

    @property
    def vocabulary(self) -> list[str]:
        """The words of a closed vocabulary (what :attr:`closed_vocabulary` models understand)."""
        special = set(self.tokenizer.all_special_tokens)
        return sorted(w for w in self.tokenizer.get_vocab() if w not in special)

    def text_ids(self, text: str) -> list[int]:
        """Token ids of plain text (special-token strings stay text).

        Raises:
            UnknownWordsError: with a closed vocabulary, words the model does not know.
        """
        encoded = self.tokenizer(
            text, add_special_tokens=False, split_special_tokens=True, return_offsets_mapping=self.closed_vocabulary
        )
        ids = list(encoded.input_ids)
        if self.closed_vocabulary and self.tokenizer.unk_token_id in ids:
            spans = encoded.offset_mapping
            unknown = [text[a:b] for i, (a, b) in zip(ids, spans, strict=True) if i == self.tokenizer.unk_token_id]
            raise UnknownWordsError(list(dict.fromkeys(unknown)), self.vocabulary)
        return ids

    @staticmethod
    def _add(prompt: Prompt, token_ids: list[int], learn: bool) -> None:
        prompt.ids += token_ids
        prompt.labels += token_ids if learn else [IGNORE_INDEX] * len(token_ids)

    def _content(self, prompt: Prompt, role: str, parts: Sequence[Part], *, train: bool) -> None:
        """A turn's parts: text tokens and media slots (one slot for media the model writes)."""
        writes = role == "assistant"

        def add(token_ids: list[int], learn: bool) -> None:
            self._add(prompt, token_ids, train and learn)

        for part in parts:
            if isinstance(part, Text):
                add(self.text_ids(part.text), True)
                continue
            if part.type not in self.start_ids or part.type not in self.tokens_per_item:
                raise ValueError(f"this model cannot read {part.type}")
            count = 1 if writes else self.tokens_per_item[part.type]
            add([self.start_ids[part.type]], True)
            prompt.media.append(MediaSlot(len(prompt.ids), count, part, target=train and writes))
            add([self.slot_id] * count, False)
            add([self.close_ids[part.type]], False)  # forced after a slot when generating: nothing to learn

    def _turn(self, prompt: Prompt, role: str, parts: Sequence[Part], *, train: bool) -> None:
        self._add(prompt, [self.role_ids[role]], False)
        self._content(prompt, role, parts, train=train)
        self._add(prompt, [self.end_id], train)

    def build(
        self, examples: Sequence[Example], messages: Sequence[Message], *, answer: Message | None = None
    ) -> Prompt:
        """Render a prompt that ends with ``<|assistant|>`` (for generation), or with ``answer`` (for training).

        With ``answer``, labels mark the answer's tokens (text, media start tags and the end of turn) and
        its media slots are regression targets; everything before is context only.
        """
        if self.chat_template:
            return self._build_templated(examples, messages, answer)
        prompt = Prompt()
        if self.bos_id is not None:
            prompt.ids.append(self.bos_id)
            prompt.labels.append(IGNORE_INDEX)
        for example in examples:
            self._turn(prompt, "user", example.inputs, train=False)
            self._turn(prompt, "assistant", example.outputs, train=False)
        for message in messages:
            self._turn(prompt, message.role, message.parts, train=False)
        if answer is None:
            prompt.ids.append(self.role_ids["assistant"])
            prompt.labels.append(IGNORE_INDEX)
        else:
            self._turn(prompt, "assistant", answer.parts, train=True)
        return prompt

    def _build_templated(
        self, examples: Sequence[Example], messages: Sequence[Message], answer: Message | None
    ) -> Prompt:
        turns: list[tuple[str, list[Part]]] = []
        history = list(messages)
        while history and history[0].role == "system":
            turns.append(("system", list(history.pop(0).parts)))
        for example in examples:
            turns += [("user", list(example.inputs)), ("assistant", list(example.outputs))]
        turns += [(m.role, list(m.parts)) for m in history]
        if answer is not None:
            turns.append(("assistant", list(answer.parts)))
        merged: list[tuple[str, list[Part]]] = []
        for role, parts in turns:
            if merged and merged[-1][0] == role:
                merged[-1][1].extend(parts)
            else:
                merged.append((role, parts))
        # To generate, the template renders an empty answer and the prompt stops where its content would begin:
        # the scaffold before an answer is then the same tokens in training and in generation (Llama-2's template
        # puts a space before the answer that its generation prompt leaves out; a model trained after that space
        # and asked without it never learns what to say first).
        generating = answer is None and not (merged and merged[-1][0] == "assistant")
        if generating:
            merged.append(("assistant", []))
        # The template sees only markers, so nothing a user typed is rendered by it or read as a special token.
        nonce = secrets.token_hex(8)
        try:
            rendered = self.tokenizer.apply_chat_template(
                [{"role": role, "content": f"CONTENT{nonce}{i}END"} for i, (role, _) in enumerate(merged)],
                tokenize=False,
                add_generation_prompt=answer is None and not generating,
            )
        except Exception as exc:  # jinja's TemplateError, raised by the template itself (e.g. role order)
            raise ValueError(f"the model's chat template refuses this conversation: {exc}") from None
        pieces = re.split(f"CONTENT{nonce}(\\d+)END", rendered)
        prompt = Prompt()
        for i, scaffold in enumerate(pieces[::2]):
            learn = answer is not None and i == len(merged)  # the end of sequence after the answer
            self._add(prompt, list(self.tokenizer(scaffold, add_special_tokens=False).input_ids), learn)
            if generating and i == len(merged) - 1:
                break
            if 2 * i + 1 < len(pieces):
                role, parts = merged[int(pieces[2 * i + 1])]
                train = answer is not None and int(pieces[2 * i + 1]) == len(merged) - 1
                self._content(prompt, role, parts, train=train)
        return prompt
