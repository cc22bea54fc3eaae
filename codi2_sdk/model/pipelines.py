"""What the decoders over whole diffusers pipelines share: running a pipeline a step at a time, loading
and saving a pipeline folder, and the output projector from a feature vector to a conditioning sequence."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._quiet import quiet_loading

__all__ = ["QueryProjector", "load_pipeline", "stream_pipeline"]


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
