"""Batching concurrent requests (issue 12): their LLM steps and UNet calls run together, and each request's
answer is the same bytes as when it is sent alone."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from server_fixtures import running_server

from codi2_sdk import GenerationRequest, Image, Message, RemoteBackend, user
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.mini.probes import probe_picture
from codi2_sdk.mini.world import Picture, render_picture
from codi2_sdk.model import CoDi2Model
from codi2_sdk.model.runtime.batching import StepBatcher


def hashes(message: Message) -> list[str]:
    return [p.text if p.type == "text" else p.sha256 for p in message.parts]  # type: ignore[union-attr]


def picture(item: Picture) -> Image:
    return Image.from_pil(render_picture(item, np.random.default_rng(0)))


@pytest.fixture(scope="module")
def mini_model() -> CoDi2Model:
    return CoDi2Model.from_pretrained("codi2-mini")


REQUESTS = [
    GenerationRequest(messages=[user("draw a large red circle on the left.")], config={"seed": 1}),
    GenerationRequest(messages=[user("draw a small blue square on the right.")], config={"seed": 2}),
    GenerationRequest(messages=[user("draw a large red circle on the left.")], config={"seed": 3}),
    GenerationRequest(
        messages=[user(picture(Picture("triangle", "green", "small", "left")), "what is this?")],
        config={"seed": 4, "text": {"temperature": 1.0}},
    ),
    GenerationRequest(
        messages=[user(picture(Picture("circle", "yellow", "large", "right")), "what does it sound like?")],
        config={"seed": 5},
    ),
]


def test_a_request_gives_the_same_bytes_alone_and_batched_through_the_server(mini_model) -> None:
    # caches on: the batched requests reuse the prompts' KV prefixes that the lone ones left
    backend = LocalBackend(mini_model, max_batch_size=4)
    with running_server(backend, max_batch_size=4) as url:
        with RemoteBackend(url) as remote:
            alone = [hashes(remote.generate(r)) for r in REQUESTS]
        assert backend.batcher.items == backend.batcher.calls  # one request at a time: groups of one

        async def together() -> list[Message]:
            async with RemoteBackend(url) as client:
                return await asyncio.gather(*(client.agenerate(r) for r in REQUESTS))

        calls, items, hits = backend.batcher.calls, backend.batcher.items, backend.prefix_cache.hits
        batched = [hashes(m) for m in asyncio.run(together())]
    assert batched == alone
    assert backend.prefix_cache.hits > hits
    assert backend.batcher.items - items > 1.5 * (backend.batcher.calls - calls)  # they did run together


def test_batched_answers_are_right(mini_model) -> None:
    backend = LocalBackend(mini_model, max_batch_size=3)
    asked = [Picture("circle", "red", "large", "left"), Picture("square", "blue", "small", "right")] * 2
    results: dict[int, Message] = {}

    def draw(i: int) -> None:
        p = asked[i]
        results[i] = backend.generate(
            GenerationRequest(
                messages=[user(f"draw a {p.size} {p.colour} {p.shape} on the {p.position}.")],
                config={"seed": i, "output_modality": "image"},
            )
        )

    threads = [threading.Thread(target=draw, args=(i,)) for i in range(len(asked))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, p in enumerate(asked):
        assert probe_picture(results[i].parts[0].to_pil()) == p  # type: ignore[union-attr]


def test_closing_a_stream_midway_lets_the_others_finish(mini_model) -> None:
    backend = LocalBackend(mini_model, max_batch_size=2, cache_mb=0, media_cache_items=0)
    request = GenerationRequest(messages=[user("draw a large red circle on the left.")], config={"seed": 1})
    expected = hashes(backend.generate(request))
    done: list[Message] = []
    other = threading.Thread(target=lambda: done.append(backend.generate(request)))
    stream = backend.stream(request)
    next(stream)  # the closed one is running when the other starts
    other.start()
    for _ in range(3):
        next(stream)
    stream.close()
    other.join(timeout=60)
    assert not other.is_alive() and hashes(done[0]) == expected


def test_a_failing_step_fails_every_request_in_its_group() -> None:
    batcher = StepBatcher(max_batch_size=3, max_wait_ms=10_000)
    widths: list[int] = []

    def step(items: list[int], width: int) -> list[int]:
        widths.append(width)
        if -1 in items:
            raise RuntimeError("boom")
        return [x * 10 for x in items]

    results: dict[int, object] = {}
    started = threading.Barrier(3)

    def work(x: int) -> None:
        with batcher.generation():
            started.wait()  # all three are running before any reaches the step
            with batcher.computing():
                try:
                    results[x] = batcher.run("step", step, x)
                except RuntimeError as exc:
                    results[x] = exc

    threads = [threading.Thread(target=work, args=(x,)) for x in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {1: 10, 2: 20, 3: 30} and widths == [3]  # one call for the three, at the full width
    started = threading.Barrier(2)
    threads = [threading.Thread(target=work, args=(x,)) for x in (4, -1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert isinstance(results[4], RuntimeError) and isinstance(results[-1], RuntimeError)


def test_batching_is_off_by_default_and_sizes_are_checked(mini_model) -> None:
    assert LocalBackend(mini_model).batcher is None
    with pytest.raises(ValueError, match="max_batch_size"):
        StepBatcher(max_batch_size=0)


def test_the_full_scale_twin_batches_too() -> None:
    """The paper's classes (Llama with its LoRA, unCLIP, AudioLDM2, Zeroscope) under batching: LLM steps go
    together; the pipelines' own loops run their UNet calls one request at a time."""
    from codi2_sdk.testing.twins import full_scale_twin

    backend = LocalBackend(full_scale_twin(seed=0), max_batch_size=3)
    requests = [
        GenerationRequest(
            messages=[user("show a red circle.")],
            config={"seed": i, "output_modality": modality, "text": {"max_new_tokens": 3}},
        )
        for i, modality in enumerate(["image", "audio", "text"])
    ]
    alone = [hashes(backend.generate(r)) for r in requests]
    results: dict[int, list[str]] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, hashes(backend.generate(requests[i]))))
        for i in range(len(requests))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert [results[i] for i in range(len(requests))] == alone
