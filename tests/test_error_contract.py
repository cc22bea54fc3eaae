"""One failure, one ``except``: the same error class whether the model runs in-process or behind the server,
streamed or not (the error contract of codi2_sdk.errors.ERROR_CODES)."""

from __future__ import annotations

import pytest
from server_fixtures import running_server

from codi2_sdk import (
    Capabilities,
    Codi2Error,
    Conversation,
    InvalidMediaError,
    InvalidRequestError,
    MediaTooLargeError,
    ModelError,
    RemoteBackend,
)
from codi2_sdk.errors import ERROR_CODES, error_code_of
from codi2_sdk.testing import FunctionBackend

# the failure -> the class a caller catches on every path
FAILURES: dict[str, tuple[Codi2Error, type[Codi2Error]]] = {
    "invalid_request": (InvalidRequestError("the model cannot do that"), InvalidRequestError),
    "invalid_media": (InvalidMediaError("the picture is corrupt"), InvalidMediaError),
    "media_too_large": (MediaTooLargeError("the clip is too long"), MediaTooLargeError),
    "model_error": (ModelError("the decoder failed"), ModelError),
}


def failing(request):
    raise FAILURES[request.messages[-1].text][0]


@pytest.fixture(scope="module")
def backend() -> FunctionBackend:
    return FunctionBackend(failing, capabilities=Capabilities(model="failing", output_modalities=["text", "image"]))


@pytest.fixture(scope="module")
def url(backend):
    with running_server(backend) as url:
        yield url


def paths(backend, url):
    remote = RemoteBackend(url, max_retries=2, max_retry_wait=0.05)
    return {
        "local send": lambda turn, cfg: Conversation(backend=backend).send(turn, config=cfg),
        "local stream": lambda turn, cfg: list(Conversation(backend=backend).stream(turn, config=cfg)),
        "remote send": lambda turn, cfg: Conversation(backend=remote).send(turn, config=cfg),
        "remote stream": lambda turn, cfg: list(Conversation(backend=remote).stream(turn, config=cfg)),
    }


@pytest.mark.parametrize("name", sorted(FAILURES))
def test_a_failure_is_caught_by_the_same_class_on_all_four_paths(backend, url, name: str) -> None:
    error, expected = FAILURES[name]
    assert error_code_of(error) == name
    for path, call in paths(backend, url).items():
        before = len(backend.requests)
        conv_error = None
        try:
            call(name, None)
        except Codi2Error as exc:
            conv_error = exc
        assert isinstance(conv_error, expected), (path, conv_error)
        assert str(error) in str(conv_error), path
        if path.startswith("remote"):
            assert getattr(conv_error, "code", None) == name, path
            assert conv_error.status_code == ERROR_CODES[name].status, path  # type: ignore[union-attr]
        # deterministic failures are not retried: the backend saw the request once
        assert len(backend.requests) == before + 1, path


def test_refusals_before_the_model_are_the_same_class_on_all_four_paths(backend, url) -> None:
    for call in paths(backend, url).values():
        with pytest.raises(InvalidRequestError, match="cannot write audio"):
            call("invalid_request", {"output_modality": "audio"})  # the backend's capabilities refuse it
        with pytest.raises(InvalidRequestError, match=r"image\.steps"):
            call("invalid_request", {"image": {"steps": 0}})  # a pydantic range, with the field's path


def _logged_ids(caplog) -> set[str]:
    """The request ids in the server's log lines."""
    words = (word.strip(":,()") for record in caplog.records for word in record.getMessage().split())
    return {word for word in words if word.startswith("req_")}


def test_every_error_a_client_sees_carries_the_request_id_the_server_logged(backend, url, caplog) -> None:
    import httpx
    import openai

    caplog.set_level("INFO", logger="codi2_sdk.server")
    remote = RemoteBackend(url, max_retries=0)
    seen = []
    for call in (
        lambda: Conversation(backend=remote).send("invalid_media"),  # an error answer
        lambda: list(Conversation(backend=remote).stream("model_error")),  # an error inside a stream
        lambda: remote._call("GET", "/no-such-endpoint"),  # routing's own refusal
    ):
        with pytest.raises(Codi2Error) as caught:
            call()
        assert caught.value.request_id and caught.value.request_id.startswith("req_"), caught.value
        seen.append(caught.value.request_id)
    assert caught.value.status_code == 404 and caught.value.body["error"]["code"] == "not_found"
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model="failing", messages=[{"role": "user", "content": "invalid_request"}])
    seen.append(refused.value.request_id)
    assert len(set(seen)) == 4 and set(seen) <= _logged_ids(caplog), (seen, caplog.text)
    # a successful answer is named too, and a caller's own plain id is kept
    answer = httpx.get(f"{url}/v1/health", headers={"x-request-id": "trace-42"})
    assert answer.headers["x-request-id"] == "trace-42"
    hostile = httpx.get(f"{url}/v1/health", headers={"x-request-id": "a b\tc" + "x" * 300})
    assert hostile.headers["x-request-id"].startswith("req_")
