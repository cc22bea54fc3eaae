"""Aligning an assembled CoDi-2: the decoder-side stage (NExT-GPT's) and the LLM stage (the paper's loss).

1. **Decoders** (:func:`align_decoders`): each pipeline decoder's output projectors learn to turn a medium's
   feature into the conditioning its pipeline's text encoders make of the medium's caption (MSE), and
   optionally through the frozen pipeline's denoising loss. Only the projectors train.
2. **LLM** (:func:`align_llm`): the LoRA, the media-tag rows, the input projectors and the output heads learn
   on interleaved conversations with the paper's loss (text cross-entropy + 0.1 x cosine distance of the
   predicted features), one modality per step in turn.

Both run on :func:`~codi2_sdk.train.train_loop`, and on several GPUs (or CPU processes) through Hugging Face
``accelerate``: ``accelerate launch -m codi2_sdk.train.align --model DIR --manifest FILE --stage decoders
--out DIR`` (see ``docs/full-scale.md``).

The data is a JSONL manifest (:mod:`codi2_sdk.train.manifest`): captioned media for the decoder stage,
conversations for the LLM stage, read lazily.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._args import whole_number
from ..errors import Codi2Error, InvalidRequestError, ModelError
from ..model import CoDi2Model, LossWeights, TrainingExample
from ..model.fullscale.assembly import paper_lora
from ..model.fullscale.pipelines import PipelineDecoder, PipelineParts
from .finetune import TrainingLog, finetune
from .loop import HeldOutEvaluation, StepLog, check_training_run, held_out_evaluation, seeded, train_loop
from .manifest import CaptionedMedium, Manifest, by_modality, load_manifest, modality_of
from .saving import BestModel, check_keep_best, save_trained

__all__ = [
    "PAPER_LOSS",
    "CaptionedMedium",
    "Manifest",
    "align_decoders",
    "align_llm",
    "load_manifest",
    "main",
    "save_trained",
    "unsharded_modules",
]

PAPER_LOSS = LossWeights(text=1.0, cosine=0.1, mse=0.0)
"""The paper's LLM loss: text cross-entropy plus 0.1 x (1 - cosine) between predicted and target features."""


_MANIFEST_HINT = " (load_manifest(path).captions and .conversations give them from a manifest)"


class _DecoderAlignment(nn.Module):
    """The decoder stage as one module (so ``accelerate`` can wrap it): a batch of one modality to its loss."""

    def __init__(self, model: CoDi2Model, diffusion_weight: float) -> None:
        super().__init__()
        self.model = model
        self.diffusion_weight = diffusion_weight

    def forward(self, batch: list[CaptionedMedium], generator: torch.Generator) -> dict[str, torch.Tensor]:
        modality = batch[0].modality
        decoder = self.model.decoder_for(modality)
        if not isinstance(decoder, PipelineDecoder):
            raise ModelError(f"the {modality} decoder ({decoder.kind}) has no alignment loss to train")
        parts = [item.part for item in batch]
        feature = self.model.encode(modality, parts)[:, 0]
        # What the decoder receives at generation: a unit-norm prediction restored to the encoder's scale.
        feature = self.model.restore_scale(modality, self.model.regression_target(modality, feature))
        feature = feature.to(self.model.device)
        alignment = decoder.alignment_loss(feature, [item.caption for item in batch])
        out = {"loss": alignment, "alignment_loss": alignment}
        if self.diffusion_weight:
            diffusion = decoder.diffusion_loss(decoder.conditioning(feature), parts, generator)
            out |= {"loss": alignment + self.diffusion_weight * diffusion, "diffusion_loss": diffusion}
        return out


def _phases(groups: dict[str, Sequence[Any]]) -> list[str]:
    order = sorted(g for g, items in groups.items() if items)
    if not order:
        raise InvalidRequestError("no training data for this stage")
    return order


