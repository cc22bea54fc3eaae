"""Test helpers for applications built on the SDK.

:class:`ScriptedBackend` answers with messages given in advance, so an application's own tests can
drive a :class:`~codi2_sdk.Conversation` (or the agent tools) without a model, and then check what the
application sent.

>>> from codi2_sdk import Conversation
>>> from codi2_sdk.testing import ScriptedBackend
>>> backend = ScriptedBackend(["Hello!"])
>>> Conversation(backend=backend).send("Hi").text
'Hello!'
>>> backend.requests[0].messages[-1].text
'Hi'
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence

from .backends.base import Backend
from .errors import ModelError
from .messages import Message, PartLike, assistant
from .types import Capabilities, GenerationRequest

__all__ = ["ScriptedBackend"]


class ScriptedBackend(Backend):
    """A backend that replays scripted answers in order and records every request it gets.

    Args:
        answers: each answer is an assistant :class:`Message`, a ``str``, or a list of parts.
        capabilities: what the backend claims to support (all modalities by default).
    """

    def __init__(
        self,
        answers: Iterable[Message | str | Sequence[PartLike]],
        *,
        capabilities: Capabilities | None = None,
    ) -> None:
        self._answers = [_as_answer(a) for a in answers]
        self._capabilities = capabilities or Capabilities(model="scripted")
        self._lock = threading.Lock()
        self.requests: list[GenerationRequest] = []
        """Every request received, in order."""

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def remaining(self) -> int:
        """Answers not yet given."""
        return len(self._answers)

    def generate(self, request: GenerationRequest) -> Message:
        self.check_request(request)
        with self._lock:
            self.requests.append(request)
            if not self._answers:
                raise ModelError(f"ScriptedBackend has no answer left for request #{len(self.requests)}")
            return self._answers.pop(0)


def _as_answer(answer: Message | str | Sequence[PartLike]) -> Message:
    if isinstance(answer, Message):
        if answer.role != "assistant":
            raise ValueError(f"a scripted answer must be an assistant message, not {answer.role}")
        return answer
    if isinstance(answer, str):
        return assistant(answer)
    return assistant(*answer)
