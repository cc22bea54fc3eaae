"""What the decoders over whole diffusers pipelines share: running a pipeline a step at a time, loading
and saving a pipeline folder, and the output projector from a feature vector to a conditioning sequence."""

from __future__ import annotations

import contextlib
import inspect
import json
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import load_file, save_file
from torch import nn

from ...errors import ModelError, ModelNotFoundError
from .._libraries import quiet_loading
from ..parts import DiffusionDecoder

__all__ = [
    "PipelineDecoder",
    "PipelineParts",
    "QueryProjector",
    "fit_tokens",
    "load_pipeline",
    "masked_mse",
    "step_callback",
    "stream_pipeline",
]


class _Cancelled(Exception):
    pass


def step_callback(pipeline: Any, on_step: Callable[[int], None]) -> dict[str, Any]:
    """The keyword arguments that make a call of ``pipeline`` report each finished step to ``on_step(step)``.

    ``callback_on_step_end`` where the pipeline's class takes it (current diffusers), else the legacy
    ``callback``/``callback_steps=1``: in diffusers 0.42 SD-2.1 unCLIP's, AudioLDM2's and Zeroscope's pipeline
    classes still take only the legacy pair. To stop, ``on_step`` raises: diffusers' ``interrupt`` flag (where a
    class has it) skips the remaining steps but still decodes the latents, which a cancelled decode does not want.
    """
    if "callback_on_step_end" in inspect.signature(pipeline.__call__).parameters:

        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            on_step(step)
            return {}

        return {"callback_on_step_end": on_step_end}
    return {"callback": lambda step, *_: on_step(step), "callback_steps": 1}


def stream_pipeline(pipeline: Any, run: Callable[[dict[str, Any]], Any], name: str) -> Generator[int, None, Any]:
    """Run a call of a diffusers ``pipeline`` and yield each step number as it finishes.

    ``run(callbacks)`` calls the pipeline with ``**callbacks`` (see :func:`step_callback`) and returns what the
    generator should return. The pipeline runs in a greenlet on the caller's own thread, and its step callback
    switches back here: the caller sees each step as diffusers' own loop reaches it, with no second thread (on a
    CPU, a second thread running torch's small ops beside the caller's OpenMP team made AudioLDM2's 200 steps 2.6x
    slower than the same call made directly). Each side keeps its own grad mode across the switches. Closing the
    generator stops the pipeline where it waits, at the end of a step; ``name`` names the greenlet for tracebacks.
    """
    from greenlet import getcurrent, greenlet

    def on_step(step: int) -> None:
        grad = torch.is_grad_enabled()
        getcurrent().parent.switch(("step", step + 1))  # raises _Cancelled here when the generator closes
        torch.set_grad_enabled(grad)

    def work() -> tuple[str, Any]:
        return "done", run(step_callback(pipeline, on_step))

    worker = greenlet(work)  # made when the generator starts: it belongs to the thread that iterates
    worker.gr_name = name  # type: ignore[attr-defined]
    home = threading.get_ident()

    def resume(*throw: type[BaseException]) -> tuple[str, Any]:
        if threading.get_ident() != home:
            raise ModelError(
                "a full-scale decode was resumed on another thread than the one it started on: iterate a stream from "
                "one thread (LocalBackend.astream does, in a worker thread of its own)"
            )
        worker.parent = getcurrent()  # back to whoever resumes it now
        grad = torch.is_grad_enabled()
        try:
            return worker.throw(*throw) if throw else worker.switch()  # type: ignore[no-any-return]
        finally:
            torch.set_grad_enabled(grad)

    try:
        while True:
            kind, value = resume()
            if kind == "done":
                return value
            yield int(value)
    finally:
        if worker and threading.get_ident() == home:  # started, not finished: stop it where it waits
            with contextlib.suppress(_Cancelled):
                resume(_Cancelled)


def load_pipeline(
    pipeline_cls: Any,
    directory: str | Path,
    *,
    variant: str | None = None,
    dtype: torch.dtype | None = None,
    also_accepts: tuple[str, ...] = (),
) -> Any:
    """A pipeline from its folder, never downloading; components saved as absent (``None``) stay absent.

    ``variant`` reads a published variant's weight files (``"fp16"``: ``*.fp16.safetensors``); ``dtype`` loads every
    component in that dtype. The folder's ``model_index.json`` must name ``pipeline_cls`` or one of
    ``also_accepts`` (pipelines of the same components): diffusers would load another pipeline's parts into it.
    """
    wanted = pipeline_cls.__name__
    index_file = Path(directory) / "model_index.json"
    if not index_file.is_file():
        raise ModelNotFoundError(
            f"{directory} is not a diffusers pipeline folder (no model_index.json); {wanted} wanted"
        )
    try:
        index = json.loads(index_file.read_text())
    except ValueError as exc:
        raise ModelError(f"{index_file} is not JSON: {exc}") from None
    holds = index.get("_class_name", wanted) if isinstance(index, dict) else None
    if holds not in (wanted, *also_accepts):
        raise ModelError(
            f"{directory}: its model_index.json names {holds}, but {wanted} is wanted here; is it another "
            "component's folder?"
        )
    absent = {name: None for name, spec in index.items() if isinstance(spec, list) and spec[0] is None}
    options: dict[str, Any] = {"variant": variant} if variant else {}
    if dtype is not None:
        options["dtype"] = dtype  # diffusers 0.42 deprecates torch_dtype for it
    try:
        with quiet_loading():
            pipeline = pipeline_cls.from_pretrained(str(directory), local_files_only=True, **absent, **options)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # the components do not fit this pipeline
        raise ModelError(f"{directory} does not load as a {wanted}: {str(exc)[:300]}") from None
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


