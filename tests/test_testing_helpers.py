"""codi2_sdk.testing: the fakes an application's own tests use."""

from __future__ import annotations

import pytest

from codi2_sdk import Conversation, Done, Image, MediaDone, ModelError, Progress, TextDelta
from codi2_sdk.testing import (
    FunctionBackend,
    ScriptedBackend,
    block_model_loading,
    fake_audio,
    fake_image,
    progress_steps,
)


def test_function_backend_answers_from_the_request_and_records_it() -> None:
    backend = FunctionBackend(lambda r: [f"{len(r.examples)} examples, then:", r.messages[-1].images[0]])
    conv = Conversation(backend=backend)
    conv.add_example(fake_image(color="red"), fake_image(color="blue"))
    picture = fake_image(color="green")
    answer = conv.send(picture, "make it blue.")
    assert answer.text == "1 examples, then:" and answer.images == [picture]
    assert backend.requests[0].messages[-1].text == "make it blue." and len(conv.history) == 2


def test_stream_function_gives_progress_text_and_media() -> None:
    clip = fake_audio(seconds=0.25)

    def stream(request):
        yield "here"
        yield from progress_steps("audio", 3, part_index=1)
        yield clip

    events = list(Conversation(backend=FunctionBackend(stream_fn=stream)).stream("play"))
    assert [type(e) for e in events] == [TextDelta, Progress, Progress, Progress, MediaDone, Done]
    assert events[-1].message.audios == [clip]  # type: ignore[union-attr]
    # generate() works from the stream function too
    assert Conversation(backend=FunctionBackend(stream_fn=stream)).send("play").audios == [clip]


def test_typed_errors_pass_through_and_leave_the_conversation_unchanged() -> None:
    def fail(request):
        raise ModelError("decoder out of memory")

    conv = Conversation(backend=FunctionBackend(fail))
    with pytest.raises(ModelError, match="out of memory"):
        conv.send("hi")
    assert conv.history == []


def test_scripted_backend_runs_out_clearly() -> None:
    backend = ScriptedBackend(["one"])
    conv = Conversation(backend=backend)
    assert conv.send("a").text == "one" and backend.remaining == 0
    with pytest.raises(ModelError, match="no answer left"):
        conv.send("b")


def test_fake_media_are_valid() -> None:
    image, clip = fake_image(20, 10), fake_audio(0.5, sample_rate=8000)
    assert isinstance(image, Image) and (image.width, image.height) == (20, 10)
    assert clip.sample_rate == 8000 and abs(clip.duration - 0.5) < 1e-3


def test_blocked_model_loading_fails_fast() -> None:
    import codi2_sdk.backends as backends

    with block_model_loading(), pytest.raises(ModelError, match="blocked"):
        Conversation().send("hi")
    assert backends.ALLOW_MODEL_LOADING