def _train_only_projectors(
    model: CoDi2Model, data: Sequence[CaptionedMedium]
) -> tuple[dict[str, Sequence[CaptionedMedium]], list[str]]:
    """``data`` by modality for each pipeline decoder, the phases (the modalities that have data), and only those
    decoders' output projectors left to train."""
    decoders = {m: d for m, d in model.decoders.items() if isinstance(d, PipelineDecoder)}
    found = by_modality(data, lambda item: item.modality)
    groups = {m: found.get(m, []) for m in decoders}
    phases = _phases(groups)
    for param in model.parameters():
        param.requires_grad_(False)
    for modality in phases:
        for name, param in decoders[modality].named_parameters():
            param.requires_grad_(name.startswith("to_"))
    return groups, phases


def _held_out_alignment(
    model: CoDi2Model,
    eval_data: Sequence[CaptionedMedium] | None,
    batch_size: int,
    every: int,
    then: Callable[[int, dict[str, float]], None] | None,
    seed: int,
    accelerator: Any,
) -> HeldOutEvaluation | None:
    """The decoder stage's held-out losses (media without a pipeline decoder left out, as in training), the
    denoising loss drawing the same noise each time."""
    if eval_data is None:
        return None
    decoders = {m: d for m, d in model.decoders.items() if isinstance(d, PipelineDecoder)}
    found = by_modality(eval_data, lambda item: item.modality)
    return held_out_evaluation(
        {m: items for m, items in found.items() if m in decoders},
        lambda runner, batch: runner(batch, torch.Generator().manual_seed(seed)),
        batch_size,
        accelerator,
        every,
        then,
    )


