"""The LLM's stages (the tiny Llama on the task mix, then video, own outputs, subjects, video edits) and the LoRA."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import numpy as np
import torch

from codi2_sdk.mini.architecture import LORA
from codi2_sdk.mini.clips import probe_clip
from codi2_sdk.mini.probes import probe_picture, probe_sound
from codi2_sdk.mini.tasks import (
    LORA_TASK,
    TASKS,
    VIDEO_TASKS,
    clip_part,
    picture_part,
    vocabulary,
)
from codi2_sdk.model import CoDi2Config, CoDi2Model, TrainingExample
from codi2_sdk.model.mini.encoders import CNNAudioEncoder, CNNImageEncoder
from codi2_sdk.model.prompt import build_word_tokenizer
from codi2_sdk.train import TrainingLog, finetune

from ..data import (
    DIAMOND_OR_SQUARE,
    example_pool,
    late_mix,
    own_outputs,
    task_batches,
    train_clips,
    train_pictures,
    train_sounds,
)
from ..install import extended_model, install, refit_image_whitening, video_encoder
from ..places import Log, Places


def finetune_llm(
    at: Places,
    model: CoDi2Model,
    batches: Callable[[random.Random, int], list[TrainingExample]],
    stage: str,
    *,
    steps: int,
    lr: float,
    warmup_steps: int,
    log: Log,
    also: tuple[str, ...] | list[str] = (),
) -> None:
    """The LLM stages' fine-tuning (the whole LLM, batches of 32, a checkpoint every 100 steps under
    runs/mini/<stage>/), then the LLM, tokenizer, projectors, config and ``also`` installed."""
    finetune(
        model,
        batches,
        steps=steps,
        batch_size=32,
        lr=lr,
        lora=None,
        warmup_steps=warmup_steps,
        seed=at.seed,
        checkpoint_dir=at.runs / stage,
        checkpoint_every=100,
        log=lambda e: log(e.to_json()),
        log_every=25,
        progress=False,
    )
    install(at, model, ["llm", "tokenizer", "projectors.safetensors", "codi2.json", *also])


def stage_llm(at: Places, steps: int, lr: float, log: Log) -> None:
    """The tiny Llama, trained from scratch on the picture and sound tasks with the frozen encoders (video
    comes after, in ``llm-video``)."""
    norms = json.loads((at.logs / "feature_norms.json").read_text())
    without_video = {
        "encoders": {m: spec for m, spec in at.first_config.encoders.items() if m != "video"},
        "decoders": {m: spec for m, spec in at.first_config.decoders.items() if m != "video"},
    }
    config = at.first_config.model_copy(update={"feature_norms": norms, **without_video})
    model = CoDi2Model.from_config(config, tokenizer=build_word_tokenizer(vocabulary()), seed=at.seed)
    for modality, encoder_cls in (("image", CNNImageEncoder), ("audio", CNNAudioEncoder)):
        model.encoders[modality] = (
            encoder_cls.from_pretrained(at.out / "encoders" / modality).eval().requires_grad_(False)
        )
    # The output head regresses whitened image features (size lies in a direction of small variance).
    rng = np.random.default_rng(17)
    renders = [picture_part(p, rng) for p in train_pictures() for _ in range(8)]
    model.fit_whitening("image", renders)
    log(f"LLM parameters {sum(p.numel() for p in model.llm.parameters()):,}; vocabulary {len(model.tokenizer)}")
    finetune_llm(
        at,
        model,
        task_batches(tuple(t for t in TASKS if t not in VIDEO_TASKS)),
        "llm",
        steps=steps,
        lr=lr,
        warmup_steps=100,
        log=log,
    )


def decoded_pool(at: Places, model: CoDi2Model, modality: str, items: list, per_item: int, log: Log) -> dict:
    """Media the model's own decoder makes from the encoder features of fresh renders, kept where the probe
    reads back the item they were made from: item -> parts (what describing its own outputs is taught on)."""
    from codi2_sdk.mini.tasks import clip_part, sound_part

    render, read = {
        "image": (picture_part, lambda part: probe_picture(part.to_pil())),
        "audio": (sound_part, lambda part: probe_sound(part.to_numpy(), part.sample_rate)),
        "video": (clip_part, lambda part: probe_clip(part.to_frames())),
    }[modality]
    rng = np.random.default_rng(at.seed + 41)
    settings = getattr(model.config.defaults, modality)
    wanted = [item for item in items for _ in range(per_item)]
    pool: dict = {}
    for start in range(0, len(wanted), 32):
        batch = wanted[start : start + 32]
        with torch.no_grad():
            features = model.encode(modality, [render(item, rng) for item in batch])[:, 0]
            steps = model.decoders[modality].iter_decode(
                features, settings, generator=torch.Generator().manual_seed(int(rng.integers(2**31)))
            )
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    parts = done.value
                    break
        for item, part in zip(batch, parts, strict=True):
            if read(part) == item:
                pool.setdefault(item, []).append(part)
    log(f"{modality}: decoded {len(wanted)} from fresh renders, kept {sum(map(len, pool.values()))} read right")
    return pool


def stage_llm_v2(at: Places, steps: int, lr: float, log: Log) -> None:
    """codi2-mini v2 on the trained LLM: video joins (the video encoder is the image encoder over two spans
    of frames; new words' rows, a video input projector and output head), half of the pictures and sounds the
    model reads in a conversation are its own decoded outputs, and in-context cases draw more examples; the
    whole mix, video and in-context tasks weighted up."""
    from safetensors.torch import load_file

    from codi2_sdk.model.parts import load_kind

    norms = json.loads((at.logs / "feature_norms.json").read_text())
    encoder = video_encoder(
        at,
    )
    rng = np.random.default_rng(19)
    clips = [clip_part(c, rng) for c in train_clips() for _ in range(4)]
    with torch.no_grad():
        norms["video"] = float(encoder(encoder.preprocess(clips))[:, 0].norm(dim=-1).mean())
    config = at.first_config.model_copy(update={"feature_norms": norms})
    model, added = extended_model(at, config)
    for modality, encoder_cls in (("image", CNNImageEncoder), ("audio", CNNAudioEncoder)):
        model.encoders[modality] = (
            encoder_cls.from_pretrained(at.out / "encoders" / modality).eval().requires_grad_(False)
        )
    model.encoders["video"] = encoder.requires_grad_(False)
    for modality in ("image", "audio"):
        model.decoders[modality] = load_kind(
            "decoder", at.config.decoders[modality].kind, at.out / "decoders" / modality
        ).eval()
    model.fit_whitening("video", clips)
    # the trained projectors, heads and whitenings over the fresh ones (video's stay fresh)
    fresh = {k: v for k, v in model.state_dict().items() if k.split(".")[0] in ("in_proj", "out_head", "whitening")}
    model._load_projectors(fresh | load_file(at.out / "projectors.safetensors"), at.out)
    log(f"{added} new words; video feature norm {norms['video']:.2f}; {len(clips)} clips for the whitening")
    # pictures and sounds: what the describe-own-output tasks read (the video decoder trains beside this stage)
    pools = {
        "image": decoded_pool(at, model, "image", train_pictures(), 3, log),
        "audio": decoded_pool(at, model, "audio", train_sounds(), 4, log),
    }
    swap = own_outputs(pools, rate=0.5)
    weights = [2.0 if t in VIDEO_TASKS else 1.5 if t.startswith("in_context") else 1.0 for t in TASKS]
    draw = task_batches(TASKS, weights)

    def batches(rng: random.Random, batch_size: int) -> list[TrainingExample]:
        return [swap(rng, example) for example in draw(rng, batch_size)]

    finetune_llm(at, model, batches, "llm-v2", steps=steps, lr=lr, warmup_steps=100, log=log, also=["encoders/video"])
    (at.logs / "feature_norms.json").write_text(json.dumps(norms))


def stage_llm_subjects(at: Places, steps: int, lr: float, log: Log) -> None:
    """Subject-driven generation joins the trained model's mix ("draw this object large on the right" after
    1-3 pictures of a marked subject): the mark-aware image encoder and decoder in, one new word, a quarter of
    every batch subject cases, the rest the mix of ``llm-v2`` (own outputs included; in-context video edits
    weighted up)."""
    continue_llm_mix(at, "llm-subjects", steps, log, lr=lr, warmup_steps=50, video_edit_weight=3.0, refit=True)


def stage_llm_video_edits(at: Places, steps: int, lr: float, log: Log) -> None:
    """The trained LLM continues on the same mix with in-context video edits weighted 8x (3x before) at a lower
    rate: after the video UNet learnt noisy conditions, most of their misses were the LLM's (re-decoding its
    feature with other seeds drew the same wrong shape)."""
    continue_llm_mix(at, "llm-video-edits", steps, log, lr=lr, warmup_steps=25, video_edit_weight=8.0, refit=False)


def continue_llm_on_video_edits(
    at: Places,
    stage: str,
    steps: int,
    lr: float,
    log: Log,
    *,
    focus: Callable[[random.Random, int], list[TrainingExample]],
) -> None:
    """``continue_llm_mix`` as the late video-edit stages run it: in-context video edits weighted 8, the image
    whitening kept, and a quarter of every batch drawn by ``focus``."""
    continue_llm_mix(at, stage, steps, log, lr=lr, warmup_steps=25, video_edit_weight=8.0, refit=False, focus=focus)


def stage_llm_video_shapes(at: Places, steps: int, lr: float, log: Log) -> None:
    """The trained LLM continues on the same mix, with a quarter of every batch in-context video edits whose
    answer is a diamond or a square, at half ``llm-video-edits``' rate: the trained misses left were large
    diamonds written as diamond/square blends (0.6 of the way from the square's feature to the diamond's), which
    the video decoder draws as circles."""
    continue_llm_on_video_edits(
        at,
        "llm-video-shapes",
        steps,
        lr,
        log,
        focus=task_batches(("in_context_video_edit",), keep=lambda case: case.expected[0].shape in DIAMOND_OR_SQUARE),
    )


def stage_llm_video_diamonds(at: Places, steps: int, lr: float, log: Log) -> None:
    """The trained LLM continues on the same mix, with a quarter of every batch 3-shot in-context video edits whose
    answer is a diamond, at ``llm-video-shapes``' rate: held-out video edits fell with shots (0.97 / 0.94 / 0.89 at
    150 cases), all their misses diamonds, and each shot moved a held-out diamond's feature toward the same clip as
    a square (whitened cosine 0.762 / 0.771 / 0.781), which the video decoder then draws with rounded corners. The
    stage clears the adapter, so ``lora`` runs again after it."""
    continue_llm_on_video_edits(
        at,
        "llm-video-diamonds",
        steps,
        lr,
        log,
        focus=example_pool(
            at,
            task_batches(("in_context_video_edit",), keep=lambda case: case.expected[0].shape == "diamond", shots=3),
            size=800,
            log=log,
        ),
    )


def continue_llm_mix(
    at: Places,
    stage: str,
    steps: int,
    log: Log,
    *,
    lr: float,
    warmup_steps: int,
    video_edit_weight: float,
    refit: bool,
    focus: Callable[[random.Random, int], list[TrainingExample]] | None = None,
) -> None:
    """The installed LLM continues on the whole mix: a quarter of every batch subject cases, the rest the other
    tasks (half the pictures and sounds read are the model's own outputs), in-context video edits weighing
    ``video_edit_weight``, other video and in-context tasks 1.5; ``refit`` refits the image whitening first;
    ``focus`` draws another quarter of every batch."""
    from safetensors.torch import load_file

    from codi2_sdk.model.parts import load_kind

    config = CoDi2Config.model_validate_json((at.out / "codi2.json").read_text()).model_copy(update={"lora": None})
    model, added = extended_model(at, config)  # the installed model's config, its adapter left to the lora stage
    for modality, spec in config.encoders.items():
        model.encoders[modality] = load_kind("encoder", spec.kind, at.out / "encoders" / modality).eval()
        model.encoders[modality].requires_grad_(False)
    for modality, spec in config.decoders.items():
        model.decoders[modality] = load_kind("decoder", spec.kind, at.out / "decoders" / modality).eval()
    model._load_projectors(load_file(at.out / "projectors.safetensors"), at.out)
    log(f"{added} new words")
    if refit:
        refit_image_whitening(model, log)
    pools = {
        "image": decoded_pool(at, model, "image", train_pictures(), 3, log),
        "audio": decoded_pool(at, model, "audio", train_sounds(), 4, log),
    }
    batches = late_mix(video_edit_weight, swap=own_outputs(pools, rate=0.5), focus=focus)
    finetune_llm(at, model, batches, stage, steps=steps, lr=lr, warmup_steps=warmup_steps, log=log)


def stage_lora(at: Places, steps: int, lr: float, log: Log) -> None:
    """Teach the frozen model a skill it never saw ("move it one step right") with a LoRA, 50% replay of the
    LLM's last mix (``late_mix``): with replay of every task alike, the adapter moved the in-context video edits'
    features (their nearest clip a wrong one in 1-7 of 96 teacher-forced cases per row, 0 of 96 without the
    adapter); without the mix's quarter of subject cases, held-out subjects stayed at 44 of 50 (46 with it)."""
    from codi2_sdk.backends.local import LocalBackend
    from codi2_sdk.mini.evaluate import evaluate

    model = CoDi2Model.from_pretrained(at.out)
    backend = LocalBackend(model)
    check = [LORA_TASK, "instructed_image_edit", "in_context_image_edit", "text_to_image"]
    before = evaluate(backend, cases=40, tasks=check, shots=(2,), seed=99, progress=False)
    log(f"before: { {k: v['accuracy'] for k, v in before['tasks'].items()} }")
    replay = late_mix(8.0)
    new_skill = task_batches((LORA_TASK,))

    def mixed(rng: random.Random, batch_size: int) -> list[TrainingExample]:
        half = batch_size // 2
        return new_skill(rng, half) + replay(rng, batch_size - half)

    def record(entry: TrainingLog) -> None:
        log(entry.to_json())

    finetune(
        model,
        mixed,
        steps=steps,
        batch_size=32,
        lr=lr,
        lora=LORA,
        seed=at.seed,
        checkpoint_dir=at.runs / "lora",
        log=record,
        log_every=25,
        progress=False,
    )
    backend.clear_caches()  # the prompts' KV caches and features were computed by the weights before
    after = evaluate(backend, cases=40, tasks=check, shots=(2,), seed=99, progress=False)
    log(f"after: { {k: v['accuracy'] for k, v in after['tasks'].items()} }")
    (at.logs / "lora.json").write_text(json.dumps({"before": before, "after": after}, indent=1))
    install(at, model, ["adapter", "llm", "projectors.safetensors", "codi2.json"])
