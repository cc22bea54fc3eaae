"""The OpenAI Responses API on the server, for ``client.responses``: ``POST /v1/responses`` (whole, or streamed as
the client's events), ``GET`` and ``DELETE /v1/responses/{id}``.

``previous_response_id`` continues a conversation the server keeps: each kept response holds the whole history
up to its answer, so turns on the same response branch from it and never change it (two clients continuing one
response concurrently get two new ones). Kept responses are the caller's own (keyed by the hash of the bearer token
sent: one key never reads another's), bounded in count, memory and age (``ServerSettings.stored_responses*``);
``store=false`` keeps nothing. A picture the model makes is an ``image_generation_call`` item; ask for one with
``tools=[{"type": "image_generation"}]`` and ``tool_choice={"type": "image_generation"}`` (or ``extra_body=
{"modalities": ["image"]}``), else the model chooses. Formats: :mod:`codi2_sdk.formats.openai_responses`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..config import GenerationConfig
from ..content import Part, Text
from ..errors import InvalidRequestError
from ..events import Done, Event, GenerationRequest, MediaDone, TextDelta
from ..formats.openai_responses import from_response_input, new_id, output_item
from ..messages import Message
from ._common import ErrorAnswer
from ._kept import KeptPerCaller
from ._state import ModelState, authorize, caller_key, model_state
from .openai_api import OpenAIRoute, answer_request, json_body, model_name

__all__ = ["ResponseStore", "router"]

router = APIRouter(prefix="/v1", route_class=OpenAIRoute, dependencies=[Depends(authorize)])


@dataclass
class _Kept:
    response: dict[str, Any]
    messages: list[Message]
    created: float = field(default_factory=time.monotonic)


class ResponseStore(KeptPerCaller[_Kept]):
    """Responses kept for ``previous_response_id`` and retrieval, per caller, bounded in count, bytes and age
    (the oldest go first). Entries are never changed once kept."""

    def __init__(self, max_items: int, max_bytes: int, max_age_s: float) -> None:
        super().__init__(max_items, max_bytes, expired=lambda kept: time.monotonic() - kept.created > max_age_s)

    def keep(self, owner: str, response: dict[str, Any], messages: list[Message]) -> None:
        """Keep ``response`` and the history it ends; too big to keep at all: nothing is kept."""
        size = len(json.dumps(response)) + sum(len(p.data) for m in messages for p in m.media)
        self.put(owner, response["id"], _Kept(response, messages), size)


def response_store(request: Request) -> ResponseStore:
    """The app's store of responses (a FastAPI dependency)."""
    store: ResponseStore = request.app.state.responses
    return store


