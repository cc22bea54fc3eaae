"""ChatCoDi2: a CoDi-2 backend as a LangChain chat model, with image and audio content blocks in and out.

>>> from codi2_sdk.agents import ChatCoDi2
>>> from langchain_core.messages import HumanMessage
>>> chat = ChatCoDi2(backend=backend, output_modality="image")                      # doctest: +SKIP
>>> reply = chat.invoke([HumanMessage("draw a large red circle on the left.")])     # doctest: +SKIP
>>> reply.content[0]["type"]                                                         # doctest: +SKIP
'image'
>>> chat.bind(seed=3).invoke(...)  # per call, LangChain's way: bind() the settings  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from ..backends.base import Backend
from ..config import GenerationConfig
from ..content import Text
from ..errors import InvalidRequestError
from ..events import Done, GenerationRequest, MediaDone, TextDelta
from ..formats.langchain_blocks import from_langchain_blocks, to_langchain_blocks
from ..messages import Message

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


def _metadata(backend: Any, request: GenerationRequest, answer: Message, seconds: float) -> dict[str, Any]:
    """What an answer's ``response_metadata`` says: the model, the seed used, the time taken."""
    seeds = [p.provenance.seed for p in answer.media if p.provenance is not None]
    seed = request.config.seed if request.config.seed is not None else (seeds[0] if seeds else None)
    return {"model_name": backend.capabilities.model, "seed": seed, "seconds": round(seconds, 3)}


def to_ai_message(message: Message) -> AIMessage:
    """An SDK answer as an AIMessage: plain text content when it is only text, v1 blocks otherwise."""
    if all(isinstance(p, Text) for p in message.parts):
        return AIMessage(content=message.text)
    return AIMessage(content=to_langchain_blocks(message.parts))  # type: ignore[arg-type]


class ChatCoDi2(BaseChatModel):
    """CoDi-2 as a LangChain chat model (invoke, stream, ainvoke, astream).

    Settings are fields, and per call they go through LangChain's ``bind`` (or as keyword arguments of
    ``invoke``): ``chat.bind(seed=3, output_modality="audio")``, ``chat.bind(generation={"image": {"steps": 10}})``.
    A keyword it does not know is refused, never ignored.

    Attributes:
        backend: any :class:`~codi2_sdk.Backend` (local or remote).
        seed: a seed for reproducible answers.
        output_modality: ``"auto"``, ``"text"``, ``"image"``, ``"audio"`` or ``"video"``.
        generation: any other settings (a :class:`GenerationConfig` or a mapping); ``config`` is its older name.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)

    backend: Any = Field(exclude=True)
    seed: int | None = None
    output_modality: str | None = None
    generation: Any = Field(default=None, alias="config")

    CALL_SETTINGS: ClassVar[frozenset[str]] = frozenset({"seed", "output_modality", "generation"})

    @property
    def _llm_type(self) -> str:
        return "codi2"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.backend.capabilities.model}

    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "CoDi-2 does not call tools. To give an agent CoDi-2's abilities, pass codi2_sdk.agents.codi2_toolkit(backend) "
            "to an agent built on a tool-calling chat model."
        )

    def _request(self, messages: Sequence[BaseMessage], kwargs: dict[str, Any]) -> GenerationRequest:
        if not isinstance(self.backend, Backend):
            raise InvalidRequestError("ChatCoDi2.backend must be a codi2_sdk Backend")
        unknown = set(kwargs) - self.CALL_SETTINGS
        if unknown:
            known = ", ".join(sorted(self.CALL_SETTINGS))
            raise InvalidRequestError(
                f"ChatCoDi2 does not take {', '.join(sorted(unknown))}; per call it takes {known}"
            )
        config = GenerationConfig().merged(self.generation).merged(kwargs.get("generation"))
        chosen = {k: v for k, v in (("seed", self.seed), ("output_modality", self.output_modality)) if v is not None}
        chosen |= {k: kwargs[k] for k in ("seed", "output_modality") if kwargs.get(k) is not None}
        return GenerationRequest(messages=to_sdk_messages(messages), config=config.merged(chosen))

    def _result(self, request: GenerationRequest, answer: Message, seconds: float) -> ChatResult:
        message = to_ai_message(answer)
        message.response_metadata = _metadata(self.backend, request, answer, seconds)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        request, began = self._request(messages, kwargs), time.perf_counter()
        return self._result(request, self.backend.generate(request), time.perf_counter() - began)

    async def _agenerate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        request, began = self._request(messages, kwargs), time.perf_counter()
        return self._result(request, await self.backend.agenerate(request), time.perf_counter() - began)

    def _chunk(self, event: Any, request: GenerationRequest, began: float) -> ChatGenerationChunk | None:
        if isinstance(event, TextDelta):  # plain strings: the chunks add up to one text
            return ChatGenerationChunk(message=AIMessageChunk(content=event.text))
        if isinstance(event, MediaDone):
            return ChatGenerationChunk(message=AIMessageChunk(content=to_langchain_blocks([event.part])))
        if isinstance(event, Done):
            metadata = _metadata(self.backend, request, event.message, time.perf_counter() - began)
            return ChatGenerationChunk(
                message=AIMessageChunk(content="", chunk_position="last", response_metadata=metadata)
            )
        return None

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        request, began = self._request(messages, kwargs), time.perf_counter()
        for event in self.backend.stream(request):
            chunk = self._chunk(event, request, began)
            if chunk is not None:
                if run_manager is not None and isinstance(event, TextDelta):
                    run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        request, began = self._request(messages, kwargs), time.perf_counter()
        async for event in self.backend.astream(request):
            chunk = self._chunk(event, request, began)
            if chunk is not None:
                if run_manager is not None and isinstance(event, TextDelta):
                    await run_manager.on_llm_new_token(event.text, chunk=chunk)
                yield chunk
