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


def test_answer_differences_compares_answers_by_content() -> None:
    import doctest

    import numpy as np
    import PIL.Image

    from codi2_sdk import Audio, assistant
    from codi2_sdk.testing import answer_differences, compare

    assert doctest.testmod(compare).failed == 0
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    picture = Image.from_pil(PIL.Image.fromarray(pixels))
    nudged = Image.from_pil(
        PIL.Image.fromarray(np.clip(pixels.astype(int) + rng.integers(-1, 2, pixels.shape), 0, 255).astype(np.uint8))
    )
    assert answer_differences(assistant("a", picture), assistant("a", nudged)) == []  # about 50 dB
    other = Image.from_pil(PIL.Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)))
    (line,) = answer_differences(assistant("a", picture), assistant("a", other))
    assert line.startswith("part 1: image at") and "dB PSNR" in line
    assert answer_differences([picture], [fake_image(16, 16)]) == [
        "part 0: image of shape (32, 32, 3), wanted (16, 16, 3)"
    ]
    assert answer_differences(["a", picture], [picture]) == ["parts ['text', 'image'], wanted ['image']"]
    tone = fake_audio(seconds=0.25)
    quieter = Audio.from_array(tone.to_numpy() * 0.9, sample_rate=tone.sample_rate)
    assert answer_differences([tone], [tone]) == []
    assert "dB SNR" in answer_differences([quieter], [tone])[0]  # 20 dB
    assert answer_differences([quieter], [tone], min_snr_db=15) == []
