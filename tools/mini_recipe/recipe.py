"""codi2-mini's recipe as data: one :class:`Stage` per run of a stage, in the order that rebuilds the shipped
weights. The order of runs (:func:`runs`), the docs' training table (:func:`docs_table`) and the rebuild
(``python tools/train_mini.py all``) all come from :data:`RECIPE`, the one place the order lives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .places import Log, Places
from .stages.autoencoders import stage_vae, stage_vae_fine, stage_vae_fine_edges, stage_vae_marks
from .stages.encoders import stage_encoders, stage_encoders_marks
from .stages.llm import (
    stage_llm,
    stage_llm_subjects,
    stage_llm_v2,
    stage_llm_video_diamonds,
    stage_llm_video_edits,
    stage_llm_video_shapes,
    stage_lora,
)
from .stages.unets import (
    stage_unet,
    stage_unet_fine,
    stage_unet_fine_palette,
    stage_unet_marks,
    stage_unet_robust,
    stage_unet_video,
    stage_unet_video_own,
)

StageFn = Callable[[Places, int, float, Log], None]
"""A stage's code: ``run(places, steps, lr, log)``; resumable from its state under ``places.runs``."""


@dataclass(frozen=True)
class Resume:
    """A later run of a stage to more ``steps`` (its cosine schedule restarts its tail at the new length), straight
    after the stage's first run or, with ``after``, after that stage's run."""

    steps: int
    after: str | None = None


@dataclass(frozen=True)
class Stage:
    """One stage of the recipe: its code, default steps and learning rate, the stages whose output it reads
    (``needs``), the checkpoint parts it writes, and the figures of the run that made the shipped weights."""

    name: str
    run: StageFn
    steps: int
    lr: float
    needs: tuple[str, ...]
    writes: tuple[str, ...]
    title: str
    batch: str
    took: str
    result: str
    threads: int = 1
    resumes: tuple[Resume, ...] = ()
    runs: str | None = None
    """A fresh folder for its resumable state (a stage run twice, like ``lora`` after a later LLM stage)."""


@dataclass(frozen=True)
class Run:
    """One command of the rebuild."""

    stage: Stage
    steps: int

    def command(self) -> str:
        words = ["python tools/train_mini.py", self.stage.name]
        if self.steps != self.stage.steps:
            words.append(f"--steps {self.steps}")
        if self.stage.threads != 1:
            words.append(f"--threads {self.stage.threads}")
        if self.stage.runs:
            words.append(f"--runs {self.stage.runs}")
        return " ".join(words)


