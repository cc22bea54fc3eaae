"""The OpenAI Videos API on the server, for ``client.videos``: ``POST /v1/videos`` starts a job (multipart, as the
client sends it), ``GET /v1/videos/{id}`` reports it (``queued``, ``in_progress`` with ``progress`` from the
diffusion steps, ``completed`` or ``failed``), ``GET /v1/videos/{id}/content`` downloads the MP4, ``GET /v1/videos``
lists and ``DELETE /v1/videos/{id}`` forgets.

A job takes a place in the server's queue when it is created (429 when the queue is full) and runs as the server's
other work does. ``prompt`` asks for a clip; ``input_reference`` (a clip) with ``example_before`` /
``example_after`` clip pairs (the same count, paired in order) asks for an in-context edit, shown rather than named.
Jobs are the caller's own (keyed by the bearer token's hash) and a finished clip is kept
``ServerSettings.stored_videos_seconds`` (at most ``stored_videos`` jobs).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ..config import GenerationConfig
from ..content import Part, Text, Video
from ..errors import Codi2Error, InvalidRequestError
from ..events import Done, GenerationRequest, Progress
from ..formats.openai_responses import new_id
from ..messages import Example, Message
from ._common import ErrorAnswer, log
from ._kept import KeptPerCaller
from ._state import ModelState, authorize, caller_key, model_state
from .openai_api import OpenAIRoute, model_name

__all__ = ["VideoJobs", "router"]

router = APIRouter(prefix="/v1", route_class=OpenAIRoute, dependencies=[Depends(authorize)])


@dataclass
class VideoJob:
    """One clip being made (or made)."""

    owner: str
    model: str
    prompt: str
    size: str
    id: str = field(default_factory=lambda: new_id("video"))
    created_at: int = field(default_factory=lambda: int(time.time()))
    status: str = "queued"
    progress: int = 0
    completed_at: int | None = None
    error: dict[str, str] | None = None
    clip: Video | None = None
    task: asyncio.Task[None] | None = None

    def view(self, keep_s: float) -> dict[str, Any]:
        """The job as OpenAI's ``Video`` object."""
        seconds = f"{self.clip.duration:g}" if self.clip is not None else "0"
        expires = self.completed_at + int(keep_s) if self.completed_at is not None else None
        return {
            "id": self.id, "object": "video", "model": self.model, "status": self.status, "progress": self.progress,
            "created_at": self.created_at, "completed_at": self.completed_at, "expires_at": expires,
            "prompt": self.prompt, "seconds": seconds, "size": self.size, "error": self.error,
            "remixed_from_video_id": None,
        }  # fmt: skip


class VideoJobs(KeptPerCaller[VideoJob]):
    """The server's video jobs, per caller, at most ``max_items`` (the oldest finished go first; a running one
    never) and each finished one kept ``keep_s`` seconds."""

    def __init__(self, max_items: int, keep_s: float) -> None:
        super().__init__(
            max_items,
            expired=lambda job: job.completed_at is not None and time.time() - job.completed_at > keep_s,
            may_go=lambda job: job.status in ("completed", "failed"),
        )
        self.keep_s = keep_s

    def add(self, job: VideoJob) -> None:
        if not self.put(job.owner, job.id, job):
            raise ErrorAnswer("queue_full", f"{len(self)} video jobs are already running; retry later")

    def job(self, owner: str, job_id: str) -> VideoJob:
        """The caller's job; 404 where there is none (or it expired)."""
        job = self.get(owner, job_id)
        if job is None:
            raise ErrorAnswer("not_found", f"no video {job_id!r} for this key (or it expired)")
        return job

    def remove(self, owner: str, job_id: str) -> None:
        """Forget the caller's job, cancelling it where it runs; 404 where there is none."""
        job = self.job(owner, job_id)
        if job.task is not None and not job.task.done():
            job.task.cancel()
        self.delete(owner, job_id)


def video_jobs(request: Request) -> VideoJobs:
    """The app's video jobs (a FastAPI dependency)."""
    jobs: VideoJobs = request.app.state.videos
    return jobs


async def _clips(form: Any, name: str) -> list[Video]:
    clips = []
    for upload in form.getlist(name):
        if isinstance(upload, str):
            raise InvalidRequestError(f"{name} must be a file (a clip)")
        clips.append(Video.from_bytes(await upload.read()))
    return clips


def _size_settings(size: str) -> dict[str, int]:
    width, _, height = size.partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise InvalidRequestError(f"size must be like '64x64', not {size!r}")
    return {"size": int(width)} if width == height else {"width": int(width), "height": int(height)}


