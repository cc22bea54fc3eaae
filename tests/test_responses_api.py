"""The OpenAI Responses API, driven by the real ``openai`` client against a real server on codi2-mini: plain and
streamed answers, a conversation the server keeps across turns, each key's responses its own."""

from __future__ import annotations

import base64
import io
import threading

import openai
import PIL.Image
import pytest
from server_fixtures import running_server

from codi2_sdk import samples
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.formats._common import data_url
from codi2_sdk.mini.probes import probe_picture

DRAW = {"tools": [{"type": "image_generation"}], "tool_choice": {"type": "image_generation"}}


@pytest.fixture(scope="module")
def url():
    with running_server(LocalBackend.from_pretrained("codi2-mini"), stored_responses=50) as url:
        yield url


def client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def picture_of(response) -> tuple[str, str, str, str]:  # type: ignore[no-untyped-def]
    calls = [item for item in response.output if item.type == "image_generation_call"]
    assert len(calls) == 1, response.output
    seen = probe_picture(PIL.Image.open(io.BytesIO(base64.b64decode(calls[0].result))))
    assert seen is not None
    return seen.size, seen.colour, seen.shape, seen.position


def test_a_picture_in_and_text_out(url: str) -> None:
    picture = samples.picture("a large green square on the left")
    content = [{"type": "input_image", "image_url": data_url(picture)}, {"type": "input_text", "text": "what is this?"}]
    response = client(url, "alice").responses.create(model="codi2-mini", input=[{"role": "user", "content": content}])
    assert response.status == "completed" and response.id.startswith("resp_")
    assert "green" in response.output_text and "square" in response.output_text, response.output_text


def test_streamed_events_add_up_to_the_completed_response(url: str) -> None:
    picture = samples.picture("a small red circle on the right")
    content = [{"type": "input_image", "image_url": data_url(picture)}, {"type": "input_text", "text": "what is this?"}]
    stream = client(url, "alice").responses.create(
        model="codi2-mini", input=[{"role": "user", "content": content}], stream=True, store=False
    )
    events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text == "a small red circle on the right."
    with pytest.raises(openai.NotFoundError):  # store=False kept nothing
        client(url, "alice").responses.retrieve(events[-1].response.id)


def test_a_conversation_kept_by_the_server_across_three_turns(url: str) -> None:
    alice = client(url, "alice")
    first = alice.responses.create(model="codi2-mini", input="draw a small yellow square on the left.", **DRAW)
    assert picture_of(first) == ("small", "yellow", "square", "left")
    second = alice.responses.create(
        model="codi2-mini", input="make it blue.", previous_response_id=first.id, **DRAW
    )  # the picture made in turn 1, edited
    assert picture_of(second) == ("small", "blue", "square", "left")
    third = alice.responses.create(
        model="codi2-mini", input="move it to the right.", previous_response_id=second.id, **DRAW
    )
    assert picture_of(third) == ("small", "blue", "square", "right")
    assert alice.responses.retrieve(second.id).output[0].result == second.output[0].result
    # another key can neither read nor continue alice's conversation
    bob = client(url, "bob")
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="codi2-mini", input="make it red.", previous_response_id=first.id)
    alice.responses.delete(third.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(third.id)


def test_two_clients_continuing_one_response_at_once_branch_without_mixing(url: str) -> None:
    alice = client(url, "alice")
    first = alice.responses.create(model="codi2-mini", input="draw a large red circle in the center.", **DRAW)
    answers: dict[str, object] = {}

    def continue_with(colour: str) -> None:
        answers[colour] = client(url, "alice").responses.create(
            model="codi2-mini", input=f"make it {colour}.", previous_response_id=first.id, **DRAW
        )

    threads = [threading.Thread(target=continue_with, args=(c,)) for c in ("blue", "green")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert picture_of(answers["blue"])[1] == "blue" and picture_of(answers["green"])[1] == "green"
    assert answers["blue"].id != answers["green"].id  # type: ignore[attr-defined]
    assert picture_of(alice.responses.retrieve(first.id)) == ("large", "red", "circle", "center")


def test_bad_requests_get_openais_error_shape(url: str) -> None:
    alice = client(url, "alice")
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="codi2-mini", input="hello", previous_response_id="resp_nothing")
    with pytest.raises(openai.BadRequestError) as refused:
        alice.responses.create(model="codi2-mini", input=[{"role": "user", "content": [{"type": "input_video"}]}])
    assert refused.value.request_id
    with pytest.raises(openai.BadRequestError):
        alice.responses.create(
            model="codi2-mini", input="hello", store=False, stream=False, extra_body={"modalities": ["image", "audio"]}
        )
    weather = {"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": False}
    with pytest.raises(openai.BadRequestError, match="a tool of type 'function' cannot be served"):
        alice.responses.create(model="codi2-mini", input="hello", tools=[weather])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError, match=r"text\.format 'json_object' cannot be served"):
        alice.responses.create(model="codi2-mini", input="hello", text={"format": {"type": "json_object"}})