RECIPE: tuple[Stage, ...] = (
    Stage(
        "encoders",
        run=stage_encoders,
        steps=800,
        lr=0.002,
        needs=(),
        writes=("encoders/image", "encoders/audio"),
        title="encoders",
        batch="x 48 pairs",
        took="7.6 min",
        result="attribute heads 100% on fresh renders (both modalities)",
    ),
    Stage(
        "vae-image",
        run=lambda at, steps, lr, log: stage_vae(at, "image", steps, lr, log),
        steps=3000,
        lr=0.001,
        needs=(),
        writes=("decoders/image/vae",),
        title="image autoencoder",
        batch="x 16",
        took="31.6 min",
        result="probe reads 100% of reconstructions right",
    ),
    Stage(
        "vae-audio",
        run=lambda at, steps, lr, log: stage_vae(at, "audio", steps, lr, log),
        steps=2000,
        lr=0.001,
        needs=(),
        writes=("decoders/audio/vae",),
        title="audio autoencoder",
        batch="x 16",
        took="23.4 min",
        result="probe reads 100% of reconstructions right",
    ),
    Stage(
        "unet-image",
        run=lambda at, steps, lr, log: stage_unet(at, "image", steps, lr, log),
        steps=2500,
        lr=0.0005,
        needs=("encoders", "vae-image"),
        writes=("decoders/image",),
        title="image UNet",
        batch="x 64",
        took="20.4 min",
        result="probe reads 100% of 64 samples from fresh features right (25 DDIM steps, guidance 1 and 3)",
    ),
    Stage(
        "unet-audio",
        run=lambda at, steps, lr, log: stage_unet(at, "audio", steps, lr, log),
        steps=2000,
        lr=0.0005,
        needs=("encoders", "vae-audio"),
        writes=("decoders/audio",),
        title="audio UNet",
        batch="x 64",
        took="17.6 min",
        result="the same: 100%",
    ),
    Stage(
        "llm",
        run=stage_llm,
        steps=2000,
        lr=0.001,
        needs=("encoders",),
        writes=("llm", "tokenizer", "projectors.safetensors", "codi2.json"),
        resumes=(Resume(4500),),
        title="LLM",
        batch="x 32",
        took="31.0 + 5.6 + 10.9 min (the shipped weights' runs: 2000, 3000, then 4500 steps with the head moved to a whitened space; the recipe whitens from the first step)",
        result="text loss 6e-5, feature loss 0.009",
    ),
    Stage(
        "unet-video",
        run=stage_unet_video,
        steps=1500,
        lr=0.0005,
        needs=("encoders", "vae-image"),
        writes=("decoders/video",),
        resumes=(Resume(3000),),
        title="video UNet",
        batch="x 16 clips",
        took="25.6 + 25.9 min",
        result="probe reads 94% of 32 clips from fresh features right (25 steps, guidance 3; 81% at guidance 1); 66% after the first 1500 steps",
    ),
    Stage(
        "llm-v2",
        run=stage_llm_v2,
        steps=1500,
        lr=0.0005,
        needs=("llm", "unet-image", "unet-audio", "unet-video"),
        writes=("llm", "tokenizer", "projectors.safetensors", "codi2.json", "encoders/video"),
        resumes=(Resume(2500),),
        title="LLM v2",
        batch="x 32",
        took="40.7 min (1 thread) + 13.9 min (2 threads)",
        result="video, own outputs, more shots (below); text loss 7e-5, feature loss 0.016",
    ),
    Stage(
        "encoders-marks",
        run=stage_encoders_marks,
        steps=900,
        lr=0.002,
        needs=("llm-v2",),
        writes=("encoders/image",),
        threads=2,
        title="image encoder, marks",
        batch="x 64",
        took="3.8 min",
        result="the mark read from the pooled feature: 100% of fresh renders of training and of held-out subjects; plain pictures' features moved 1.7% of their norm",
    ),
    Stage(
        "vae-marks",
        run=stage_vae_marks,
        steps=1200,
        lr=0.0003,
        needs=("vae-image",),
        writes=("decoders/image/vae",),
        threads=2,
        resumes=(Resume(2700),),
        title="image autoencoder, marks",
        batch="x 16",
        took="10.6 + 10.6 min",
        result="probe reads 100% of reconstructions right, plain and marked; object-weighted L1 0.047 plain, 0.087 marked",
    ),
    Stage(
        "unet-marks",
        run=stage_unet_marks,
        steps=1500,
        lr=0.0002,
        needs=("encoders-marks", "vae-marks"),
        writes=("decoders/image",),
        threads=2,
        resumes=(Resume(4000, after="llm-subjects"),),
        title="image UNet, marks",
        batch="x 64",
        took="8.5 + 11.0 min",
        result="probe reads 100% of 48 samples from fresh features right, plain and held-out subjects; a held-out subject's sample has cosine 0.81 to another render of it (two renders: 0.98; 0.77 after 1500 steps)",
    ),
    Stage(
        "llm-subjects",
        run=stage_llm_subjects,
        steps=800,
        lr=0.0004,
        needs=("unet-marks",),
        writes=("llm", "tokenizer", "projectors.safetensors", "codi2.json"),
        threads=2,
        title="LLM, subjects",
        batch="x 32",
        took="15.2 min",
        result="text loss 2e-5, feature loss 0.018 (in the refitted image space)",
    ),
    Stage(
        "vae-fine",
        run=stage_vae_fine,
        steps=3000,
        lr=0.001,
        needs=("encoders-marks", "vae-marks"),
        writes=(),
        threads=2,
        title="image autoencoder, 16x16",
        batch="x 16",
        took="15.0 min",
        result="reconstructions of held-out subjects: feature cosine to another render 0.963 small, 0.979 large (two renders: 0.980, 0.982; the 8x8x16 autoencoder: 0.815, 0.960)",
    ),
    Stage(
        "unet-fine",
        run=stage_unet_fine,
        steps=4000,
        lr=0.0005,
        needs=("vae-fine",),
        writes=("decoders/image", "codi2.json"),
        threads=2,
        title="image UNet, 16x16",
        batch="x 64",
        took="39.6 min",
        result="a held-out subject's sample has cosine 0.907 to another render (0.81 before); the probe read 81% of them: a grey corner pixel stretched its box",
    ),
    Stage(
        "vae-fine-edges",
        run=stage_vae_fine_edges,
        steps=400,
        lr=0.0002,
        needs=("unet-fine",),
        writes=("decoders/image/vae",),
        threads=2,
        title="its autoencoder's decoder",
        batch="x 16",
        took="1.7 min",
        result="the corner pixel's distance from white 12 (was 50; the first autoencoder's: 6); object-weighted L1 0.051 plain, 0.081 marked",
    ),
    Stage(
        "unet-fine-robust",
        run=lambda at, steps, lr, log: stage_unet_robust(at, "image", steps, lr, log),
        steps=1500,
        lr=0.0002,
        needs=("vae-fine-edges",),
        writes=("decoders/image",),
        threads=2,
        title="its UNet, noisy conditions",
        batch="x 64",
        took="16.2 min",
        result="in-context image edits (2-shot, 40 cases) 33 -> 36 right; probe reads 98% of samples, plain and held-out subjects; held-out subjects' cosine 0.893",
    ),
    Stage(
        "unet-video-robust",
        run=lambda at, steps, lr, log: stage_unet_robust(at, "video", steps, lr, log),
        steps=3000,
        lr=0.0002,
        needs=("unet-video",),
        writes=("decoders/video",),
        threads=2,
        title="video UNet, noisy conditions",
        batch="x 16 clips",
        took="27.9 min",
        result="probe reads 100% of 32 clips from fresh features right, trained and held-out (25 steps, guidance 3; 97% / 94% at guidance 1); before: 92% of 48 trained clips, 94% of 48 held-out ones",
    ),
    Stage(
        "unet-audio-robust",
        run=lambda at, steps, lr, log: stage_unet_robust(at, "audio", steps, lr, log),
        steps=1500,
        lr=0.0002,
        needs=("unet-audio",),
        writes=("decoders/audio",),
        threads=2,
        title="audio UNet, noisy conditions",
        batch="x 64",
        took="7.5 min",
        result="samples from fresh features of held-out sounds (64, guidance 3): 91% -> 95% read right (the stage's own draw: 100%); trained sounds 100%",
    ),
    Stage(
        "llm-video-edits",
        run=stage_llm_video_edits,
        steps=400,
        lr=0.0002,
        needs=("llm-subjects", "unet-video-robust"),
        writes=("llm", "tokenizer", "projectors.safetensors", "codi2.json"),
        threads=2,
        title="LLM, video edits",
        batch="x 32",
        took="13.6 min",
        result="feature loss 0.021; held-out in-context video edits (25 cases each, seed 3) 0.76 / 0.80 / 0.72 -> 0.80 / 0.92 / 0.84 at 1 / 2 / 3 shots",
    ),
    Stage(
        "llm-video-shapes",
        run=stage_llm_video_shapes,
        steps=400,
        lr=0.0001,
        needs=("llm-video-edits",),
        writes=("llm", "tokenizer", "projectors.safetensors", "codi2.json"),
        threads=2,
        title="LLM, diamonds and squares",
        batch="x 32",
        took="12.0 min",
        result="feature loss 0.021; the LLM alone (no adapter), 96 teacher-forced in-context video edits per shot count: cosine of its feature to the clip's renders 0.971-0.978 -> 0.988 (held-out 0.960-0.972 -> 0.977-0.980), nearest a wrong clip in 3-4 -> 0 of 96 (held-out 1-5 -> 0)",
    ),
    Stage(
        "lora",
        run=stage_lora,
        steps=300,
        lr=0.001,
        needs=("llm-video-shapes",),
        writes=("adapter", "llm", "projectors.safetensors", "codi2.json"),
        threads=2,
        title="LoRA",
        batch="x 32",
        took="6.4 min",
        result="`step_right_edit` 0.93 -> 1.00 (40 cases; 0.57 before `llm-video-shapes`; `instructed_image_edit`, in-context image edits and `text_to_image` 1.00 before and after); the in-context video edits' features with the adapter: 0.982-0.987, nearest a wrong clip in 0-2 of 96 (held-out 0.971-0.978, 1-2)",
    ),
    Stage(
        "unet-video-own",
        run=stage_unet_video_own,
        steps=1200,
        lr=0.0002,
        needs=("lora",),
        writes=("decoders/video",),
        threads=2,
        title="video UNet, the LLM's own features",
        batch="x 16 clips",
        took="11.0 min",
        result="half the conditions are the finished LLM's own features for trained clips (3200 video cases, teacher-forced; 3198 kept, each nearest its own clip), and 30% of all conditions blended with up to 40% of a feature of a clip one change apart, still asking for their own clip; clips decoded from the LLM's features of 64 video cases (one sample, guidance 3): held-out items 94% -> 98% read right, trained 100% -> 100%. The same stage on the image UNet (800 x 64) was tried and not kept: held-out subject-driven pictures 47 -> 45 of 50",
    ),
    Stage(
        "unet-fine-blend",
        run=lambda at, steps, lr, log: stage_unet_robust(at, "image", steps, lr, log, blend=True),
        steps=800,
        lr=0.0002,
        needs=("unet-fine-robust", "unet-video-own"),
        writes=("decoders/image",),
        threads=2,
        title="image UNet, blended conditions",
        batch="x 64",
        took="5.7 min",
        result="30% of the conditions blended with up to 40% of a feature of a picture one change apart (shape, colour, size, position or mark), still asking for their own picture; held-out subject-driven pictures at the eval's seeds, 200 cases: 179 -> 188 right (trained 196 -> 195); its own check from renders' features: plain 98% -> 100%, held-out subjects 98% -> 96% (48 samples)",
    ),
    Stage(
        "llm-video-diamonds",
        run=stage_llm_video_diamonds,
        steps=300,
        lr=0.0001,
        needs=("unet-fine-blend",),
        writes=("llm", "tokenizer", "projectors.safetensors", "codi2.json"),
        threads=2,
        title="LLM, 3-shot video edits of diamonds",
        batch="x 32",
        took="10.6 min (5.0 of them drawing its pool)",
        result="feature loss 0.015; a quarter of every batch from a pool of 800 three-shot in-context video edits of trained clips whose answer is a diamond; held-out 3-shot in-context video edits at 150 cases: 133 -> 146 right (trained 147 -> 149)",
    ),
    Stage(
        "lora",
        run=stage_lora,
        steps=300,
        lr=0.001,
        needs=("llm-video-diamonds",),
        writes=("adapter", "llm", "projectors.safetensors", "codi2.json"),
        threads=2,
        runs="runs/mini/lora-again",
        title="LoRA, again",
        batch="x 32",
        took="6.6 min",
        result="the LLM stage clears the adapter, so it is trained again on the new LLM (a fresh `--runs` folder, or the stage would resume its finished run); `step_right_edit` 1.00 before and after (40 cases: the LLM alone had learnt it), in-context image edits 0.975, the rest 1.00",
    ),
    Stage(
        "unet-fine-palette",
        run=stage_unet_fine_palette,
        steps=800,
        lr=0.0002,
        needs=("unet-fine-blend",),
        writes=("decoders/image",),
        threads=2,
        title="image UNet, off-palette subjects",
        batch="x 64",
        took="6.4 min",
        result="2000 marked pictures in colours outside the world's six beside its 6000, each conditioned on its own renders' features; held-out subject-driven pictures at the eval's seeds, 200 cases: 186 -> 191 right (trained 197 -> 193); its own check from renders' features: held-out subjects 96% -> 100% (cosine to another render 0.887 -> 0.912), plain 100% -> 98% (48 samples)",
    ),
)