async def _generation(request: Request, state: ModelState) -> tuple[GenerationRequest, str, str]:
    """The job's request from the multipart form: prompt, size, an input clip and example pairs."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ErrorAnswer("unsupported_media_type", "send the video request as multipart/form-data, as OpenAI's is")
    async with request.form(max_files=2 * state.settings.max_media_parts + 1) as form:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        query = await _clips(form, "input_reference")
        before, after = await _clips(form, "example_before"), await _clips(form, "example_after")
    if len(before) != len(after) or len(query) > 1:
        raise InvalidRequestError("send one input_reference and as many example_after clips as example_before ones")
    prompt, size = fields.get("prompt", "").strip(), fields.get("size", "")
    if not prompt and not (query and before):
        raise InvalidRequestError("say the clip in the prompt, or show an edit with example pairs and input_reference")
    parts: list[Part] = [*query, *([Text(prompt)] if prompt else [])]
    video = {"steps": int(fields["steps"])} if fields.get("steps", "").isdigit() else {}
    config = {"seed": int(fields["seed"]) if fields.get("seed", "").isdigit() else None, "output_modality": "video"}
    settings = GenerationConfig.model_validate({**config, "video": video | (_size_settings(size) if size else {})})
    examples = [Example(inputs=[b], outputs=[a]) for b, a in zip(before, after, strict=True)]
    generation = GenerationRequest(examples=examples, messages=[Message(role="user", parts=parts)], config=settings)
    return generation, prompt, size


async def _run(job: VideoJob, state: ModelState, generation: GenerationRequest, release: Any) -> None:
    """Make the clip, in the queue place the job took when it was created."""
    backend = state.ready()
    try:
        async with state.running:
            job.status = "in_progress"
            events = backend.astream(generation)
            try:
                async for event in events:
                    if isinstance(event, Progress) and event.modality == "video":
                        job.progress = min(99, round(100 * event.step / max(1, event.total)))
                    elif isinstance(event, Done):
                        if not event.message.videos:
                            raise InvalidRequestError("the model answered without a clip")
                        job.clip = event.message.videos[0]
            finally:
                await events.aclose()  # type: ignore[attr-defined]
        job.status, job.progress = "completed", 100
    except Codi2Error as exc:
        log.info("video %s failed: %s", job.id, exc)
        job.status, job.error = "failed", {"code": "model_error", "message": str(exc)}
    except Exception:
        log.exception("video %s failed", job.id)
        job.status, job.error = "failed", {"code": "internal_error", "message": "internal server error"}
    finally:
        job.completed_at = int(time.time())
        release()


@router.post("/videos")
async def create_video(
    request: Request, state: ModelState = Depends(model_state), jobs: VideoJobs = Depends(video_jobs)
) -> Response:
    """Start a video job; poll it with ``GET /v1/videos/{id}``."""
    state.ready()
    generation, prompt, size = await _generation(request, state)
    state.checked(generation)
    release = state.admit()
    job = VideoJob(owner=caller_key(request), model=model_name(state), prompt=prompt, size=size or "native")
    try:
        jobs.add(job)
    except ErrorAnswer:
        release()
        raise
    job.task = asyncio.create_task(_run(job, state, generation, release))
    return JSONResponse(job.view(jobs.keep_s))


@router.get("/videos")
async def list_videos(request: Request, jobs: VideoJobs = Depends(video_jobs), order: str = "desc") -> Response:
    """The caller's jobs, newest first unless ``order=asc``."""
    views = [job.view(jobs.keep_s) for job in jobs.of(caller_key(request))]
    views = views if order == "asc" else views[::-1]
    first, last = (views[0]["id"], views[-1]["id"]) if views else (None, None)
    return JSONResponse({"object": "list", "data": views, "first_id": first, "last_id": last, "has_more": False})


@router.get("/videos/{video_id}")
async def retrieve_video(video_id: str, request: Request, jobs: VideoJobs = Depends(video_jobs)) -> Response:
    """A job as it stands."""
    return JSONResponse(jobs.job(caller_key(request), video_id).view(jobs.keep_s))


@router.get("/videos/{video_id}/content")
async def download_video(
    video_id: str, request: Request, jobs: VideoJobs = Depends(video_jobs), variant: str = "video"
) -> Response:
    """The finished clip, as MP4 (``variant=video``; thumbnails are not made)."""
    job = jobs.job(caller_key(request), video_id)
    if variant != "video":
        raise InvalidRequestError(f"only variant 'video' is made, not {variant!r}")
    if job.clip is None:
        raise ErrorAnswer("not_found", f"video {video_id!r} is {job.status}; its content comes once it is completed")
    return Response(job.clip.data, media_type=job.clip.mime_type or "video/mp4")


@router.delete("/videos/{video_id}")
async def delete_video(video_id: str, request: Request, jobs: VideoJobs = Depends(video_jobs)) -> Response:
    """Forget a job (a running one is cancelled)."""
    jobs.remove(caller_key(request), video_id)
    return JSONResponse({"id": video_id, "object": "video.deleted", "deleted": True})
