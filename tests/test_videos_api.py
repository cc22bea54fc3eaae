"""The OpenAI Videos API as jobs on the server, driven by the real ``openai`` client against codi2-mini."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from server_fixtures import running_server

from codi2_sdk import Video, samples
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.mini.clips import probe_clip

# The openai client marks its videos methods deprecated (OpenAI shut its own Sora API down); the routes serve them.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")


@pytest.fixture(scope="module")
def url():
    with running_server(LocalBackend.from_pretrained("codi2-mini")) as url:
        yield url


def finished(client: openai.OpenAI, video_id: str) -> object:
    deadline = time.monotonic() + 300
    while True:
        job = client.videos.retrieve(video_id)
        if job.status in ("completed", "failed") or time.monotonic() > deadline:
            return job
        assert job.status in ("queued", "in_progress") and 0 <= job.progress <= 100
        time.sleep(0.2)


def read(content: bytes) -> tuple[str, str, str, str]:
    clip = probe_clip(Video.from_bytes(content).to_frames())
    assert clip is not None
    return clip.size, clip.colour, clip.shape, clip.motion


def test_a_clip_made_as_a_job_then_downloaded_listed_and_deleted(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="alice", max_retries=0)
    job = client.videos.create(model="codi2-mini", prompt="show a large red circle moving to the right.")
    assert job.object == "video" and job.status in ("queued", "in_progress", "completed")
    done = finished(client, job.id)
    assert done.status == "completed" and done.progress == 100 and float(done.seconds) > 0, done
    assert read(client.videos.download_content(job.id).content) == ("large", "red", "circle", "rightward")
    assert [v.id for v in client.videos.list()] == [job.id]
    other = openai.OpenAI(base_url=f"{url}/v1", api_key="bob", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        other.videos.retrieve(job.id)
    assert list(other.videos.list()) == []
    client.videos.delete(job.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(job.id)


def test_an_in_context_video_edit_shown_by_example_pairs(url: str) -> None:
    pairs = [
        ("a large red square moving to the right", "a large green square moving to the right"),
        ("a yellow circle growing", "a green circle growing"),
    ]
    files = [("input_reference", ("query.mp4", samples.clip("a small blue triangle moving to the left").data))]
    for before, after in pairs:
        files += [("example_before", ("b.mp4", samples.clip(before).data))]
        files += [("example_after", ("a.mp4", samples.clip(after).data))]
    headers = {"Authorization": "Bearer alice"}
    created = httpx.post(f"{url}/v1/videos", files=files, data={"seed": "0"}, headers=headers, timeout=60)
    assert created.status_code == 200, created.text
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="alice", max_retries=0)
    assert finished(client, created.json()["id"]).status == "completed"
    made = client.videos.download_content(created.json()["id"]).content
    assert read(made) == ("small", "green", "triangle", "leftward")


def test_bad_video_requests_get_clear_errors(url: str) -> None:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="alice", max_retries=0)
    with pytest.raises(openai.BadRequestError):
        client.videos.create(model="codi2-mini", prompt="")
    with pytest.raises(openai.BadRequestError):
        client.videos.create(model="codi2-mini", prompt="show a red circle.", size="big")  # type: ignore[arg-type]
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content("video_nothing")