def stage(name: str) -> Stage:
    """The first stage of the recipe called ``name`` (the command line's defaults)."""
    for entry in RECIPE:
        if entry.name == name:
            return entry
    raise KeyError(f"no stage {name!r}; the stages are {', '.join(dict.fromkeys(s.name for s in RECIPE))}")


def runs() -> list[Run]:
    """Every run of the rebuild, in order: each stage's first run in the table's order, each resume right after it
    or after the stage it waits for. Checks that every stage comes after the stages it needs."""
    order: list[Run] = []
    waiting: dict[str, list[Run]] = {}
    done: set[str] = set()
    for entry in RECIPE:
        missing = [need for need in entry.needs if need not in done]
        if missing:
            raise ValueError(f"{entry.name} needs {', '.join(missing)}, which the recipe runs later")
        order.append(Run(entry, entry.steps))
        for resume in entry.resumes:
            (waiting.setdefault(resume.after, []) if resume.after else order).append(Run(entry, resume.steps))
        order += waiting.pop(entry.name, [])
        done.add(entry.name)
    if waiting:
        raise ValueError(f"resumes wait for stages the recipe never runs: {', '.join(waiting)}")
    return order


def _command_cell(entry: Stage, all_runs: list[Run]) -> str:
    own = [run for run in all_runs if run.stage is entry]
    first, later = own[0].command(), [run for run in own[1:]]
    cell = f"`{first}`"
    for run in later:
        resume = next(r for r in entry.resumes if r.steps == run.steps)
        when = f"(after `{resume.after}`) " if resume.after else ""
        cell += f", then {when}`{run.command().removeprefix('python tools/train_mini.py ')}`"
    return cell


def docs_table() -> str:
    """The training table of docs/mini.md, from the recipe."""
    all_runs = runs()
    lines = ["| stage | command | steps | wall time | result |", "| --- | --- | --- | --- | --- |"]
    for entry in RECIPE:
        total = max([entry.steps, *(r.steps for r in entry.resumes)])
        cells = [entry.title, _command_cell(entry, all_runs), f"{total} {entry.batch}", entry.took, entry.result]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def places_for(out: Path | None, runs_folder: Path | None, seed: int) -> Places:
    """The places a run writes, defaults filled in."""
    defaults = Places()
    return Places(out=out or defaults.out, runs=runs_folder or defaults.runs, seed=seed)
