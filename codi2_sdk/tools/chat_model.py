"""ChatCoDi2: a CoDi-2 backend as a LangChain chat model, with image and audio content blocks in and out.

>>> from codi2_sdk.tools import ChatCoDi2
>>> from langchain_core.messages import HumanMessage
>>> chat = ChatCoDi2(backend=backend, config={"output_modality": "image"})          # doctest: +SKIP
>>> reply = chat.invoke([HumanMessage("draw a large red circle on the left.")])     # doctest: +SKIP
>>> reply.content[0]["type"]                                                         # doctest: +SKIP
'image'
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from ..backends.base import Backend
from ..config import GenerationConfig
from ..content import Text
from ..errors import InvalidRequestError
from ..integrations.langchain import from_langchain_blocks, to_langchain_blocks
from ..messages import Message
from ..types import Done, GenerationRequest, MediaDone, TextDelta

__all__ = ["ChatCoDi2"]


def to_sdk_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages (system, human, AI) as SDK messages."""
    roles = {SystemMessage: "system", HumanMessage: "user", AIMessage: "assistant"}
    out = []
    for message in messages:
        role = next((r for cls, r in roles.items() if isinstance(message, cls)), None)
        if role is None:
            raise InvalidRequestError(f"ChatCoDi2 reads system, human and AI messages, not {type(message).__name__}")
        out.append(Message(role=role, parts=from_langchain_blocks(message.content)))  # type: ignore[arg-type]
    return out


def to_ai_message(message: Message) -> AIMessage:
    """An SDK answer as an AIMessage: plain text content when it is only text, v1 blocks otherwise."""
    if all(isinstance(p, Text) for p in message.parts):
        return AIMessage(content=message.text)
    return AIMessage(content=to_langchain_blocks(message.parts))  # type: ignore[arg-type]


class ChatCoDi2(BaseChatModel):
    """CoDi-2 as a LangChain chat model (invoke, stream, ainvoke, astream).

    Args:
        backend: any :class:`~codi2_sdk.Backend` (local or remote).
        config: generation settings (a :class:`GenerationConfig` or a mapping); per call, pass
            ``config=...`` to ``invoke``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    backend: Any = Field(exclude=True)
    config: Any = None

    @property
    def _llm_type(self) -> str:
        return "codi2"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.backend.capabilities.model}

    def _request(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> GenerationRequest:
        if not isinstance(self.backend, Backend):
            raise InvalidRequestError("ChatCoDi2.backend must be a codi2_sdk Backend")
        config = GenerationConfig().merged(self.config).merged(kwargs.get("config"))
        return GenerationRequest(messages=to_sdk_messages(messages), config=config)

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        answer = self.backend.generate(self._request(messages, kwargs))
        return ChatResult(generations=[ChatGeneration(message=to_ai_message(answer))])

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        answer = await self.backend.agenerate(self._request(messages, kwargs))
        return ChatResult(generations=[ChatGeneration(message=to_ai_message(answer))])

    @staticmethod
    def _chunk(event: Any) -> ChatGenerationChunk | None:
        if isinstance(event, TextDelta):
            return ChatGenerationChunk(message=AIMessageChunk(content=[{"type": "text", "text": event.text}]))
        if isinstance(event, MediaDone):
            return ChatGenerationChunk(message=AIMessageChunk(content=to_langchain_blocks([event.part])))
        if isinstance(event, Done):
            return ChatGenerationChunk(message=AIMessageChunk(content=[], chunk_position="last"))
        return None

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        for event in self.backend.stream(self._request(messages, kwargs)):
            chunk = self._chunk(event)
            if chunk is not None:
                if run_manager is not None and isinstance(event, TextDelta):
                    run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        async for event in self.backend.astream(self._request(messages, kwargs)):
            chunk = self._chunk(event)
            if chunk is not None:
                if run_manager is not None and isinstance(event, TextDelta):
                    await run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk
