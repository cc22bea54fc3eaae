"""Test helpers for applications built on the SDK (pydantic-ai's ``FunctionModel``/``TestModel`` idea).

- :class:`FunctionBackend` answers with what your function computes from the request (and can stream
  progress, or raise the SDK's typed errors); :class:`ScriptedBackend` replays answers given in advance.
  Both record every request in ``requests``, so a test can check what the application sent.
- :func:`fake_image` and :func:`fake_audio` make small valid media in memory.
- :func:`answer_differences` compares two answers by content (texts equal, pictures by PSNR, audio by SNR), the
  way to check a model's answer across machines, thread counts or a compiled model.
- :func:`block_model_loading` makes ``Conversation()`` refuse to load a real model, so a test that forgot
  to pass a fake backend fails fast instead of loading codi2-mini.

>>> from codi2_sdk import Conversation
>>> from codi2_sdk.testing import FunctionBackend, ScriptedBackend
>>> backend = ScriptedBackend(["Hello!"])
>>> Conversation(backend=backend).send("Hi").text
'Hello!'
>>> backend.requests[0].messages[-1].text
'Hi'
>>> echo = FunctionBackend(lambda request: f"you said {request.messages[-1].text}")
>>> Conversation(backend=echo).send("Hi").text
'you said Hi'
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from .. import backends
from ..backends.base import Backend
from ..content import Audio, Image, Part, Text, Video
from ..errors import ModelError
from ..events import Capabilities, Done, Event, GenerationRequest, MediaDone, Progress, TextDelta
from ..messages import Message, PartLike, assistant
from .compare import answer_differences

__all__ = [
    "FunctionBackend",
    "ScriptedBackend",
    "allow_model_loading",
    "answer_differences",
    "as_answer",
    "block_model_loading",
    "progress_steps",
    "fake_audio",
    "fake_image",
]

AnswerLike = Message | str | Sequence[PartLike]
"""An answer: an assistant :class:`Message`, a ``str``, or a list of parts."""
StreamItem = Event | PartLike
"""What a stream function yields: events as they are, or parts (text becomes deltas, media ``MediaDone``)."""


class FunctionBackend(Backend):
    """A backend whose answers your function computes from the request.

    Args:
        fn: ``request -> answer`` (a :class:`Message`, a ``str`` or a list of parts); raise an SDK error
            (``InvalidRequestError``, ``ModelError``, ...) to test how the application handles it.
        stream_fn: ``request -> iterable`` of events or parts, for :meth:`stream` (and for :meth:`generate`
            when ``fn`` is not given): yield :class:`~codi2_sdk.Progress` events to test progress bars.
        capabilities: what the backend claims to support (all modalities by default).
    """

    def __init__(
        self,
        fn: Callable[[GenerationRequest], AnswerLike] | None = None,
        *,
        stream_fn: Callable[[GenerationRequest], Iterable[StreamItem]] | None = None,
        capabilities: Capabilities | None = None,
    ) -> None:
        if fn is None and stream_fn is None:
            raise ValueError("FunctionBackend needs fn, stream_fn, or both")
        self._fn = fn
        self._stream_fn = stream_fn
        self._capabilities = capabilities or Capabilities(model="function")
        self._lock = threading.Lock()
        self.requests: list[GenerationRequest] = []
        """Every request received, in order."""

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def _record(self, request: GenerationRequest) -> None:
        self.check_request(request)
        with self._lock:
            self.requests.append(request)

    def generate(self, request: GenerationRequest) -> Message:
        if self._fn is None:
            for event in self.stream(request):
                if isinstance(event, Done):
                    return event.message
            raise ModelError("the stream function ended without an answer")
        self._record(request)
        return as_answer(self._fn(request))

    def stream(self, request: GenerationRequest) -> Iterator[Event]:
        if self._stream_fn is None:
            yield from super().stream(request)
            return
        self._record(request)
        parts: list[Part] = []
        for item in self._stream_fn(request):
            if isinstance(item, str):
                item = Text(item)
            if isinstance(item, Text):
                parts.append(item)
                yield TextDelta(text=item.text)
            elif isinstance(item, (Image, Audio, Video)):
                parts.append(item)
                yield MediaDone(part_index=len(parts) - 1, part=item)
            elif isinstance(item, Done):
                yield item
                return
            else:
                yield item
        yield Done(message=Message(role="assistant", parts=parts))


class ScriptedBackend(FunctionBackend):
    """A backend that replays scripted answers in order and records every request it gets.

    Args:
        answers: each answer is an assistant :class:`Message`, a ``str``, or a list of parts.
        capabilities: what the backend claims to support (all modalities by default).
    """

    def __init__(self, answers: Iterable[AnswerLike], *, capabilities: Capabilities | None = None) -> None:
        self._answers = [as_answer(a) for a in answers]
        super().__init__(self._next, capabilities=capabilities or Capabilities(model="scripted"))

    @property
    def remaining(self) -> int:
        """Answers not yet given."""
        return len(self._answers)

    def _next(self, request: GenerationRequest) -> Message:
        with self._lock:
            if not self._answers:
                raise ModelError(f"ScriptedBackend has no answer left for request #{len(self.requests)}")
            return self._answers.pop(0)


def as_answer(answer: AnswerLike) -> Message:
    """An answer given as a message, a string or parts, as an assistant :class:`Message`."""
    if isinstance(answer, Message):
        if answer.role != "assistant":
            raise ValueError(f"a scripted answer must be an assistant message, not {answer.role}")
        return answer
    if isinstance(answer, str):
        return assistant(answer)
    return assistant(*answer)


def progress_steps(modality: str, total: int, part_index: int = 0) -> Iterator[Progress]:
    """``total`` progress events of one medium, for a stream function."""
    for step in range(1, total + 1):
        yield Progress(modality=modality, part_index=part_index, step=step, total=total)  # type: ignore[arg-type]


def fake_image(width: int = 32, height: int = 32, color: tuple[int, int, int] | str = "red") -> Image:
    """A small PNG of one colour."""
    import PIL.Image

    return Image.from_pil(PIL.Image.new("RGB", (width, height), color))


def fake_audio(seconds: float = 0.5, frequency: float = 440.0, sample_rate: int = 16_000) -> Audio:
    """A sine tone as a 16-bit WAV."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return Audio.from_array(0.5 * np.sin(2 * np.pi * frequency * t), sample_rate=sample_rate)


def allow_model_loading(allow: bool = True) -> None:
    """Let ``Conversation()`` load the default in-process model (the default), or forbid it."""
    backends.ALLOW_MODEL_LOADING = allow


@contextlib.contextmanager
def block_model_loading() -> Iterator[None]:
    """Within the block, a ``Conversation`` without a backend raises ``ModelError`` instead of running the
    default model (loaded or not): put it in a fixture of your test suite."""

    was = backends.ALLOW_MODEL_LOADING
    backends.ALLOW_MODEL_LOADING = False
    try:
        yield
    finally:
        backends.ALLOW_MODEL_LOADING = was
