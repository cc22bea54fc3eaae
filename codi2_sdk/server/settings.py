"""Server settings: bind address, key, and limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..errors import invalid_request

if TYPE_CHECKING:
    from ..backends.local import LocalBackend

__all__ = ["ServerSettings"]


class ServerSettings(BaseSettings):
    """How the server runs; each field can also come from an environment variable ``CODI2_<FIELD>``.

    The API key, when set, must be sent as ``Authorization: Bearer <key>`` on every call but health.
    """

    model_config = SettingsConfigDict(env_prefix="CODI2_", extra="forbid")

    def __init__(self, **values: Any) -> None:
        """Settings from ``values``, then ``CODI2_*`` environment variables, then the defaults.

        Raises:
            InvalidRequestError: a value out of range or of the wrong type, naming the field (and where it came from).
        """
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise invalid_request(exc, "server settings (options, or CODI2_* environment variables)") from None

    model: str = "codi2-mini"
    """Checkpoint to serve: a name shipped in the package, a folder, or a repo id in the local Hugging Face cache."""
    host: str = "127.0.0.1"
    """Bind address; the default only accepts connections from this machine."""
    port: int = Field(8000, ge=0, le=65535)
    api_key: SecretStr | None = None
    max_body_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    """Largest request body; larger ones get 413 before they are read."""
    max_queue: int = Field(8, ge=1)
    """Most requests admitted at once (running or waiting for the model); more get 429."""
    max_concurrency: int = Field(1, ge=1)
    """Requests the model works on at the same time (one for a single in-process model)."""
    retry_after: int = Field(1, ge=0)
    """Seconds a client is told to wait (Retry-After) on 429 and 503."""
    max_media_parts: int = Field(32, ge=0)
    """Most images and audio clips in one request (examples included); more get 413 before any is decoded."""
    stored_responses: int = Field(1000, ge=0)
    """Responses kept for ``previous_response_id`` and ``GET /v1/responses/{id}`` (each caller's own; 0 keeps none)."""
    stored_responses_mb: float = Field(256.0, ge=0)
    """Memory the kept responses may take, media included (the oldest go first)."""
    stored_responses_seconds: float = Field(3600.0, gt=0)
    """How long a kept response stays."""
    stored_videos: int = Field(100, ge=1)
    """Video jobs kept at once (``/v1/videos``), running and finished; the oldest finished go first."""
    stored_videos_seconds: float = Field(3600.0, gt=0)
    """How long a finished clip stays downloadable."""
    max_parts: int = Field(1024, ge=1)
    """Most parts (text and media) in one request, examples included; more get 400 before any part is checked."""
    max_request_pixels: int = Field(4 * 4096 * 4096, ge=1)
    """Most image pixels in one request, summed from the images' headers before decoding; more get 413."""
    max_request_audio_seconds: float = Field(1200.0, gt=0)
    """Most seconds of audio in one request, summed from the clips' headers before decoding; more get 413."""
    parse_workers: int = Field(2, ge=1, le=64)
    """Bodies parsed (and their media checked) at once, each in a worker thread; more wait their turn."""
    threads: int | None = Field(None, ge=1)
    """Torch CPU threads for the model; ``None``: ``OMP_NUM_THREADS`` if set, else 1 with batching (its requests
    compute from their own threads, and OpenMP teams of several live threads slow each other), else the CPUs
    this process may use divided by ``processes_per_machine``."""
    processes_per_machine: int = Field(1, ge=1)
    """How many model processes share this machine's CPUs (server processes, Ray replicas): each takes its
    share of threads, as OpenMP threads of two processes that each take every CPU spin against each other."""
    ui: bool | None = None
    """Serve the web chat page at ``/ui``; ``None``: when Gradio is installed (the ``ui`` extra)."""
    cache_mb: float = Field(256.0, ge=0)
    """Memory for the KV caches of recent prompts (a conversation's next turn prefills only what is new)."""
    max_batch_size: int = Field(1, ge=1, le=256)
    """Concurrent requests whose LLM steps and diffusion steps run in one forward; 1 turns batching off. With
    batching, this many requests run at once (whatever ``max_concurrency`` says), and each step runs at this
    width, padded when fewer requests are there: a request's answer then does not depend on the others."""
    max_wait_ms: float = Field(10.0, ge=0)
    """With batching, the longest a step waits for a request whose reader is busy with its last event."""
    compile: bool = False
    """Decode compiled over a static cache (``torch.compile``; CUDA graphs on a GPU), the LoRA merged: faster steps
    after a first request that compiles; cached prompt prefixes are copied in; batched steps stay eager."""
    compile_decoders: bool = False
    """The decoders' UNets through ``torch.compile``: faster diffusion steps on a GPU after a first decode of each
    size that compiles (tens of seconds)."""
    channels_last: bool = False
    """The decoders' convolutions in channels-last layout (faster on a GPU's tensor cores, often slower on a CPU)."""
    merge_lora: bool = False
    """Fold the checkpoint's LoRA into the LLM's weights when loading it: the same answers within float tolerance,
    decoded faster (``tools/bench/merged_lora.py`` measures it); the shipped goldens are the unmerged model's."""

    def concurrency(self) -> int:
        """How many admitted requests the model works on at once."""
        return max(self.max_concurrency, self.max_batch_size)

    def load_backend(self) -> LocalBackend:
        """The served model, loaded in this process with these settings' caches and batching."""
        from ..backends.local import LocalBackend

        return LocalBackend.from_pretrained(
            self.model,
            cache_mb=self.cache_mb,
            max_batch_size=self.max_batch_size,
            max_wait_ms=self.max_wait_ms,
            merge_lora=self.merge_lora,
            compile=self.compile,
            compile_decoders=self.compile_decoders,
            channels_last=self.channels_last,
        )

    def torch_threads(self) -> int:
        """The thread count the model should use (see :attr:`threads`)."""
        import os

        if self.threads is not None:
            return self.threads
        if os.environ.get("OMP_NUM_THREADS", "").isdigit():
            return max(1, int(os.environ["OMP_NUM_THREADS"]))
        if self.max_batch_size > 1:
            return 1
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, cpus // self.processes_per_machine)
