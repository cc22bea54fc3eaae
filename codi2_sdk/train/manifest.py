"""Training manifests, read as training reads them: each line checked once, its medium opened only when drawn.

A manifest is JSONL (paths relative to its folder), one record per line, either a captioned medium or a
conversation::

    {"caption": "a dog barks twice", "audio": "clips/dog.wav"}
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "make it rain"},
                                               {"type": "image", "path": "in.png"}]},
                  {"role": "assistant", "content": [{"type": "image", "path": "out.png"}]}],
     "examples": [{"inputs": [{"type": "image", "path": "a.png"}], "outputs": [{"type": "image", "path": "b.png"}]}]}

The last message of a conversation is the answer learnt; the ones before it are context.

:func:`load_manifest` reads every line once and keeps where it starts, which shape it has and which medium it trains;
it opens no medium. Indexing :attr:`Manifest.captions` or :attr:`Manifest.conversations` reads that one line again
and opens its media. A record costs a training process 15 bytes of memory, whatever its media weigh, so every
process of a multi-GPU run can index a data set of millions of pictures, and a run starts once the lines are read.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar, overload

from ..content import MEDIA_PARTS, MediaPart, Part, Text
from ..errors import Codi2Error, InvalidMediaError, InvalidRequestError
from ..messages import Example, Message
from ..model import TrainingExample

__all__ = ["CaptionedMedium", "Manifest", "ManifestRecords", "by_modality", "load_manifest", "modality_of"]

T = TypeVar("T")
_ROLES = ("system", "user", "assistant")
_MODALITIES = ("text", *MEDIA_PARTS)


@dataclass
class CaptionedMedium:
    """A medium and its caption (for the decoder stage)."""

    part: MediaPart
    caption: str

    @property
    def modality(self) -> str:
        return self.part.type


def modality_of(example: TrainingExample) -> str:
    """The medium a conversation trains: its answer's, else its last input medium's, else ``"text"``."""
    return _trained([[part.type for part in m.parts] for m in [*example.messages, example.answer]])


def _trained(types: list[list[str]]) -> str:
    """:func:`modality_of` from each message's part types, in order, the answer last (a manifest line's, unread)."""
    return next((kind for message in reversed(types) for kind in message if kind != "text"), "text")


class ManifestRecords(Sequence[T], Generic[T]):
    """A manifest's records of one shape, in file order: indexing one reads its line and opens its media then, so
    only the records in use are in memory. Built by :func:`load_manifest`."""

    def __init__(self, item: type[T]) -> None:
        self.item = item
        self._sources: list[Path] = []
        self._source = array("H")  # which manifest file
        self._offset = array("q")  # where the line starts
        self._line = array("I")  # its number, for errors
        self._modality = array("B")  # the medium it trains, an index into _MODALITIES

    def _add(self, source: int, offset: int, line: int, modality: str) -> None:
        self._source.append(source)
        self._offset.append(offset)
        self._line.append(line)
        self._modality.append(_MODALITIES.index(modality))

    def __len__(self) -> int:
        return len(self._offset)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = range(len(self))[index]  # negative indices, and IndexError past the end
        path = self._sources[self._source[i]]
        with path.open("rb") as file:
            file.seek(self._offset[i])
            line = file.readline()
        where = f"{path.name}, line {self._line[i]}"
        try:
            return _build(self.item, json.loads(line), path.parent, where)  # type: ignore[return-value]
        except Codi2Error as exc:
            raise type(exc)(f"{where}: {exc}") from None
        except OSError as exc:  # a medium gone since the manifest was written
            raise InvalidMediaError(f"{where}: {exc}") from None

    def __iter__(self) -> Iterator[T]:
        return (self[i] for i in range(len(self)))

    def modality(self, index: int) -> str:
        """The medium record ``index`` trains, known without reading it."""
        return _MODALITIES[self._modality[index]]

    def by_modality(self) -> dict[str, ManifestRecords[T]]:
        """The records split by the medium each trains, each part as lazy as this one."""
        parts: dict[str, ManifestRecords[T]] = {}
        for i in range(len(self)):
            part = parts.setdefault(self.modality(i), ManifestRecords(self.item))
            part._sources = self._sources
            part._add(self._source[i], self._offset[i], self._line[i], self.modality(i))
        return parts


def by_modality(data: Sequence[T], modality: Callable[[T], str]) -> dict[str, Sequence[T]]:
    """``data`` split by the medium each item trains (``modality(item)``); a manifest's records without reading
    them."""
    if isinstance(data, ManifestRecords):
        return dict(data.by_modality())
    groups: dict[str, list[T]] = {}
    for item in data:
        groups.setdefault(modality(item), []).append(item)
    return dict(groups)


@dataclass
class Manifest:
    """A manifest's records: captioned media and conversations (both read lazily, see the module's documentation)."""

    captions: ManifestRecords[CaptionedMedium] = field(default_factory=lambda: ManifestRecords(CaptionedMedium))
    conversations: ManifestRecords[TrainingExample] = field(default_factory=lambda: ManifestRecords(TrainingExample))


def load_manifest(path: str | Path | Sequence[str | Path]) -> Manifest:
    """Read one JSONL manifest, or several as one (each one's media paths relative to its own folder). Every line's
    shape is checked now; media are opened when a record is indexed.

    Raises:
        InvalidRequestError: a line that is not a record of either shape (the message gives its number), or a
            manifest that is not there.
        InvalidMediaError: (when a record is indexed) a medium that cannot be read, named with its line.
    """
    paths = [Path(p) for p in ([path] if isinstance(path, (str, Path)) else path)]
    manifest = Manifest()
    for number, source in enumerate(paths):
        if not source.is_file():
            raise InvalidRequestError(f"no manifest at {source}")
        for records in (manifest.captions, manifest.conversations):
            records._sources.append(source)
        with source.open("rb") as file:
            offset = 0
            for line_number, line in enumerate(file, start=1):
                if line.strip():
                    kind, modality = _shape(line, f"{source.name}, line {line_number}")
                    records = manifest.captions if kind == "caption" else manifest.conversations
                    records._add(number, offset, line_number, modality)
                offset += len(line)
    return manifest


def _shape(line: bytes, where: str) -> tuple[str, str]:
    """Which shape a line's record has and the medium it trains; :class:`InvalidRequestError` if neither shape."""
    try:
        record = json.loads(line)
        if "caption" in record:
            media = [m for m in MEDIA_PARTS if m in record]
            if len(media) != 1:
                raise InvalidRequestError(f"{where}: a caption needs exactly one of {', '.join(MEDIA_PARTS)}")
            _text(record["caption"])
            _text(record[media[0]])
            return "caption", media[0]
        messages = record["messages"]
        kinds = [[_item_type(item, where) for item in _list(m["content"])] for m in _list(messages)]
        for example in _list(record.get("examples", [])):
            for item in [*_list(example["inputs"]), *_list(example["outputs"])]:
                _item_type(item, where)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, InvalidRequestError):
            raise
        raise InvalidRequestError(f"{where}: not a caption or conversation record ({exc!r})") from None
    roles = [m.get("role") for m in messages]
    if any(role not in _ROLES for role in roles):
        raise InvalidRequestError(f"{where}: a message's role is one of {', '.join(_ROLES)}")
    if len(messages) < 2 or roles[-1] != "assistant":
        raise InvalidRequestError(f"{where}: a conversation ends with the assistant's answer")
    return "conversation", _trained(kinds)


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"a list was expected, not {type(value).__name__}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a string was expected, not {type(value).__name__}")
    return value


