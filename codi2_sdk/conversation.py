"""Conversation: the object applications talk to.

A conversation owns its history, optional system text, in-context examples and default settings,
and a :class:`~codi2_sdk.backends.base.Backend` that answers. Each :meth:`Conversation.send` sends the
examples, the whole history and the new user turn, then appends the user turn and the answer. If the
backend fails, nothing is appended: the conversation is exactly as it was before the call.

>>> from codi2_sdk import Conversation
>>> conv = Conversation()                       # codi2-mini, in-process
>>> answer = conv.send("Draw a red circle.", config={"output_modality": "image"})  # doctest: +SKIP
>>> answer.images[0].save("circle.png")          # doctest: +SKIP

A conversation is not safe to share between threads or concurrent tasks: give each its own
(:meth:`fork` copies one cheaply).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import secrets
import stat
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError

from . import _media
from ._base import SDKModel
from .backends.base import Backend
from .config import GenerationConfig
from .content import Audio, Image, Text, Video
from .errors import Codi2Error, ConversationFileError, InvalidRequestError, ModelError, error_from_code
from .events import Done, ErrorEvent, Event, GenerationRequest
from .messages import Example, Message, PartLike, system, to_parts

__all__ = ["SCHEMA_VERSION", "Conversation"]

SCHEMA_VERSION: Literal[1] = 1
"""Version of the file format that :meth:`Conversation.save` writes and :meth:`Conversation.load` reads."""

ConfigLike = GenerationConfig | Mapping[str, Any] | None


class _ConversationFile(SDKModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = SCHEMA_VERSION
    system: str | None = None
    config: GenerationConfig = GenerationConfig()
    examples: list[Example] = Field(default_factory=list)
    history: list[Message] = Field(default_factory=list)


class Conversation:
    """A multi-round conversation with a CoDi-2 model.

    Args:
        backend: what answers; ``None`` uses the embedded codi2-mini model in-process, loaded on the
            first call that needs it.
        system: optional system text, sent before the history on every turn.
        config: default generation settings for every turn (a :class:`GenerationConfig` or a mapping).
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        system: str | None = None,
        config: ConfigLike = None,
    ) -> None:
        if backend is not None and not isinstance(backend, Backend):
            raise InvalidRequestError(f"backend must be a codi2_sdk Backend, not {type(backend).__name__}")
        if system is not None and not isinstance(system, str):
            raise InvalidRequestError(f"system must be str, not {type(system).__name__}")
        self._backend = backend
        self.system = system
        self.config = GenerationConfig().merged(config)
        self._examples: list[Example] = []
        self._history: list[Message] = []

    # -- state ---------------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The backend that answers; resolved to codi2-mini on first use if none was given."""
        if self._backend is None:
            from .backends import default_backend

            self._backend = default_backend()
        return self._backend

    @property
    def history(self) -> list[Message]:
        """The user and assistant turns so far, oldest first (a copy)."""
        return list(self._history)

    @property
    def examples(self) -> list[Example]:
        """The in-context examples (a copy)."""
        return list(self._examples)

    @property
    def messages(self) -> list[Message]:
        """What is sent before a new turn: the system message, if any, then the history."""
        head = [system(self.system)] if self.system is not None else []
        return head + self._history

    def _repr_html_(self) -> str:
        """Notebooks show the examples and every turn, media as pictures and players."""
        from ._display import conversation_html

        return conversation_html(self.examples, self.messages)

    def add_example(
        self,
        inputs: PartLike | Sequence[PartLike],
        outputs: PartLike | Sequence[PartLike],
    ) -> Example:
        """Add an in-context example: ``outputs`` is what the model should make of ``inputs``.

        Each side is one part (a ``str``, :class:`Image`, :class:`Audio`) or a list of them.
        """
        example = Example(inputs=to_parts(_as_sequence(inputs)), outputs=to_parts(_as_sequence(outputs)))
        self._examples.append(example)
        return example

    def clear_examples(self) -> None:
        """Remove every in-context example."""
        self._examples.clear()

    def undo(self) -> list[Message]:
        """Remove the last exchange (user turn and answer) and return it."""
        if len(self._history) < 2:
            raise InvalidRequestError("nothing to undo: the conversation has no exchange yet")
        removed = self._history[-2:]
        del self._history[-2:]
        return removed

    def fork(self) -> Conversation:
        """An independent copy that shares the backend: new turns on one do not touch the other."""
        other = Conversation(self._backend, system=self.system, config=self.config)
        other._examples = list(self._examples)
        other._history = list(self._history)
        return other

    # -- turns ---------------------------------------------------------------------------------

    def request_for(self, *items: PartLike, config: ConfigLike = None) -> GenerationRequest:
        """The request that :meth:`send` would make for this turn, without sending it."""
        turn = Message(role="user", parts=to_parts(items))
        return GenerationRequest(
            examples=self._examples, messages=[*self.messages, turn], config=self.config.merged(config)
        )

    def send(self, *items: PartLike, config: ConfigLike = None) -> Message:
        """Send a user turn and return the answer; both are appended to the history.

        Args:
            *items: the turn's parts in order; plain strings become :class:`Text`.
            config: settings for this turn only: a :class:`GenerationConfig` replaces the default, a
                mapping (``{"seed": 1, "image": {"steps": 20}}``) is merged into it.
        """
        request = self.request_for(*items, config=config)
        return self._commit(request, self.backend.generate(request))

    async def asend(self, *items: PartLike, config: ConfigLike = None) -> Message:
        """Async twin of :meth:`send`."""
        request = self.request_for(*items, config=config)
        return self._commit(request, await self.backend.agenerate(request))

    def stream(self, *items: PartLike, config: ConfigLike = None) -> Iterator[Event]:
        """Send a user turn and yield the answer's events; the turn is appended when :class:`Done` arrives.

        Stopping early (``break``, ``close()``) cancels the generation and appends nothing.
        """
        request = self.request_for(*items, config=config)
        events = self.backend.stream(request)
        try:
            for event in events:
                self._check_event(request, event)
                yield event
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()

    async def astream(self, *items: PartLike, config: ConfigLike = None) -> AsyncIterator[Event]:
        """Async twin of :meth:`stream`."""
        request = self.request_for(*items, config=config)
        events = self.backend.astream(request)
        try:
            async for event in events:
                self._check_event(request, event)
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()

    def _check_event(self, request: GenerationRequest, event: Event) -> None:
        if isinstance(event, ErrorEvent):
            raise error_from_code(event.code, event.message)
        if isinstance(event, Done):
            self._commit(request, event.message)

    def _commit(self, request: GenerationRequest, answer: Message) -> Message:
        if not isinstance(answer, Message) or answer.role != "assistant":
            raise ModelError(f"the backend answered with {answer!r}, not an assistant message")
        self._history += [request.messages[-1], answer]
        return answer

    # -- files ---------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the conversation (system text, settings, examples, history with media) as JSON.

        The write is atomic: the file is written beside the target under a temporary name, flushed to disk,
        then renamed over it, so a crash mid-save leaves the previous file intact. An existing file keeps
        its permissions; a new one gets the usual ones (umask). Temporary files that an earlier save left
        behind when it crashed are removed.
        """
        path = Path(path)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder, not a file to save a conversation in", str(path))
        if not path.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, f"no folder {str(path.parent)!r} to save {path.name!r} in", str(path))
        record = _ConversationFile(
            system=self.system, config=self.config, examples=self._examples, history=self._history
        )
        payload = record.model_dump_json(indent=1).encode("utf-8")
        _remove_stale_temp_files(path)
        tmp = path.parent / f"{_TEMP_PREFIX.format(name=path.name)}{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any new file
        try:
            if os.name == "posix":
                with contextlib.suppress(FileNotFoundError):  # a new file keeps the umask's permissions
                    os.fchmod(fd, stat.S_IMODE(path.stat().st_mode))
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, backend: Backend | None = None) -> Conversation:
        """Read a conversation written by :meth:`save`; the file is only read, never changed.

        Raises:
            ConversationFileError: the file is not valid JSON, is of an unknown schema version, or
                holds invalid messages or media.
        """
        path = Path(path)
        data = _media.read_regular_file(path)  # a missing file is FileNotFoundError, as for open()
        if data is None:
            raise ConversationFileError(f"{path} is not a regular file (a device, pipe or socket)")
        try:
            raw = json.loads(data)
        except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, or nested too deeply to parse
            raise ConversationFileError(f"{path} is not a conversation file: {str(exc)[:200]}") from None
        version = raw.get("schema_version") if isinstance(raw, dict) else None
        if version != SCHEMA_VERSION:
            raise ConversationFileError(
                f"{path} has schema version {version!r}; this SDK reads version {SCHEMA_VERSION}"
            )
        try:
            record = _ConversationFile.model_validate(raw)
        except (ValidationError, Codi2Error, RecursionError) as exc:
            raise ConversationFileError(f"{path} holds an invalid conversation: {str(exc)[:500]}") from None
        conv = cls(backend, system=record.system, config=record.config)
        conv._examples = list(record.examples)
        conv._history = list(record.history)
        return conv

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Conversation):
            return NotImplemented
        return (self.system, self.config, self._examples, self._history) == (
            other.system,
            other.config,
            other._examples,
            other._history,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Conversation({len(self._history)} messages, {len(self._examples)} examples, "
            f"backend={type(self._backend).__name__ if self._backend else 'default'})"
        )


def _as_sequence(value: PartLike | Sequence[PartLike]) -> Sequence[PartLike]:
    if isinstance(value, (str, Text, Image, Audio, Video)):
        return [value]
    return value


_TEMP_PREFIX = ".{name}."
_STALE_AFTER_SECONDS = 60.0


def _remove_stale_temp_files(path: Path) -> None:
    """Remove what a save of ``path`` that crashed left behind (a minute old: a save in progress is younger)."""
    prefix = _TEMP_PREFIX.format(name=path.name)
    now = time.time()
    with contextlib.suppress(OSError):
        for leftover in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
            with contextlib.suppress(OSError):
                if now - leftover.stat().st_mtime > _STALE_AFTER_SECONDS:
                    leftover.unlink()


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable; not possible on Windows, where it is not needed either.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