class PipelineParts(nn.Module):
    """What a decoder over a whole diffusers pipeline owes its parts: every torch module of the pipeline registered
    under its name there (``unet``, ``vae``, ``text_encoder``, ``vocoder``, ...), as
    ``DiffusionPipeline.register_modules`` does for the pipeline, so ``.to(device, dtype)`` moves and casts all of
    them, text encoders included, and the pipeline's own ``device`` and ``dtype`` follow; and kept in eval mode
    whatever ``train()`` says, since they are frozen (a text encoder's dropout would otherwise blur the targets the
    projectors align to)."""

    pipeline: Any
    unet: Any
    vae: Any

    def register_components(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        for name, component in pipeline.components.items():
            if isinstance(component, nn.Module):
                setattr(self, name, component.eval())

    @contextlib.contextmanager
    def sampling_with(self, scheduler: str | None) -> Iterator[None]:
        """The pipeline samples with ``scheduler``'s choice (see :meth:`DiffusionDecoder.fresh_scheduler`) inside
        this block, and with a fresh copy of its own otherwise; its own is put back after."""
        own = self.pipeline.scheduler
        self.pipeline.scheduler = DiffusionDecoder.fresh_scheduler(own, scheduler)
        try:
            yield
        finally:
            self.pipeline.scheduler = own

    def stream_call(
        self, name: str, scheduler: str | None, convert: Callable[[Any], torch.Tensor], **arguments: Any
    ) -> Generator[int, None, torch.Tensor]:
        """Call the pipeline with ``arguments`` (see :func:`stream_pipeline`; ``name`` names it), sampling with
        ``scheduler``'s choice, yielding each finished step; returns ``convert(output)``. Closing the generator stops
        the pipeline."""

        def run(callbacks: dict[str, Any]) -> torch.Tensor:
            with self.sampling_with(scheduler):
                return convert(self.pipeline(**arguments, **callbacks))

        return (yield from stream_pipeline(self.pipeline, run, name))

    @staticmethod
    def encode_prompt(pipeline: Any, prompt: str) -> tuple[Any, ...] | None:
        """What the pipeline's own ``encode_prompt`` makes of ``prompt`` (no guidance, one per prompt), or ``None``
        where the pipeline has no tokenizer."""
        if getattr(pipeline, "tokenizer", None) is None:
            return None
        with torch.no_grad(), quiet_loading():
            return tuple(pipeline.encode_prompt([prompt], pipeline.device, 1, False))

    def train(self, mode: bool = True) -> PipelineParts:
        super().train(mode)
        for component in self.pipeline.components.values():
            if isinstance(component, nn.Module):
                component.eval()
        return self


def fit_tokens(states: torch.Tensor, tokens: int) -> torch.Tensor:
    """``states (batch, n, width)`` cut or zero-padded to ``tokens`` positions."""
    return F.pad(states[:, :tokens], (0, 0, 0, max(0, tokens - states.shape[1])))


class QueryProjector(nn.Module):
    """NExT-GPT's output projector: a feature vector to a sequence in a decoder's conditioning space.

    Learnable queries attend to the projected feature through a small transformer decoder; a linear layer
    maps them to the conditioning width. ``(batch, in_dim)`` in, ``(batch, num_queries, out_dim)`` out.
    """

    def __init__(self, in_dim: int, out_dim: int, num_queries: int, width: int = 256, layers: int = 2, heads: int = 4):
        super().__init__()
        self.config = {
            "in_dim": in_dim,
            "out_dim": out_dim,
            "num_queries": num_queries,
            "width": width,
            "layers": layers,
            "heads": heads,
        }
        self.memory = nn.Linear(in_dim, width)
        self.queries = nn.Parameter(torch.randn(num_queries, width) * width**-0.5)
        layer = nn.TransformerDecoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.out = nn.Linear(width, out_dim)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        memory = self.memory(feature.to(self.out.weight.dtype))[:, None]
        queries = self.queries.expand(len(feature), -1, -1)
        return self.out(self.decoder(queries, memory))


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between ``prediction (batch, n, dim)`` and ``target (batch, m, dim)`` over the target's real tokens
    (``mask (batch, m)``), the target cut or zero-padded to ``n`` tokens."""
    n = prediction.shape[1]
    target, mask = target[:, :n], mask[:, :n].to(prediction.dtype)
    if target.shape[1] < n:
        target = F.pad(target, (0, 0, 0, n - target.shape[1]))
        mask = F.pad(mask, (0, n - mask.shape[1]))
    squared = (prediction - target.to(prediction.dtype)).square().mean(dim=-1)
    return (squared * mask).sum() / mask.sum().clamp_min(1.0)


class PipelineDecoder(PipelineParts, DiffusionDecoder):
    """A decoder over a whole diffusers pipeline, with its own output projectors and unconditional embeddings.

    Alignment (NExT-GPT's decoder-side stage, :mod:`codi2_sdk.train.align`) trains the projectors so the
    conditioning made from a medium's feature matches what the pipeline's own text encoders make of its caption
    (:meth:`alignment_loss`), and optionally through the frozen pipeline's denoising loss (:meth:`diffusion_loss`).

    Its folder is the pipeline's own (as published) plus ``codi2_projectors.safetensors`` (the tensors whose
    names start with ``to_`` or ``negative_``) and ``decoder.json`` (the constructor's settings, ``meta``).
    """

    pipeline_class: ClassVar[str] = ""
    also_accepts: ClassVar[tuple[str, ...]] = ()  # pipelines of the same components whose folders load as this one
    """The diffusers pipeline class, by name."""
    WEIGHTS: ClassVar[str] = "codi2_projectors.safetensors"
    META: ClassVar[str] = "decoder.json"
    meta: dict[str, Any]
    pipeline: Any

    @classmethod
    def build(cls, **args: Any) -> PipelineDecoder:
        raise ModelError(f"a {cls.kind} decoder is made from a {cls.pipeline_class} folder, not from arguments")

    # -- what each pipeline defines --------------------------------------------------------------------

    def conditioning(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """The pipeline's conditioning arguments (by name) made from features ``(batch, cond_dim)``."""
        raise NotImplementedError

    def _caption_conditioning(self, captions: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        raise NotImplementedError

    def latents(self, parts: list[Any]) -> torch.Tensor:
        """The VAE latents (scaled) of media, as the pipeline's denoiser sees them."""
        raise NotImplementedError

    def predict_noise(
        self, noisy: torch.Tensor, timesteps: torch.Tensor, conditioning: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The denoiser's prediction for noisy latents at ``timesteps``."""
        raise NotImplementedError

    # -- alignment ------------------------------------------------------------------------------------

    @torch.no_grad()
    def caption_conditioning(self, captions: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """What the pipeline's own text encoders make of ``captions``: name -> (states, mask of real tokens)."""
        if getattr(self.pipeline, "tokenizer", None) is None:
            raise ModelError(f"the {self.kind} pipeline has no text encoder; aligning its projectors needs one")
        return self._caption_conditioning(captions)

    def alignment_loss(self, features: torch.Tensor, captions: list[str]) -> torch.Tensor:
        """MSE between the conditioning made from ``features`` and from ``captions`` (each stream's mean)."""
        made = self.conditioning(features)
        wanted = self.caption_conditioning(captions)
        return torch.stack([masked_mse(made[name], *wanted[name]) for name in made]).mean()

    def diffusion_loss(
        self, conditioning: dict[str, torch.Tensor], parts: list[Any], generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The frozen pipeline's denoising loss on ``parts`` under ``conditioning`` (gradients reach the projectors)."""
        scheduler = self.pipeline.scheduler
        with torch.no_grad():
            latents = self.latents(parts)
        noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        steps = int(scheduler.config.num_train_timesteps)
        timesteps = torch.randint(0, steps, (len(latents),), generator=generator).to(latents.device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        if scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        return F.mse_loss(self.predict_noise(noisy, timesteps, conditioning).float(), target.float())

    @classmethod
    def _load_pipeline(cls, directory: str | Path, **options: Any) -> Any:
        import diffusers

        return load_pipeline(
            getattr(diffusers, cls.pipeline_class), directory, also_accepts=cls.also_accepts, **options
        )

    @classmethod
    def from_pipeline(
        cls,
        directory: str | Path,
        *,
        cond_dim: int,
        variant: str | None = None,
        dtype: torch.dtype | None = None,
        **meta: Any,
    ) -> PipelineDecoder:
        """A decoder over a pipeline folder as published (``variant``: its ``fp16`` files, say), with new projectors
        to train."""
        pipeline = cls._load_pipeline(directory, variant=variant, dtype=dtype)
        decoder = cls(pipeline, cond_dim=cond_dim, **meta)  # type: ignore[call-arg]
        return decoder.to(dtype) if dtype is not None else decoder

    @quiet_loading()
    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.pipeline.save_pretrained(str(directory))
        own = {k: v for k, v in self.state_dict().items() if k.startswith(("to_", "negative_"))}
        save_file({k: v.detach().contiguous().cpu() for k, v in own.items()}, str(directory / self.WEIGHTS))
        (directory / self.META).write_text(json.dumps({"kind": self.kind, **self.meta}))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> PipelineDecoder:
        directory = Path(directory)
        meta = json.loads((directory / cls.META).read_text())
        meta.pop("kind", None)
        decoder = cls(cls._load_pipeline(directory), **meta)  # type: ignore[call-arg]
        decoder.load_state_dict(load_file(str(directory / cls.WEIGHTS)), strict=False)
        return decoder