def align_decoders(
    model: CoDi2Model,
    data: Sequence[CaptionedMedium],
    *,
    steps: int,
    batch_size: int = 4,
    lr: float = 1e-4,
    diffusion_weight: float = 0.0,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    gradient_accumulation_steps: int = 1,
    eval_data: Sequence[CaptionedMedium] | None = None,
    eval_every: int = 100,
    on_held_out: Callable[[int, dict[str, float]], None] | None = None,
    log: Callable[[StepLog], None] | None = None,
    log_every: int = 10,
    progress: bool = True,
    accelerator: Any = None,
) -> list[StepLog]:
    """Train the output projectors of ``model``'s pipeline decoders on captioned media, one modality per step
    in turn; everything else stays frozen. Returns the logged steps (``alignment_loss``, ``diffusion_loss``).

    ``eval_data``, ``on_held_out``: as in :func:`~codi2_sdk.train.finetune` (the denoising loss with the same noise
    each time). Raises :class:`InvalidRequestError` where no captioned medium has a pipeline decoder in ``model``.
    """
    gas = gradient_accumulation_steps
    check_training_run(data, CaptionedMedium, steps, batch_size, lr, gas, _MANIFEST_HINT, eval_data)
    evaluate = _held_out_alignment(model, eval_data, batch_size, eval_every, on_held_out, seed, accelerator)
    groups, phases = _train_only_projectors(model, data)
    stage = _DecoderAlignment(model, diffusion_weight)
    rng = seeded(seed, accelerator)
    generator = torch.Generator().manual_seed(seed + (accelerator.process_index if accelerator is not None else 0))

    def step_fn(step: int, rng: random.Random, runner: Any) -> dict[str, torch.Tensor]:
        pool = groups[phases[step % len(phases)]]
        result: dict[str, torch.Tensor] = runner([pool[rng.randrange(len(pool))] for _ in range(batch_size)], generator)
        return result

    stage.train()
    logs = train_loop(
        stage,
        step_fn,
        steps=steps,
        lr=lr,
        rng=rng,
        warmup_steps=min(20, steps // 10),
        state_path=Path(checkpoint_dir) / "align_decoders.pt" if checkpoint_dir is not None else None,
        gradient_accumulation_steps=gas,
        log=log,
        log_every=log_every,
        evaluate=evaluate,
        progress=progress,
        desc="align decoders",
        accelerator=accelerator,
    )
    model.eval()
    return logs


def align_llm(
    model: CoDi2Model,
    data: Sequence[TrainingExample],
    *,
    steps: int,
    batch_size: int = 4,
    lr: float = 2e-4,
    loss: LossWeights = PAPER_LOSS,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    gradient_accumulation_steps: int = 1,
    eval_data: Sequence[TrainingExample] | None = None,
    eval_every: int = 100,
    on_held_out: Callable[[int, dict[str, float]], None] | None = None,
    log: Callable[[StepLog], None] | None = None,
    log_every: int = 10,
    progress: bool = True,
    accelerator: Any = None,
) -> list[StepLog]:
    """Train the LLM side (LoRA and media-tag rows, input projectors, output heads) on conversations with the
    paper's loss, one modality per step in turn (a conversation's modality is its answer's medium, else its
    last input medium, else text). The LLM's own weights stay frozen: a model without a LoRA gets the paper's
    (rank 128, with the special tokens' embedding rows). ``eval_data``, ``on_held_out``: as in ``finetune``."""
    gas = gradient_accumulation_steps
    check_training_run(data, TrainingExample, steps, batch_size, lr, gas, _MANIFEST_HINT, eval_data)
    groups = by_modality(data, modality_of)
    phases = _phases(groups)
    turn = iter(range(sys.maxsize))

    def phased(rng: random.Random, size: int) -> list[TrainingExample]:
        pool = groups[phases[next(turn) % len(phases)]]
        return [pool[rng.randrange(len(pool))] for _ in range(size)]

    model.config = model.config.model_copy(update={"loss": loss})
    logs: list[StepLog] = []

    def record(entry: TrainingLog) -> None:
        logs.append(entry.as_step())
        if log is not None:
            log(logs[-1])

    finetune(
        model,
        phased,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        lora=model.config.lora or paper_lora(model.tokenizer),
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        gradient_accumulation_steps=gas,
        eval_data=eval_data,
        eval_every=eval_every,
        on_held_out=on_held_out,
        log=record,
        log_every=log_every,
        progress=progress,
        accelerator=accelerator,
    )
    return logs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m codi2_sdk.train.align", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a CoDi-2 folder (assemble(...).save_pretrained(DIR))")
    parser.add_argument("--manifest", nargs="+", required=True, help="the JSONL manifest (several are read as one)")
    parser.add_argument("--stage", choices=["decoders", "llm"], required=True)
    parser.add_argument("--out", required=True, help="where the aligned model is saved")
    parser.add_argument("--steps", type=whole_number(1), default=1000)
    parser.add_argument("--batch-size", type=whole_number(1), default=4, help="per process and batch drawn")
    parser.add_argument(
        "--gradient-accumulation-steps",
        type=whole_number(1),
        default=1,
        help="batches per update: an update sees batch size x this x processes",
    )
    parser.add_argument("--lr", type=float, default=None, help="1e-4 for decoders, 2e-4 for the LLM by default")
    parser.add_argument("--diffusion-weight", type=float, default=0.0, help="decoders: weight of the denoising loss")
    parser.add_argument("--seed", type=whole_number(0), default=0)
    parser.add_argument(
        "--eval-manifest", nargs="+", help="held-out data, its mean loss logged every --eval-every steps and at the end"
    )
    parser.add_argument("--eval-every", type=whole_number(1), default=100)
    parser.add_argument(
        "--keep-best",
        metavar="DIR",
        help="save the model of lowest held-out loss here as the run goes (a folder kept before is replaced only by a "
        "lower loss)",
    )
    parser.add_argument("--log", help="a JSONL file for the logged steps (main process)")
    parser.add_argument("--checkpoint-dir", help="keep a resumable state here; a run given the same folder resumes")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="the weights' dtype (float32 with the accelerate config's bf16 mixed precision, or bfloat16 throughout)",
    )
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="recompute the LLM's activations in the backward pass"
    )
    return parser