def _config(body: dict[str, Any]) -> GenerationConfig:
    """The generation settings a Responses request asks for; tools and formats it cannot honour are refused."""
    for tool in body.get("tools") or []:
        kind = tool.get("type") if isinstance(tool, dict) else tool
        if kind != "image_generation":
            raise InvalidRequestError(f"a tool of type {kind!r} cannot be served: the only tool is image_generation")
    answer_format = body.get("text", {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(answer_format, dict) and answer_format.get("type") not in (None, "text"):
        raise InvalidRequestError(f"text.format {answer_format.get('type')!r} cannot be served: answers are free text")
    wanted = body.get("modalities") or []
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "image_generation":
        wanted = ["image"]
    media = [m for m in wanted if m != "text"]
    if len(media) > 1:
        raise InvalidRequestError(f"ask for one medium in modalities, not {media}")
    text: dict[str, Any] = {}
    for ours, theirs in (("max_new_tokens", "max_output_tokens"), ("temperature", "temperature"), ("top_p", "top_p")):
        if body.get(theirs) is not None:
            text[ours] = body[theirs]
    output = media[0] if media else ("text" if wanted == ["text"] else "auto")
    return GenerationConfig.model_validate({"seed": body.get("seed"), "output_modality": output, "text": text})


class _Output:
    """A response's output items, built from its parts as they come, with the stream events announcing them."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.text: list[Text] = []
        self.text_id: str | None = None
        self.sequence = 0

    def event(self, kind: str, **fields: Any) -> dict[str, Any]:
        self.sequence += 1
        return {"type": kind, "sequence_number": self.sequence - 1, **fields}

    def add_text(self, delta: str) -> list[dict[str, Any]]:
        events = []
        where = {"output_index": len(self.items), "content_index": 0}
        if self.text_id is None:
            self.text_id = new_id("msg")
            item = {"type": "message", "id": self.text_id, "status": "in_progress", "role": "assistant", "content": []}
            part = {"type": "output_text", "text": "", "annotations": []}
            events += [self.event("response.output_item.added", output_index=len(self.items), item=item)]
            events += [self.event("response.content_part.added", item_id=self.text_id, **where, part=part)]
        self.text.append(Text(delta))
        return [
            *events,
            self.event("response.output_text.delta", item_id=self.text_id, **where, delta=delta, logprobs=[]),
        ]

    def close_text(self) -> list[dict[str, Any]]:
        if self.text_id is None:
            return []
        item, index = output_item(self.text, self.text_id), len(self.items)
        self.items.append(item)
        self.text, self.text_id = [], None
        part = item["content"][0]
        where = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [
            self.event("response.output_text.done", **where, text=part["text"], logprobs=[]),
            self.event("response.content_part.done", **where, part=part),
            self.event("response.output_item.done", output_index=index, item=item),
        ]

    def add_medium(self, part: Part) -> list[dict[str, Any]]:
        events = self.close_text()
        item = output_item(part, new_id("ig" if part.type == "image" else "media"))
        index = len(self.items)
        self.items.append(item)
        pending = {k: v for k, v in item.items() if k not in ("result", "data")} | {"status": "in_progress"}
        events.append(self.event("response.output_item.added", output_index=index, item=pending))
        if item["type"] == "image_generation_call":
            events.append(
                self.event("response.image_generation_call.completed", item_id=item["id"], output_index=index)
            )
        return [*events, self.event("response.output_item.done", output_index=index, item=item)]


@dataclass
class _Turn:
    """One ``POST /v1/responses``: what it asked, for whom, and the history it answers."""

    body: dict[str, Any]
    owner: str
    history: list[Message]
    generation: GenerationRequest
    response_id: str = field(default_factory=lambda: new_id("resp"))
    created: int = field(default_factory=lambda: int(time.time()))

    def response(self, name: str, output: list[dict[str, Any]], status: str = "completed") -> dict[str, Any]:
        body = self.body
        return {
            "id": self.response_id, "object": "response", "created_at": self.created, "status": status,
            "model": name, "output": output, "previous_response_id": body.get("previous_response_id"),
            "instructions": body.get("instructions"), "metadata": body.get("metadata") or {},
            "store": body.get("store") is not False, "error": None, "incomplete_details": None,
            "parallel_tool_calls": False, "temperature": body.get("temperature"), "top_p": body.get("top_p"),
            "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [], "usage": None,
            "text": {"format": {"type": "text"}},
        }  # fmt: skip

    def keep(self, store: ResponseStore, response: dict[str, Any], answer: Message) -> None:
        if self.body.get("store") is not False:
            store.keep(self.owner, response, [*self.history, answer])


def _turn(body: dict[str, Any], request: Request, store: ResponseStore) -> _Turn:
    owner = caller_key(request)
    history: list[Message] = []
    previous = body.get("previous_response_id")
    if previous is not None:
        kept = store.get(owner, str(previous))
        if kept is None:
            raise ErrorAnswer("not_found", f"no response {previous!r} is kept for this key (or it expired)")
        history = kept.messages
    instructions = body.get("instructions")
    system = [Message(role="system", parts=[Text(str(instructions))])] if instructions else []
    turns = [*history, *from_response_input(body.get("input"))]
    if not turns or turns[-1].role != "user":
        raise InvalidRequestError("input must end with a user message")
    generation = GenerationRequest(messages=[*system, *turns], config=_config(body))
    return _Turn(body, owner, turns, generation)


@router.post("/responses")
async def create_response(
    request: Request, state: ModelState = Depends(model_state), store: ResponseStore = Depends(response_store)
) -> Response:
    """A response to ``input`` (after ``previous_response_id``'s conversation), whole or streamed."""
    body = await json_body(state, request)
    turn = _turn(body, request, store)
    if body.get("stream"):
        return _stream(state, store, turn)
    answer = await answer_request(state, request, turn.generation)
    output = _Output()
    for part in answer.parts:
        output.add_text(part.text) if isinstance(part, Text) else output.add_medium(part)
    output.close_text()
    response = turn.response(model_name(state), output.items)
    turn.keep(store, response, answer)
    return JSONResponse(response)


def _stream(state: ModelState, store: ResponseStore, turn: _Turn) -> StreamingResponse:
    """The response as the client's stream events, ending in ``response.completed`` (or an ``error`` event)."""
    backend = state.checked(turn.generation)
    name, output = model_name(state), _Output()

    def frame(event: dict[str, Any]) -> bytes:
        return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()

    def frames_of(event: Event) -> list[bytes]:
        if isinstance(event, TextDelta):
            produced = output.add_text(event.text)
        elif isinstance(event, MediaDone):
            produced = output.add_medium(event.part)
        elif isinstance(event, Done):
            produced = output.close_text()
            response = turn.response(name, output.items)
            turn.keep(store, response, event.message)
            produced.append(output.event("response.completed", response=response))
        else:
            produced = []
        return [frame(item) for item in produced]

    def error_frame(code: str, message: str) -> bytes:
        return frame(output.event("error", code=code, message=message, param=None))

    opening = frame(output.event("response.created", response=turn.response(name, [], "in_progress")))
    return state.event_stream(
        backend, turn.generation, state.admit(), frames_of=frames_of, error_frame=error_frame, opening=[opening]
    )


@router.get("/responses/{response_id}")
async def retrieve_response(
    response_id: str, request: Request, store: ResponseStore = Depends(response_store)
) -> Response:
    """A kept response (this caller's own)."""
    kept = store.get(caller_key(request), response_id)
    if kept is None:
        raise ErrorAnswer("not_found", f"no response {response_id!r} is kept for this key (or it expired)")
    return JSONResponse(kept.response)


@router.delete("/responses/{response_id}")
async def delete_response(
    response_id: str, request: Request, store: ResponseStore = Depends(response_store)
) -> Response:
    """Forget a kept response (this caller's own)."""
    if store.delete(caller_key(request), response_id) is None:
        raise ErrorAnswer("not_found", f"no response {response_id!r} is kept for this key")
    return JSONResponse({"id": response_id, "object": "response", "deleted": True})
