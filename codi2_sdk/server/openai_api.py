"""OpenAI-compatible endpoints on the server, so the ``openai`` client (and tools built on it) can talk to CoDi-2.

- ``GET /v1/models``: the served model.
- ``POST /v1/chat/completions``: ``text``, ``image_url`` (data URLs) and ``input_audio`` parts in; text out, or
  with ``modalities=["text", "audio"]`` an audio answer in OpenAI's ``message.audio`` shape (base64 WAV);
  ``stream=true`` answers with ``chat.completion.chunk`` server-sent events ending in ``[DONE]``.
- ``POST /v1/images/generations``: a prompt to ``n`` pictures as ``b64_json``.
- ``POST /v1/images/edits``: multipart like OpenAI's; ``image`` is the picture to edit, and in-context example
  pairs go in ``example_before`` / ``example_after`` (the same count, paired in order), so the edit can be
  shown rather than named (the ``prompt`` may then be empty).

``seed`` is honoured everywhere (``extra_body={"seed": 0}`` for the image endpoints). The API key, the queue
and the limits are the server's own; errors have OpenAI's shape (``{"error": {"message", "type", "param",
"code"}}``) with the statuses of :data:`~codi2_sdk.errors.ERROR_CODES`. Token usage is not reported.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute

from ..config import GenerationConfig
from ..content import Audio, Image, Part, Text
from ..errors import ERROR_CODES, Codi2Error, InvalidRequestError, error_code_of
from ..events import Done, Event, GenerationRequest, TextDelta
from ..formats._common import b64
from ..formats.openai_parts import from_openai_parts
from ..messages import Example, Message
from ._common import ErrorAnswer, final_message, log_refusal, read_body, until_disconnect
from ._state import ModelState, authorize, model_state

__all__ = ["OpenAIRoute", "answer_request", "json_body", "model_name", "router"]

log = logging.getLogger("codi2_sdk.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error",
          422: "invalid_request_error", 429: "rate_limit_error", 503: "server_error"}  # fmt: skip


def _openai_error(code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    status = ERROR_CODES[code].status
    kind = _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class OpenAIRoute(APIRoute):
    """A route whose refusals (its dependencies' too, the API key check among them) take OpenAI's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer_openai_errors(request: Request) -> Response:
            try:
                return await handler(request)
            except ErrorAnswer as exc:
                if not exc.logged:
                    log_refusal(request, exc.code, exc.message)
                return _openai_error(exc.code, exc.message, exc.headers)
            except Codi2Error as exc:
                log_refusal(request, error_code_of(exc), str(exc))
                return _openai_error(error_code_of(exc), str(exc))

        return answer_openai_errors


router = APIRouter(prefix="/v1", route_class=OpenAIRoute, dependencies=[Depends(authorize)])


def _messages(raw: Any) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise InvalidRequestError("messages must be a non-empty list")
    out = []
    for i, item in enumerate(raw):
        role = item.get("role") if isinstance(item, dict) else None
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise InvalidRequestError(f"messages[{i}].role must be system, developer, user or assistant")
        content = item.get("content") or ""
        parts: list[Part] = list(from_openai_parts(content))
        audio = item.get("audio")
        if role == "assistant" and isinstance(audio, dict) and audio.get("data"):
            import base64

            parts.append(Audio.from_bytes(base64.b64decode(audio["data"])))
        out.append(Message(role=role, parts=parts))
    return out


def _config(body: dict[str, Any], output_modality: str) -> GenerationConfig:
    text: dict[str, Any] = {}
    for ours, theirs in (("max_new_tokens", "max_completion_tokens"), ("max_new_tokens", "max_tokens")):
        if body.get(theirs) is not None:
            text[ours] = body[theirs]
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            text[name] = body[name]
    return GenerationConfig.model_validate({"seed": body.get("seed"), "output_modality": output_modality, "text": text})


async def answer_request(state: ModelState, request: Request, generation: GenerationRequest) -> Message:
    """Run ``generation`` to its end in a place of the server's queue; refusals as :class:`ErrorAnswer`."""
    backend = state.checked(generation)
    release = state.admit()
    try:
        async with state.running:
            message: Message = await until_disconnect(request, final_message(backend, generation))
            return message
    finally:
        release()


async def json_body(state: ModelState, request: Request) -> dict[str, Any]:
    """The request's JSON object, read within the server's body limit."""
    raw = await read_body(request, state.settings.max_body_bytes)
    try:
        body = json.loads(raw)
    except ValueError:
        raise InvalidRequestError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object")
    return body


def model_name(state: ModelState) -> str:
    """The served model's name (refused while it loads)."""
    return str(state.ready().capabilities.model)


@router.get("/models")
async def models(state: ModelState = Depends(model_state)) -> Response:
    """The served model, as OpenAI lists models."""
    entry = {"id": model_name(state), "object": "model", "created": 0, "owned_by": "codi2-sdk"}
    return JSONResponse({"object": "list", "data": [entry]})


@router.post("/chat/completions")
async def chat_completions(request: Request, state: ModelState = Depends(model_state)) -> Response:
    """A chat completion, whole or streamed: text; with ``modalities`` holding ``"audio"``, a spoken answer in
    OpenAI's ``message.audio``; with ``"image"`` or ``"video"`` (as vLLM-Omni reads ``modalities``), the medium as a
    content part (``image_url`` / ``video_url`` with a data URL) beside the text."""
    body = await json_body(state, request)
    _refuse_what_is_not_served(body)
    medium = _asked_medium(body.get("modalities"))
    generation = GenerationRequest(messages=_messages(body.get("messages")), config=_config(body, medium))
    created, completion_id, name = int(time.time()), f"chatcmpl-{secrets.token_hex(12)}", model_name(state)
    if body.get("stream"):
        if medium in ("image", "video"):
            raise InvalidRequestError(f"stream a {medium} answer through /v1/responses or /v1/videos, not chunks")
        return _stream_chat(state, request, generation, completion_id, created, name)
    message = await answer_request(state, request, generation)
    reply: dict[str, Any] = {"role": "assistant", "content": message.text or None}
    if medium == "audio" and message.audios:
        reply["audio"] = _audio_reply(message.audios[0], message.text)
    if medium in ("image", "video"):
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
        for part in message.images + message.videos:
            kind = "image_url" if part.type == "image" else "video_url"
            parts.append({"type": kind, kind: {"url": f"data:{part.mime_type};base64,{b64(part.data)}"}})
        reply["content"] = parts
    choice = {"index": 0, "message": reply, "finish_reason": "stop", "logprobs": None}
    return JSONResponse(
        {"id": completion_id, "object": "chat.completion", "created": created, "model": name, "choices": [choice]}
    )


def _refuse_what_is_not_served(body: dict[str, Any]) -> None:
    """Refuse the chat options this server cannot honour, rather than answer as if it had (an agent given no
    refusal for ``tools`` would wait for calls that never come)."""
    for name, why in (
        ("tools", "the model does not call functions"),
        ("functions", "the model does not call functions"),
        ("stop", "stop sequences are not served"),
        ("logprobs", "log probabilities are not served"),
        ("top_logprobs", "log probabilities are not served"),
    ):
        if body.get(name):
            raise InvalidRequestError(f"'{name}' cannot be served: {why}")
    if body.get("n") not in (None, 1):
        raise InvalidRequestError("'n' must be 1: one answer per request (ask again with another seed for another)")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") not in (None, "text"):
        raise InvalidRequestError(f"response_format {fmt.get('type')!r} cannot be served: answers are free text")


def _asked_medium(modalities: Any) -> str:
    """The output a ``modalities`` list asks for: ``text`` alone, or one medium beside it."""
    wanted = modalities or ["text"]
    if not isinstance(wanted, list) or not set(wanted) <= {"text", "image", "audio", "video"}:
        raise InvalidRequestError(f"modalities must list text, image, audio or video, not {modalities!r}")
    media = [m for m in wanted if m != "text"]
    if len(media) > 1:
        raise InvalidRequestError(f"ask for one medium in modalities, not {media}")
    return media[0] if media else "text"


def _image_config(body: dict[str, Any], index: int) -> GenerationConfig:
    seed = body.get("seed")
    image: dict[str, Any] = {}
    size = body.get("size")
    if size not in (None, "auto"):
        width, _, height = str(size).partition("x")
        if width != height or not width.isdigit():
            raise InvalidRequestError(f"size must be square, like '64x64', not {size!r}")
        image["size"] = int(width)
    return GenerationConfig.model_validate(
        {"seed": None if seed is None else int(seed) + index, "output_modality": "image", "image": image}
    )


async def _pictures(
    state: ModelState, request: Request, body: dict[str, Any], messages: list[Message], examples: list[Example]
) -> Response:
    count = int(body.get("n") or 1)
    if not 1 <= count <= 8:
        raise InvalidRequestError("n must be between 1 and 8")
    if body.get("response_format") not in (None, "b64_json"):
        raise InvalidRequestError("only response_format 'b64_json' is served (no URLs are hosted)")
    data = []
    for i in range(count):
        generation = GenerationRequest(examples=examples, messages=messages, config=_image_config(body, i))
        message = await answer_request(state, request, generation)
        if not message.images:
            raise ErrorAnswer("model_error", "the model answered without a picture")
        data.append({"b64_json": b64(message.images[0].data), "revised_prompt": None})
    return JSONResponse({"created": int(time.time()), "data": data})


@router.post("/images/generations")
async def images_generations(request: Request, state: ModelState = Depends(model_state)) -> Response:
    """``n`` pictures from a prompt."""
    body = await json_body(state, request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequestError("prompt must be a non-empty string")
    return await _pictures(state, request, body, [Message(role="user", parts=[Text(prompt)])], [])


async def _edit_form(state: ModelState, request: Request) -> tuple[dict[str, list[Image]], dict[str, str]]:
    """The pictures and fields of an edit's multipart body, within the server's limits."""
    limit = state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ErrorAnswer("body_too_large", f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ErrorAnswer("unsupported_media_type", "send the edit as multipart/form-data, as OpenAI's is")
    async with request.form(max_files=2 * state.settings.max_media_parts + 2) as form:
        pictures = {
            name: [await _upload(f) for f in form.getlist(name)]
            for name in ("image", "image[]", "example_before", "example_after")
        }
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return pictures, fields


@router.post("/images/edits")
async def images_edits(request: Request, state: ModelState = Depends(model_state)) -> Response:
    """An edit of one picture, said in the prompt or shown by ``example_before``/``example_after`` pairs."""
    pictures, fields = await _edit_form(state, request)
    targets = pictures["image"] + pictures["image[]"]
    if len(targets) != 1:
        raise InvalidRequestError("send exactly one image to edit")
    before, after = pictures["example_before"], pictures["example_after"]
    if len(before) != len(after):
        raise InvalidRequestError("send as many example_after pictures as example_before ones (paired in order)")
    examples = [Example(inputs=[b], outputs=[a]) for b, a in zip(before, after, strict=True)]
    prompt = fields.get("prompt", "").strip()
    if not prompt and not examples:
        raise InvalidRequestError("say the edit in the prompt, or show it with example_before/example_after pairs")
    parts: list[Part] = [targets[0], *([Text(prompt)] if prompt else [])]
    body = {k: fields[k] for k in ("n", "size", "response_format", "seed") if fields.get(k)}
    return await _pictures(state, request, body, [Message(role="user", parts=parts)], examples)


async def _upload(upload: Any) -> Image:
    if isinstance(upload, str):
        raise InvalidRequestError("image fields must be files")
    return Image.from_bytes(await upload.read())


def _audio_reply(clip: Audio, transcript: str) -> dict[str, Any]:
    wav = (
        clip
        if clip.mime_type == "audio/wav"
        else Audio.from_array(clip.to_numpy(), sample_rate=clip.sample_rate or 16_000)
    )
    return {
        "id": f"audio_{secrets.token_hex(8)}",
        "data": b64(wav.data),
        "expires_at": int(time.time()) + 3600,
        "transcript": transcript,
    }


def _stream_chat(
    state: ModelState, request: Request, generation: GenerationRequest, completion_id: str, created: int, name: str
) -> StreamingResponse:
    """``chat.completion.chunk`` events: the role, each text delta, the audio (if asked) and ``finish_reason``."""
    backend = state.checked(generation)
    wants_audio = generation.config.output_modality == "audio"

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
        frame = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "choices": [choice],
        }
        return f"data: {json.dumps(frame)}\n\n".encode()

    def frames_of(event: Event) -> list[bytes]:
        if isinstance(event, TextDelta):
            return [chunk({"content": event.text})]
        if isinstance(event, Done) and wants_audio and event.message.audios:
            return [chunk({"audio": _audio_reply(event.message.audios[0], event.message.text)})]
        return []

    def error_frame(code: str, message: str) -> bytes:
        error = {"message": message, "type": "server_error", "param": None, "code": code}
        return f"data: {json.dumps({'error': error})}\n\n".encode()

    return state.event_stream(
        backend,
        generation,
        state.admit(),
        frames_of=frames_of,
        error_frame=error_frame,
        opening=[chunk({"role": "assistant", "content": ""})],
        closing=[chunk({}, "stop"), b"data: [DONE]\n\n"],
    )