def _accelerated_model(args: argparse.Namespace) -> tuple[Any, CoDi2Model]:
    """The accelerator ``accelerate launch`` set up, and the model loaded for it (FSDP told what stays whole)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from accelerate.utils import DistributedType

    # Phases train one modality's parameters per step: the others are unused in that step's graph.
    accelerator = Accelerator(kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    if accelerator.distributed_type == DistributedType.DEEPSPEED:  # it wants the micro batch; no dataloader says it
        config = accelerator.state.deepspeed_plugin.deepspeed_config
        config["train_micro_batch_size_per_gpu"] = args.batch_size
        config["gradient_accumulation_steps"] = args.gradient_accumulation_steps  # train_batch_size: accelerate's
    model = CoDi2Model.from_pretrained(args.model, device=accelerator.device, dtype=getattr(torch, args.dtype))
    if accelerator.distributed_type == DistributedType.FSDP:
        accelerator.state.fsdp_plugin.ignored_modules = unsharded_modules(model, args.stage)
    if args.gradient_checkpointing:
        model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return accelerator, model


def _stage_manifest(paths: Sequence[str], stage: str, label: str = "") -> Manifest:
    """The manifests as one, refused when they hold nothing ``stage`` trains on."""
    manifest = load_manifest(paths)
    wanted = (
        ("captioned media", manifest.captions) if stage == "decoders" else ("conversations", manifest.conversations)
    )
    if not len(wanted[1]):
        raise InvalidRequestError(
            f"{label}the manifests hold no {wanted[0]} for the {stage} stage (captioned media: {len(manifest.captions)}, "
            f"conversations: {len(manifest.conversations)})"
        )
    return manifest


class _JsonLog:
    """The command's ``--log``: each logged step as a JSON line (on the main process), with the stage and layout."""

    def __init__(self, path: str | None, stage: str, accelerator: Any) -> None:
        self.file = open(path, "a") if path and accelerator.is_main_process else None  # noqa: SIM115
        self.fields = {
            "stage": stage,
            "processes": accelerator.num_processes,
            "distributed": accelerator.distributed_type.value,
        }

    def __call__(self, entry: StepLog) -> None:
        if self.file is not None:
            self.file.write(entry.to_json(**self.fields) + "\n")
            self.file.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m codi2_sdk.train.align`` (or under ``accelerate launch``): one stage on a saved model."""
    parser = _parser()
    args = parser.parse_args(argv)
    dtype = getattr(torch, args.dtype)
    try:  # what a user gave wrongly is said in one line, before minutes of loading a model
        manifest = _stage_manifest(args.manifest, args.stage)
        held_out = _stage_manifest(args.eval_manifest, args.stage, "--eval-manifest: ") if args.eval_manifest else None
        if args.keep_best is not None:
            check_keep_best(
                args.keep_best, "--eval-manifest", bool(args.eval_manifest), {"--out": args.out, "--model": args.model}
            )
        accelerator, model = _accelerated_model(args)
    except Codi2Error as exc:
        parser.error(str(exc))
    log = _JsonLog(args.log, args.stage, accelerator)
    common = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "log": log,
        "log_every": 1,
        "checkpoint_dir": args.checkpoint_dir,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "eval_every": args.eval_every,
        "on_held_out": BestModel(args.keep_best, model, accelerator, args.model, dtype) if args.keep_best else None,
    }
    if args.stage == "decoders":
        align_decoders(
            model,
            manifest.captions,
            eval_data=held_out.captions if held_out is not None else None,
            lr=args.lr or 1e-4,
            diffusion_weight=args.diffusion_weight,
            accelerator=accelerator,
            **common,  # type: ignore[arg-type]
        )
    else:
        align_llm(
            model,
            manifest.conversations,
            lr=args.lr or 2e-4,
            eval_data=held_out.conversations if held_out is not None else None,
            accelerator=accelerator,
            **common,  # type: ignore[arg-type]
        )
    save_trained(model, accelerator, args.model, args.out, dtype)
    if log.file is not None:
        log.file.close()
    return 0


def unsharded_modules(model: CoDi2Model, stage: str) -> list[nn.Module]:
    """What FSDP leaves whole on every process in a stage: the frozen towers and pipeline parts (and, in the LLM stage,
    the decoders). Their gradients never flow, and some hold scalar parameters that FSDP2 cannot shard (CLAP's logit
    scales in AudioLDM2's text encoder)."""
    frozen: list[nn.Module] = list(model.encoders.values())
    for decoder in model.decoders.values():
        if stage == "llm":
            frozen.append(decoder)
        elif isinstance(decoder, PipelineParts):
            frozen += [part for part in decoder.pipeline.components.values() if isinstance(part, nn.Module)]
    return frozen


if __name__ == "__main__":
    raise SystemExit(main())
