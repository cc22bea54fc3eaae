"""The OpenAI-compatible endpoints, driven by the real ``openai`` client against a real uvicorn server."""

from __future__ import annotations

import base64

import httpx
import openai
import pytest
from server_fixtures import running_server

from codi2_sdk import Audio, Image, samples
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.formats import to_openai_parts
from codi2_sdk.mini.probes import probe_picture, probe_sound


@pytest.fixture(scope="module")
def client():
    backend = LocalBackend.from_pretrained("codi2-mini")
    with running_server(backend, api_key="sesame") as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="sesame", max_retries=0)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["codi2-mini"]


def test_chat_completion_reads_a_picture_and_answers_in_text(client: openai.OpenAI) -> None:
    picture = samples.picture("a large green square on the left")
    content = [*to_openai_parts([picture]), {"type": "text", "text": "what is this?"}]  # as codi2-mini was taught
    reply = client.chat.completions.create(model="codi2-mini", messages=[{"role": "user", "content": content}], seed=0)
    assert reply.object == "chat.completion" and reply.model == "codi2-mini"
    assert reply.choices[0].message.content == "a large green square on the left."
    assert reply.choices[0].finish_reason == "stop"


def test_streaming_chunks_add_up_to_the_whole_answer(client: openai.OpenAI) -> None:
    picture = samples.picture("a small red circle on the right")
    messages = [{"role": "user", "content": [*to_openai_parts([picture]), {"type": "text", "text": "what is this?"}]}]
    chunks = list(client.chat.completions.create(model="codi2-mini", messages=messages, seed=0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "a small red circle on the right." and chunks[-1].choices[0].finish_reason == "stop"


def test_audio_answers_come_in_openais_audio_shape(client: openai.OpenAI) -> None:
    picture = samples.picture("a large blue triangle in the center")
    reply = client.chat.completions.create(
        model="codi2-mini",
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        messages=[
            {
                "role": "user",
                "content": [*to_openai_parts([picture]), {"type": "text", "text": "what does it sound like?"}],
            }
        ],
        seed=0,
    )
    clip = Audio.from_bytes(base64.b64decode(reply.choices[0].message.audio.data))
    heard = probe_sound(clip.to_numpy(), clip.sample_rate)
    assert heard is not None and (heard.note, heard.timbre, heard.beeps) == ("sol", "sawtooth", 2)


def test_image_generation_and_edits(client: openai.OpenAI) -> None:
    made = client.images.generate(
        model="codi2-mini", prompt="draw a small yellow diamond on the right.", n=2, extra_body={"seed": 0}
    )
    pictures = [probe_picture(Image.from_bytes(base64.b64decode(d.b64_json)).to_pil()) for d in made.data]
    assert len(pictures) == 2 and all(p is not None and p.colour == "yellow" for p in pictures)

    def png(description: str) -> tuple[str, bytes, str]:
        return (f"{description}.png", samples.picture(description).data, "image/png")

    instructed = client.images.edit(
        model="codi2-mini", image=png("a small cyan circle on the left"), prompt="make it red.", extra_body={"seed": 0}
    )
    seen = probe_picture(Image.from_bytes(base64.b64decode(instructed.data[0].b64_json)).to_pil())
    assert seen is not None and (seen.colour, seen.shape, seen.size) == ("red", "circle", "small")

    # In-context pairs are extra multipart files, which the openai client's images.edit does not send: httpx does.
    files = [
        ("image", png("a small cyan circle on the left")),
        ("example_before", png("a small red square on the right")),
        ("example_after", png("a large red square on the right")),
        ("example_before", png("a small blue triangle in the center")),
        ("example_after", png("a large blue triangle in the center")),
    ]
    answer = httpx.post(
        f"{client.base_url}images/edits",
        files=files,
        data={"seed": "0"},
        headers={"Authorization": "Bearer sesame"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    result = Image.from_bytes(base64.b64decode(answer.json()["data"][0]["b64_json"]))
    seen = probe_picture(result.to_pil())
    assert seen is not None and (seen.size, seen.colour, seen.shape) == ("large", "cyan", "circle")


def test_errors_have_openais_shape_and_statuses(client: openai.OpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        openai.OpenAI(base_url=str(client.base_url), api_key="wrong", max_retries=0).models.list()
    assert refused.value.status_code == 401 and refused.value.body["type"] == "authentication_error"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="codi2-mini", messages=[{"role": "user", "content": "describe it please"}])
    assert "does not know the words" in bad.value.message and bad.value.code == "invalid_request"
    with pytest.raises(openai.BadRequestError, match="the last user message is empty"):
        client.chat.completions.create(model="codi2-mini", messages=[{"role": "user", "content": " "}])
    with pytest.raises(openai.BadRequestError, match="prompt"):
        client.images.generate(model="codi2-mini", prompt="  ")
    # what the server cannot honour is refused, not ignored: an agent would wait for tool calls that never come
    hello = [{"role": "user", "content": "what is this?"}]
    weather = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    for options, says in (
        ({"tools": [weather]}, "'tools' cannot be served: the model does not call functions"),
        ({"n": 2}, "'n' must be 1"),
        ({"stop": ["."]}, "'stop' cannot be served"),
        ({"response_format": {"type": "json_object"}}, "response_format 'json_object' cannot be served"),
    ):
        with pytest.raises(openai.BadRequestError, match=says):
            client.chat.completions.create(model="codi2-mini", messages=hello, **options)  # type: ignore[call-overload]
    reply = client.chat.completions.create(model="codi2-mini", messages=hello, n=1, response_format={"type": "text"})
    assert reply.choices[0].message.content  # their plain values are fine


def test_modalities_ask_for_a_picture_or_a_clip_as_vllm_omni_reads_them(client: openai.OpenAI) -> None:
    from codi2_sdk.mini.clips import probe_clip

    for words, modality, kind in (
        ("draw a large red circle on the left.", "image", "image_url"),
        ("show a large red circle moving to the right.", "video", "video_url"),
    ):
        reply = client.chat.completions.create(
            model="codi2-mini", messages=[{"role": "user", "content": words}], seed=0, modalities=["text", modality]
        )
        parts = reply.choices[0].message.content
        assert isinstance(parts, list), parts
        media = [p for p in parts if p["type"] == kind]
        assert len(media) == 1, parts
        data = base64.b64decode(media[0][kind]["url"].split(",", 1)[1])
        if modality == "image":
            seen = probe_picture(Image.from_bytes(data).to_pil())
            assert seen is not None and (seen.size, seen.colour, seen.shape, seen.position) == (
                "large", "red", "circle", "left"
            )  # fmt: skip
        else:
            from codi2_sdk import Video

            clip = probe_clip(Video.from_bytes(data).to_frames())
            assert clip is not None and (clip.colour, clip.shape, clip.motion) == ("red", "circle", "rightward"), clip
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="codi2-mini", messages=[{"role": "user", "content": "hi"}], modalities=["image", "audio"]
        )


def test_a_generation_that_breaks_mid_stream_ends_each_stream_with_an_error_and_frees_its_place() -> None:
    from codi2_sdk import TextDelta
    from codi2_sdk.testing import FunctionBackend

    def breaking(request):
        yield TextDelta(text="half an ")
        raise RuntimeError("a bug in the model code")

    with running_server(FunctionBackend(stream_fn=breaking), max_queue=1) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0)
        for _ in range(2):  # a queue of one: the second round runs only if the first gave its place back
            stream = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
            with pytest.raises(openai.APIError, match="internal server error"):
                list(stream)
            events = list(client.responses.create(model="m", input="hi", stream=True))
            assert [e.type for e in events] == [
                "response.created",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "error",
            ]
            assert events[-1].code == "internal_error" and events[-1].message == "internal server error"
        assert httpx.get(f"{url}/v1/health").json()["queued"] == 0
