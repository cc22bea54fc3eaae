"""What the decoders over whole diffusers pipelines share: running a pipeline a step at a time, loading
and saving a pipeline folder, and the output projector from a feature vector to a conditioning sequence."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import ModelError
from ._quiet import quiet_loading
from .decoders import DiffusionDecoder

__all__ = ["PipelineDecoder", "QueryProjector", "load_pipeline", "stream_pipeline"]


class _Cancelled(Exception):
    pass


def stream_pipeline(run: Callable[[Callable[..., None]], Any], name: str) -> Generator[int, None, Any]:
    """Run a diffusers pipeline call in a worker thread and yield each step number as it finishes.

    ``run(on_step)`` calls the pipeline with ``callback=on_step, callback_steps=1`` and returns what the
    generator should return. Closing the generator stops the pipeline at its next step.
    """
    updates: queue.Queue[tuple[str, Any]] = queue.Queue()
    stop = threading.Event()

    def on_step(step: int, *_: Any) -> None:
        if stop.is_set():
            raise _Cancelled
        updates.put(("step", step + 1))

    def work() -> None:
        try:
            updates.put(("done", run(on_step)))
        except _Cancelled:
            updates.put(("cancelled", None))
        except BaseException as exc:
            updates.put(("error", exc))

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            kind, value = updates.get()
            if kind == "step":
                yield int(value)
            elif kind == "done":
                return value
            elif kind == "error":
                raise value
            else:
                raise RuntimeError("the decode was cancelled")
    finally:
        stop.set()
        worker.join()


def load_pipeline(pipeline_cls: Any, directory: str | Path) -> Any:
    """A pipeline from its folder, never downloading; components saved as absent (``None``) stay absent."""
    index = json.loads((Path(directory) / "model_index.json").read_text())
    absent = {name: None for name, spec in index.items() if isinstance(spec, list) and spec[0] is None}
    with quiet_loading():
        pipeline = pipeline_cls.from_pretrained(str(directory), local_files_only=True, **absent)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


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


class PipelineDecoder(DiffusionDecoder):
    """A decoder over a whole diffusers pipeline, with its own output projectors and unconditional embeddings.

    Its folder is the pipeline's own (as published) plus ``codi2_projectors.safetensors`` (the tensors whose
    names start with ``to_`` or ``negative_``) and ``decoder.json`` (the constructor's settings, ``meta``).
    """

    pipeline_class: ClassVar[str] = ""
    """The diffusers pipeline class, by name."""
    WEIGHTS: ClassVar[str] = "codi2_projectors.safetensors"
    META: ClassVar[str] = "decoder.json"
    meta: dict[str, Any]
    pipeline: Any

    @classmethod
    def build(cls, **args: Any) -> PipelineDecoder:
        raise ModelError(f"a {cls.kind} decoder is made from a {cls.pipeline_class} folder, not from arguments")

    @classmethod
    def _load_pipeline(cls, directory: str | Path) -> Any:
        import diffusers

        return load_pipeline(getattr(diffusers, cls.pipeline_class), directory)

    @classmethod
    def from_pipeline(cls, directory: str | Path, *, cond_dim: int, **meta: Any) -> PipelineDecoder:
        """A decoder over a pipeline folder as published, with new projectors to train."""
        return cls(cls._load_pipeline(directory), cond_dim=cond_dim, **meta)  # type: ignore[call-arg]

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
