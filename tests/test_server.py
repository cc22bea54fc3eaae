"""The server and RemoteBackend against a real uvicorn server on loopback, serving a tiny real model."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import pytest
from server_fixtures import running_server

from codi2_sdk import (
    AuthenticationError,
    BadRequestError,
    Conversation,
    Done,
    GenerationRequest,
    Image,
    MediaDone,
    PayloadTooLargeError,
    Progress,
    RateLimitError,
    RemoteBackend,
    ServiceUnavailableError,
    TextDelta,
    UnprocessableEntityError,
    user,
)
from codi2_sdk.backends.local import LocalBackend

KEY = "test-key-123"
IMAGE_TURN = {"seed": 4, "output_modality": "image", "text": {"max_new_tokens": 5}}


@pytest.fixture(scope="module")
def local(tiny_model) -> LocalBackend:
    return LocalBackend(tiny_model)


@pytest.fixture(scope="module")
def server(local):
    with running_server(local, api_key=KEY, max_body_bytes=2_000_000, max_queue=2, retry_after=1) as url:
        yield url


@pytest.fixture
def remote(server):
    with RemoteBackend(server, api_key=KEY, max_retries=0) as backend:
        yield backend


def _post(url: str, body: bytes | dict, key: str | None = KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, dict):
        return httpx.post(f"{url}/v1/generate", json=body, headers=headers, timeout=60)
    return httpx.post(
        f"{url}/v1/generate", content=body, headers={**headers, "content-type": "application/json"}, timeout=60
    )


def _valid_body(image: Image | None = None) -> dict:
    parts = ["draw it"] + ([image] if image else [])
    return GenerationRequest(messages=[user(*parts)], config=IMAGE_TURN).model_dump(mode="json")


def test_remote_and_local_give_identical_bytes(local, remote, image) -> None:
    request = GenerationRequest(messages=[user("draw a red circle", image)], config=IMAGE_TURN)
    here, there = local.generate(request), remote.generate(request)
    assert there.images and there.images[0].data == here.images[0].data
    assert there == here
    conv = Conversation(backend=remote)
    assert conv.send("draw a red circle", image, config=IMAGE_TURN) == here


def test_stream_events_arrive_in_order_and_match(remote, local) -> None:
    request = GenerationRequest(messages=[user("draw")], config=IMAGE_TURN)
    events = list(remote.stream(request))
    kinds = [type(e) for e in events]
    assert kinds[-1] is Done and MediaDone in kinds and Progress in kinds
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps == sorted(steps) and steps[-1] == 4
    assert events.index(next(e for e in events if isinstance(e, MediaDone))) > kinds.index(Progress)
    assert events[-1].message == remote.generate(request) == local.generate(request)
    assert all(isinstance(e, TextDelta | Progress | MediaDone | Done) for e in events)


async def test_async_client(server, local) -> None:
    request = GenerationRequest(messages=[user("draw")], config=IMAGE_TURN)
    async with RemoteBackend(server, api_key=KEY) as backend:
        assert await backend.agenerate(request) == local.generate(request)
        events = [e async for e in backend.astream(request)]
        assert isinstance(events[-1], Done)


def test_capabilities_and_health(remote, local) -> None:
    assert remote.capabilities == local.capabilities
    assert remote.health()["status"] == "ok"


def test_refusals_then_a_valid_request_succeeds(server, remote, image) -> None:
    request = GenerationRequest(messages=[user("draw")], config=IMAGE_TURN)
    cases = [
        (lambda: RemoteBackend(server, api_key="wrong").generate(request), AuthenticationError, "unauthorized"),
        (lambda: RemoteBackend(server).generate(request), AuthenticationError, "unauthorized"),
    ]
    for call, error, code in cases:
        with pytest.raises(error) as info:
            call()
        assert info.value.status_code == 401 and info.value.code == code
        assert remote.generate(request).images

    oversized = _post(server, b'{"messages": "' + b"x" * 3_000_000 + b'"}')
    assert oversized.status_code == 413 and oversized.json()["error"]["code"] == "body_too_large"

    corrupt = _valid_body(image)
    corrupt["messages"][0]["parts"][1]["data"] = base64.b64encode(b"\x89PNG\r\n\x1a\nnot really").decode()
    bad_media = _post(server, corrupt)
    assert bad_media.status_code == 400 and bad_media.json()["error"]["code"] == "invalid_media"

    for malformed in (
        b"{not json",
        json.dumps({"messages": []}).encode(),
        json.dumps({"messages": [{"role": "robot"}]}).encode(),
    ):
        answer = _post(server, malformed)
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "invalid_schema"

    wrong_type = _post(server, {**_valid_body(), "config": {"image": {"steps": "many"}}})
    assert wrong_type.status_code == 422

    assert _post(server, _valid_body(image)).status_code == 200
    assert remote.generate(request).images


def test_client_errors_are_typed(server) -> None:
    client = RemoteBackend(server, api_key=KEY, max_retries=0)
    huge = GenerationRequest(messages=[user("x" * 900_000, "y" * 900_000, "z" * 900_000)])
    with pytest.raises(PayloadTooLargeError) as too_large:
        client.generate(huge)
    assert too_large.value.code == "body_too_large"
    # bodies the SDK itself would never build: sent raw, to check how the client types the answers
    with pytest.raises(UnprocessableEntityError) as info:
        client._call("POST", "/generate", {"messages": []})
    assert info.value.code == "invalid_schema"
    with pytest.raises(BadRequestError):
        client._call(
            "POST",
            "/generate",
            {
                **_valid_body(),
                "config": {"output_modality": "image"},
                "examples": [
                    {"inputs": [{"type": "image", "data": base64.b64encode(b"junk").decode()}], "outputs": ["x"]}
                ],
            },
        )


def _hold_the_model(url: str, started: threading.Event, steps: int) -> None:
    body = {**_valid_body(), "config": {**IMAGE_TURN, "image": {"steps": steps}}, "stream": True}
    with httpx.stream(
        "POST", f"{url}/v1/generate", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    ) as r:
        for line in r.iter_lines():
            if line.startswith("event: progress"):
                started.set()


def test_queue_full_gives_429_and_the_retry_succeeds(local) -> None:
    with running_server(local, api_key=KEY, max_queue=1, retry_after=1) as url:
        started = threading.Event()
        holder = threading.Thread(target=_hold_the_model, args=(url, started, 150))
        holder.start()
        assert started.wait(30)
        request = GenerationRequest(messages=[user("draw")], config=IMAGE_TURN)
        with pytest.raises(RateLimitError) as info:
            RemoteBackend(url, api_key=KEY, max_retries=0).generate(request)
        assert info.value.status_code == 429 and info.value.retry_after == 1
        began = time.monotonic()
        answer = RemoteBackend(url, api_key=KEY, max_retries=20, max_retry_wait=1).generate(request)
        assert answer.images and time.monotonic() - began >= 0.9  # it waited (Retry-After) and retried
        holder.join(60)


def test_a_client_dropped_mid_stream_does_not_wedge_the_server(local) -> None:
    long_turn = {**IMAGE_TURN, "image": {"steps": 300}}
    began = time.monotonic()
    local.generate(GenerationRequest(messages=[user("draw")], config=long_turn))
    full_decode = time.monotonic() - began
    with running_server(local, api_key=KEY, max_queue=1) as url:
        body = {**_valid_body(), "config": long_turn, "stream": True}
        headers = {"Authorization": f"Bearer {KEY}"}
        with httpx.stream("POST", f"{url}/v1/generate", json=body, headers=headers, timeout=60) as r:
            for line in r.iter_lines():
                if line.startswith("event: progress"):
                    break  # leave mid-decode
        dropped = time.monotonic()
        while local._lock.locked() or httpx.get(f"{url}/v1/health").json()["queued"]:
            assert time.monotonic() - dropped < full_decode / 2, "the abandoned generation kept running"
            time.sleep(0.02)
        request = GenerationRequest(messages=[user("draw")], config=IMAGE_TURN)
        assert RemoteBackend(url, api_key=KEY, max_retries=0).generate(request).images


def test_loading_gives_503_then_serves(local) -> None:
    gate = threading.Event()

    def slow_loader() -> LocalBackend:
        gate.wait(10)
        return local

    with running_server(slow_loader) as url:
        assert httpx.get(f"{url}/v1/health").status_code == 503
        with pytest.raises(ServiceUnavailableError) as info:
            RemoteBackend(url, max_retries=0).capabilities  # noqa: B018
        assert info.value.code == "loading"
        gate.set()
        assert (
            RemoteBackend(url, max_retries=10, max_retry_wait=0.2)
            .generate(GenerationRequest(messages=[user("draw")], config=IMAGE_TURN))
            .images
        )


def test_connection_errors_are_typed() -> None:
    from codi2_sdk import APIConnectionError

    with pytest.raises(APIConnectionError):
        RemoteBackend("http://127.0.0.1:9", max_retries=1, max_retry_wait=0.01).generate(
            GenerationRequest(messages=[user("hi")])
        )


def test_a_server_address_is_checked_when_the_backend_is_made(server) -> None:
    from codi2_sdk import InvalidRequestError

    for written, hint in [("localhost:8000", "did you mean 'http://localhost:8000'"), ("ftp://h", ""), ("http://", "")]:
        with pytest.raises(InvalidRequestError, match="an http:// or https:// address with a host") as refused:
            RemoteBackend(written)
        assert hint in str(refused.value)
    with_v1 = RemoteBackend(f"{server}/v1/", api_key=KEY)  # as OpenAI's clients are given it
    assert with_v1.base_url == server and with_v1.capabilities.model


def _as_a_newer_server(app):
    """The server's app, answering as a newer version might: every JSON object it sends, in bodies and in stream
    events, carries a field this SDK does not know."""

    def newer(value):
        if isinstance(value, dict):
            return {**{k: newer(v) for k, v in value.items()}, "added_later": 1}
        return [newer(v) for v in value] if isinstance(value, list) else value

    async def wrapped(scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(("/v1/capabilities", "/v1/generate")):
            return await app(scope, receive, send)

        async def rewrite(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message["headers"] if k.lower() != b"content-length"]
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and message.get("body"):
                text = message["body"].decode()
                if text.startswith("{"):
                    text = json.dumps(newer(json.loads(text)))
                else:  # server-sent events: rewrite each data line
                    lines = text.split("\n")
                    text = "\n".join(
                        "data: " + json.dumps(newer(json.loads(line[6:]))) if line.startswith("data: ") else line
                        for line in lines
                    )
                message = {**message, "body": text.encode()}
            await send(message)

        await app(scope, receive, rewrite)

    return wrapped


def test_a_newer_servers_added_fields_are_ignored_with_one_warning(local, caplog) -> None:
    """A client meets servers newer than itself: fields it does not know (in the capabilities, a message, its parts,
    stream events) are logged once and ignored, not fatal; what it knows is still checked."""
    with running_server(local, wrap=_as_a_newer_server) as url, caplog.at_level("WARNING"):
        remote = RemoteBackend(url)
        assert remote.capabilities == local.capabilities
        conv = Conversation(backend=remote)
        answer = conv.send("draw", config=IMAGE_TURN)
        assert answer == Conversation(backend=local).send("draw", config=IMAGE_TURN)
        events = list(Conversation(backend=remote).stream("draw", config=IMAGE_TURN))
        assert isinstance(events[-1], Done) and events[-1].message == answer
    warnings = [r.getMessage() for r in caplog.records if "does not know" in r.getMessage()]
    assert warnings and "added_later" in warnings[0] and "parts.0.added_later" in " ".join(warnings)
    assert len(warnings) == len(set(warnings))  # each field named once


def test_thread_default_shares_the_cpus_between_processes(monkeypatch) -> None:
    import os

    from codi2_sdk.server import ServerSettings

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert ServerSettings().torch_threads() == 4
    assert ServerSettings(processes_per_machine=2).torch_threads() == 2
    assert ServerSettings(processes_per_machine=8).torch_threads() == 1  # never zero
    assert ServerSettings(threads=3, processes_per_machine=8).torch_threads() == 3
    assert ServerSettings(max_batch_size=8).torch_threads() == 1  # batched requests compute from several threads
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert ServerSettings().torch_threads() == 1
    monkeypatch.setenv("CODI2_PROCESSES_PER_MACHINE", "2")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert ServerSettings().torch_threads() == 2