def _item_type(item: Any, where: str) -> str:
    kind = item.get("type") if isinstance(item, dict) else None
    if kind == "text":
        _text(item["text"])
    elif kind in MEDIA_PARTS:
        _text(item["path"])
    else:
        raise InvalidRequestError(f"{where}: a content item of unknown type {kind!r} (text, {', '.join(MEDIA_PARTS)})")
    return str(kind)


def _part(item: dict[str, Any], root: Path) -> Part:
    if item["type"] == "text":
        return Text(item["text"])
    return MEDIA_PARTS[item["type"]].open(root / item["path"])  # type: ignore[attr-defined,no-any-return]


def _build(item: type, record: dict[str, Any], root: Path, where: str) -> CaptionedMedium | TrainingExample:
    if item is CaptionedMedium:
        modality = next(m for m in MEDIA_PARTS if m in record)
        return CaptionedMedium(MEDIA_PARTS[modality].open(root / record[modality]), record["caption"])  # type: ignore[attr-defined]
    messages = [Message(role=m["role"], parts=[_part(i, root) for i in m["content"]]) for m in record["messages"]]
    examples = [
        Example(inputs=[_part(i, root) for i in e["inputs"]], outputs=[_part(i, root) for i in e["outputs"]])
        for e in record.get("examples", [])
    ]
    return TrainingExample(messages=messages[:-1], answer=messages[-1], examples=examples)
