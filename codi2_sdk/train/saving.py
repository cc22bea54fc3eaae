"""Saving a model trained under ``accelerate``: at the end of a run (:func:`save_trained`), and the best one by its
held-out loss as the run goes (:class:`BestModel`, the align command's ``--keep-best``)."""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InvalidRequestError
from ..model import CoDi2Model

__all__ = ["BestModel", "check_keep_best", "save_trained"]

logger = logging.getLogger(__name__)

HELD_OUT_FILE = "held_out.json"
"""Beside a kept model: the step it was kept at and its held-out figures."""


def save_trained(model: CoDi2Model, accelerator: Any, source: str | Path, out: str | Path, dtype: Any) -> None:
    """Save a model trained under ``accelerate``: its whole state gathered on the main process through
    ``accelerator.get_state_dict`` (under FSDP or ZeRO-3 each process holds only a shard of it), loaded into a fresh
    copy of the model it started from, and saved from there. Every process must call this. Without an accelerator
    (``None``: one process), the model is saved as it is."""
    if accelerator is None:
        model.save_pretrained(out)
        return
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        fresh = CoDi2Model.from_pretrained(source, dtype=dtype)
        if model.has_lora and not fresh.has_lora:
            fresh.add_lora(model.config.lora)
        fresh.config = model.config
        fresh.load_state_dict(state, strict=True)
        fresh.save_pretrained(out)
    accelerator.wait_for_everyone()


class BestModel:
    """After each held-out evaluation whose loss is the lowest yet, save the model to ``folder`` (through
    :func:`save_trained`, every process taking part; ``source`` and ``dtype`` are the folder the run started from and
    its dtype, needed under an ``accelerator`` only), with ``held_out.json`` giving its step and figures. Pass it as
    ``on_held_out`` to a training function.

    A folder that holds a model kept before (a resumed run) is replaced only by a lower loss. Each save is written to
    ``FOLDER.partial`` and then takes the folder's name, so one that stops halfway leaves the kept model as it was.

    Raises:
        InvalidRequestError: ``folder`` exists and holds no kept model (it is never replaced).
    """

    def __init__(
        self, folder: str | Path, model: CoDi2Model, accelerator: Any = None, source: str | Path = "", dtype: Any = None
    ) -> None:
        self.folder = Path(folder)
        self.model, self.accelerator, self.source, self.dtype = model, accelerator, source, dtype
        self.main = accelerator is None or accelerator.is_main_process
        self.best = self.kept_loss(self.folder)
        if self.best < math.inf:
            logger.warning("%s holds a model of held-out loss %.4f: only a lower loss replaces it", folder, self.best)

    @staticmethod
    def kept_loss(folder: str | Path) -> float:
        """The held-out loss of the model kept in ``folder`` (infinite where there is none yet).

        Raises:
            InvalidRequestError: ``folder`` exists and holds no kept model.
        """
        record = Path(folder) / HELD_OUT_FILE
        if record.is_file():
            try:
                return float(json.loads(record.read_text())["held_out"]["loss"])
            except (ValueError, KeyError, TypeError):
                raise InvalidRequestError(f"{record} is not one a training run wrote: give a new folder") from None
        if Path(folder).exists():
            raise InvalidRequestError(f"{folder} exists and holds no kept model: give a new folder to keep one in")
        return math.inf

    def __call__(self, step: int, figures: dict[str, float]) -> None:
        if not figures["loss"] < self.best:
            return
        self.best = figures["loss"]
        partial = self.folder.with_name(self.folder.name + ".partial")
        if self.main:
            shutil.rmtree(partial, ignore_errors=True)  # what a save that stopped halfway left
        save_trained(self.model, self.accelerator, self.source, partial, self.dtype)
        if self.main:
            (partial / HELD_OUT_FILE).write_text(json.dumps({"step": step, "held_out": figures}))
            old = self.folder.with_name(self.folder.name + ".old")
            shutil.rmtree(old, ignore_errors=True)  # a rename cannot replace a folder that holds files
            if self.folder.exists():
                self.folder.replace(old)
            partial.replace(self.folder)
            shutil.rmtree(old, ignore_errors=True)
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()


def check_keep_best(folder: str | Path, held_out_flag: str, held_out_given: bool, others: Mapping[str, Any]) -> None:
    """Refuse a command's ``--keep-best FOLDER`` before any work: without held-out data (given by
    ``held_out_flag``), the same folder as one of ``others`` (``{"--out": path, ...}``), or a folder that holds
    something else than a kept model."""
    if not held_out_given:
        raise InvalidRequestError(
            f"--keep-best needs {held_out_flag}: the model kept is the one of lowest held-out loss"
        )
    same = [flag for flag, path in others.items() if Path(path).resolve() == Path(folder).resolve()]
    if same:
        raise InvalidRequestError(f"--keep-best needs a folder of its own, not the one of {' or '.join(same)}")
    BestModel.kept_loss(folder)
