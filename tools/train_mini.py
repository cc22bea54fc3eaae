#!/usr/bin/env python
"""Train codi2-mini, one stage at a time, into the package's weights folder.

    python tools/train_mini.py encoders              # contrastive + attribute alignment of both encoders
    python tools/train_mini.py vae-image             # the image decoder's autoencoder
    python tools/train_mini.py vae-audio             # the audio decoder's autoencoder (log-mel)
    python tools/train_mini.py unet-image            # latent diffusion on the image autoencoder
    python tools/train_mini.py unet-audio
    python tools/train_mini.py llm                   # the tiny Llama on the task mix (needs encoders)
    python tools/train_mini.py lora                  # the held-out skill, taught by LoRA (needs all above)
    python tools/train_mini.py own-outputs --out DIR # an experiment, not in the shipped weights (see the stage)

Each stage is seeded, resumable (its state is kept under runs/mini/<stage>/ every few hundred steps;
run the same command again to resume), logs to codi2_sdk/weights/codi2-mini/training/<stage>.log and
prints its wall time. Stages on the same line of dependencies can run side by side, one thread each:
encoders | vae-image | vae-audio, then unet-image | unet-audio | llm, then lora.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import random
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codi2_sdk.mini.config import LORA, mini_config  # noqa: E402
from codi2_sdk.mini.probes import probe_picture, probe_sound  # noqa: E402
from codi2_sdk.mini.tasks import LORA_TASK, TASKS, TaskSampler, is_heldout, picture_part, vocabulary  # noqa: E402
from codi2_sdk.mini.world import (  # noqa: E402
    PICTURE_ATTRIBUTES,
    SOUND_ATTRIBUTES,
    Picture,
    Sound,
    all_pictures,
    all_sounds,
    picture_to_sound,
    render_picture,
    render_sound,
)
from codi2_sdk.model import CoDi2Model, TrainingExample  # noqa: E402
from codi2_sdk.model.decoders import AudioDecoder, ImageDecoder  # noqa: E402
from codi2_sdk.model.encoders import CNNAudioEncoder, CNNImageEncoder, image_to_tensor  # noqa: E402
from codi2_sdk.model.registry import build_kind  # noqa: E402
from codi2_sdk.model.tokenizer import build_word_tokenizer  # noqa: E402
from codi2_sdk.train import StepLog, TrainingLog, finetune, train_loop  # noqa: E402

OUT = ROOT / "codi2_sdk" / "weights" / "codi2-mini"
RUNS = ROOT / "runs" / "mini"
LOGS = OUT / "training"
CONFIG = mini_config()
SEED = 0  # --seed: offsets every stage's data seed and seeds torch (weights' init, noise)
TRAIN_PICTURES = [p for p in all_pictures() if not is_heldout(p)]
TRAIN_SOUNDS = [s for s in all_sounds() if not is_heldout(s)]
PAIRED_PICTURES = [p for p in TRAIN_PICTURES if not is_heldout(picture_to_sound(p))]


class Log:
    """Appends lines to the stage's log file and echoes them."""

    def __init__(self, stage: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.path = LOGS / f"{stage}.log"
        self.began = time.perf_counter()

    def __call__(self, message: str) -> None:
        line = f"[{time.perf_counter() - self.began:8.1f}s] {message}"
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


# -- data ------------------------------------------------------------------------------------------


def pictures_tensor(pictures: list[Picture], rng: np.random.Generator) -> torch.Tensor:
    renders = [render_picture(p, rng) for p in pictures]
    return image_to_tensor(renders, renders[0].width)


def sounds_tensor(sounds: list[Sound], rng: np.random.Generator) -> torch.Tensor:
    return torch.from_numpy(np.stack([render_sound(s, rng) for s in sounds]))


def pick(pool: list, rng: np.random.Generator, n: int) -> list:
    return [pool[i] for i in rng.integers(len(pool), size=n)]


def attribute_labels(items: list, attributes: dict[str, tuple]) -> dict[str, torch.Tensor]:
    return {a: torch.tensor([values.index(getattr(i, a)) for i in items]) for a, values in attributes.items()}


# -- the loop ------------------------------------------------------------------------------------


def run_stage(
    stage: str,
    modules: torch.nn.Module,
    step_fn: Callable[[int, np.random.Generator], torch.Tensor],
    *,
    steps: int,
    lr: float,
    log: Log,
    ema: object | None = None,
    every: int = 50,
    save_every: int = 250,
) -> None:
    """The project's training loop on a stage: resumable from runs/mini/<stage>/state.pt, seeded per stage."""

    def report(entry: StepLog) -> None:
        log(f"step {entry.step}/{steps} loss {entry.loss:.5f} lr {entry.lr:.2e} ({entry.seconds:.0f} s in this run)")

    train_loop(
        modules,
        step_fn,
        steps=steps,
        lr=lr,
        rng=np.random.default_rng(zlib.crc32(stage.encode()) + SEED),
        warmup_steps=min(100, steps // 10),
        state_path=RUNS / stage / "state.pt",
        save_every=save_every,
        ema=ema,
        log=report,
        log_every=every,
    )


# -- stages ----------------------------------------------------------------------------------------


def stage_encoders(steps: int, log: Log) -> None:
    """Both encoders: attribute heads on each, and InfoNCE between a picture and its sound (as ImageBind)."""
    image_encoder = CNNImageEncoder(**CONFIG.encoders["image"].args)
    audio_encoder = CNNAudioEncoder(**CONFIG.encoders["audio"].args)
    width = image_encoder.width
    image_heads = torch.nn.ModuleDict({a: torch.nn.Linear(width, len(v)) for a, v in PICTURE_ATTRIBUTES.items()})
    audio_heads = torch.nn.ModuleDict({a: torch.nn.Linear(width, len(v)) for a, v in SOUND_ATTRIBUTES.items()})
    modules = torch.nn.ModuleDict(
        {"image": image_encoder, "audio": audio_encoder, "image_heads": image_heads, "audio_heads": audio_heads}
    )
    batch = 48

    def step_fn(step: int, rng: np.random.Generator, _trained: torch.nn.Module) -> torch.Tensor:
        pictures = pick(PAIRED_PICTURES, rng, batch)
        sounds = [picture_to_sound(p) for p in pictures] + pick(TRAIN_SOUNDS, rng, batch)
        f = image_encoder(pictures_tensor(pictures, rng))[:, 0]
        g = audio_encoder(sounds_tensor(sounds, rng))[:, 0]
        loss = sum(
            F.cross_entropy(image_heads[a](f), y) for a, y in attribute_labels(pictures, PICTURE_ATTRIBUTES).items()
        )
        loss = loss + sum(
            F.cross_entropy(audio_heads[a](g), y) for a, y in attribute_labels(sounds, SOUND_ATTRIBUTES).items()
        )
        # InfoNCE with soft targets: pictures that map to the same sound are all positives
        logits = F.normalize(f, dim=-1) @ F.normalize(g[:batch], dim=-1).T / 0.1
        same = torch.tensor([[picture_to_sound(p) == s for s in sounds[:batch]] for p in pictures], dtype=torch.float)
        targets = same / same.sum(dim=1, keepdim=True)
        loss = loss + 0.5 * (
            F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, same.T / same.T.sum(1, keepdim=True))
        )
        return loss

    run_stage("encoders", modules, step_fn, steps=steps, lr=2e-3, log=log)
    image_encoder.eval(), audio_encoder.eval()
    rng = np.random.default_rng(7)
    with torch.no_grad():
        pictures, sounds = pick(TRAIN_PICTURES, rng, 256), pick(TRAIN_SOUNDS, rng, 256)
        f = image_encoder(pictures_tensor(pictures, rng))[:, 0]
        g = audio_encoder(sounds_tensor(sounds, rng))[:, 0]
        for name, feats, items, heads, attrs in (
            ("image", f, pictures, image_heads, PICTURE_ATTRIBUTES),
            ("audio", g, sounds, audio_heads, SOUND_ATTRIBUTES),
        ):
            labels = attribute_labels(items, attrs)
            acc = {a: float((heads[a](feats).argmax(1) == labels[a]).float().mean()) for a in attrs}
            log(f"{name} encoder attribute accuracy on fresh renders: {acc}")
    norms = {"image": float(f.norm(dim=-1).mean()), "audio": float(g.norm(dim=-1).mean())}
    log(f"feature norms {norms}")
    image_encoder.save_pretrained(OUT / "encoders" / "image")
    audio_encoder.save_pretrained(OUT / "encoders" / "audio")
    (LOGS / "feature_norms.json").write_text(json.dumps(norms))


def decoder_space(modality: str, decoder: object, items: list, rng: np.random.Generator) -> torch.Tensor:
    if modality == "image":
        return pictures_tensor(items, rng)
    return decoder.mel_input(sounds_tensor(items, rng))  # type: ignore[attr-defined]


def fresh_decoder(modality: str) -> ImageDecoder | AudioDecoder:
    return build_kind("decoder", CONFIG.decoders[modality].kind, CONFIG.decoders[modality].args)  # type: ignore[return-value]


def probe_outputs(modality: str, decoder: ImageDecoder | AudioDecoder, outputs: torch.Tensor, items: list) -> float:
    media = decoder.to_media(outputs, generator=torch.Generator().manual_seed(0))
    if modality == "image":
        found = [probe_picture(m.to_pil()) for m in media]
    else:
        found = [probe_sound(m.to_numpy()) for m in media]
    return float(np.mean([a == b for a, b in zip(found, items, strict=True)]))


def stage_vae(modality: str, steps: int, log: Log) -> None:
    """The decoder's autoencoder; object pixels (or loud mel bins) weigh 10x (5x) in the loss from step 0."""
    decoder = fresh_decoder(modality)
    vae = decoder.vae
    pool = TRAIN_PICTURES if modality == "image" else TRAIN_SOUNDS
    batch = 16

    def step_fn(step: int, rng: np.random.Generator, _trained: torch.nn.Module) -> torch.Tensor:
        x = decoder_space(modality, decoder, pick(pool, rng, batch), rng)
        if modality == "image":
            weight = 1.0 + 9.0 * ((1.0 - x).abs().amax(dim=1, keepdim=True) > 0.15).float()
        else:
            weight = 1.0 + 4.0 * (x > -1.0).float()
        posterior = vae.encode(x).latent_dist
        y = vae.decode(posterior.sample()).sample
        error = y - x
        return (weight * error.abs()).mean() + (weight * error.square()).mean() + 1e-6 * posterior.kl().mean()

    run_stage(f"vae-{modality}", vae, step_fn, steps=steps, lr=1e-3, log=log)
    vae.eval()
    rng = np.random.default_rng(11)
    with torch.no_grad():
        items = pick(pool, rng, 256)
        x = decoder_space(modality, decoder, items, rng)
        latents = vae.encode(x).latent_dist.mean
        std = float(latents.std())
        vae.register_to_config(scaling_factor=1.0 / std)
        recon = vae.decode(latents).sample
    log(
        f"latent std {std:.4f}; probe accuracy of reconstructions: {probe_outputs(modality, decoder, recon, items):.3f}"
    )
    vae.save_pretrained(OUT / "decoders" / modality / "vae")


def stage_unet(modality: str, steps: int, log: Log) -> None:
    """Latent diffusion conditioned on the (frozen) encoder's pooled feature of another render of the item."""
    from diffusers import AutoencoderKL
    from diffusers.training_utils import EMAModel

    decoder = fresh_decoder(modality)
    decoder.vae = AutoencoderKL.from_pretrained(OUT / "decoders" / modality / "vae").eval()
    decoder.vae.requires_grad_(False)
    encoder_cls = CNNImageEncoder if modality == "image" else CNNAudioEncoder
    encoder = encoder_cls.from_pretrained(OUT / "encoders" / modality).eval()
    pool = TRAIN_PICTURES if modality == "image" else TRAIN_SOUNDS

    # Cache: many renders' latents, and per item a bank of conditioning features from other renders.
    rng = np.random.default_rng(5)
    latents, owners, conds = [], [], {}
    with torch.no_grad():
        for _ in range(6000 // 100):
            items = pick(pool, rng, 100)
            latents.append(decoder.encode_latents(decoder_space(modality, decoder, items, rng)))
            owners += [pool.index(i) for i in items]
        for index, item in enumerate(pool):
            x = pictures_tensor([item] * 16, rng) if modality == "image" else sounds_tensor([item] * 16, rng)
            conds[index] = encoder(x)[:, 0]
    cached, owner_ids = torch.cat(latents), torch.tensor(owners)
    bank = torch.stack([conds[i] for i in range(len(pool))])  # (items, 16, width)
    log(f"cached {len(cached)} latents, {bank.shape[1]} features per item")

    unet = decoder.unet
    ema = EMAModel(unet.parameters(), decay=0.998)
    batch = 64
    scheduler = decoder.scheduler

    def step_fn(step: int, rng: np.random.Generator, _trained: torch.nn.Module) -> torch.Tensor:
        idx = torch.from_numpy(rng.integers(len(cached), size=batch))
        z = cached[idx]
        cond = bank[owner_ids[idx], torch.from_numpy(rng.integers(bank.shape[1], size=batch))]
        cond = cond * (torch.from_numpy(rng.random(batch)) >= 0.1).float()[:, None]
        noise = torch.randn_like(z)
        t = torch.from_numpy(rng.integers(scheduler.config.num_train_timesteps, size=batch))
        return decoder.diffusion_loss(z, cond, noise, t)

    run_stage(f"unet-{modality}", unet, step_fn, steps=steps, lr=5e-4, log=log, ema=ema)
    ema.copy_to(unet.parameters())
    unet.eval()
    rng = np.random.default_rng(13)
    items = pick(pool, rng, 64)
    with torch.no_grad():
        x = pictures_tensor(items, rng) if modality == "image" else sounds_tensor(items, rng)
        cond = encoder(x)[:, 0]
        for guidance in (1.0, 3.0):
            out = decoder.sample(cond, steps=25, guidance_scale=guidance, generator=torch.Generator().manual_seed(0))
            log(
                f"probe accuracy of samples from fresh features, 25 steps, guidance {guidance}: "
                f"{probe_outputs(modality, decoder, out, items):.3f}"
            )
    target = OUT / "decoders" / modality
    for part in ("unet", "scheduler"):
        shutil.rmtree(target / part, ignore_errors=True)
    decoder.save_pretrained(target)


def install(model: CoDi2Model, parts: list[str]) -> None:
    """Write ``model``'s checkpoint and copy the named parts into the package's folder (the rest stays)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for part in parts:
            source, target = Path(tmp) / part, OUT / part
            if source.is_dir():
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(source, target)
            else:
                shutil.copy(source, target)


def task_batches(tasks: tuple[str, ...], weights: list[float] | None = None) -> Callable[[random.Random, int], list]:
    def draw(rng: random.Random, batch_size: int) -> list[TrainingExample]:
        sampler = TaskSampler(np.random.default_rng(rng.getrandbits(63)))
        chosen = rng.choices(tasks, weights=weights, k=batch_size)
        cases = [sampler.sample(task) for task in chosen]
        return [TrainingExample(messages=c.messages, answer=c.answer, examples=c.examples) for c in cases]

    return draw


def stage_llm(steps: int, log: Log) -> None:
    """The tiny Llama, trained from scratch on the task mix with the frozen encoders."""
    norms = json.loads((LOGS / "feature_norms.json").read_text())
    config = CONFIG.model_copy(update={"feature_norms": norms})
    model = CoDi2Model.from_config(config, tokenizer=build_word_tokenizer(vocabulary()), seed=SEED)
    for modality, encoder_cls in (("image", CNNImageEncoder), ("audio", CNNAudioEncoder)):
        model.encoders[modality] = encoder_cls.from_pretrained(OUT / "encoders" / modality).eval().requires_grad_(False)
    # The output head regresses whitened image features (size lies in a direction of small variance).
    rng = np.random.default_rng(17)
    renders = [picture_part(p, rng) for p in TRAIN_PICTURES for _ in range(8)]
    model.fit_whitening("image", renders)
    log(f"LLM parameters {sum(p.numel() for p in model.llm.parameters()):,}; vocabulary {len(model.tokenizer)}")
    finetune(
        model,
        task_batches(TASKS),
        steps=steps,
        batch_size=32,
        lr=1e-3,
        lora=None,
        warmup_steps=100,
        seed=SEED,
        checkpoint_dir=RUNS / "llm",
        checkpoint_every=100,
        log=lambda e: log(e.to_json()),
        log_every=25,
        progress=False,
    )
    install(model, ["llm", "tokenizer", "projectors.safetensors", "codi2.json"])


def stage_lora(steps: int, log: Log) -> None:
    """Teach the frozen model a skill it never saw ("move it one step right") with a LoRA, 50% replay."""
    from codi2_sdk.backends.local import LocalBackend
    from codi2_sdk.mini.evaluate import evaluate

    model = CoDi2Model.from_pretrained(OUT)
    backend = LocalBackend(model)
    check = [LORA_TASK, "instructed_image_edit", "in_context_image_edit", "text_to_image"]
    before = evaluate(backend, cases=40, tasks=check, shots=(2,), seed=99, progress=False)
    log(f"before: { {k: v['accuracy'] for k, v in before['tasks'].items()} }")
    replay = task_batches(TASKS)
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
        lr=1e-3,
        lora=LORA,
        seed=SEED,
        checkpoint_dir=RUNS / "lora",
        log=record,
        log_every=25,
        progress=False,
    )
    after = evaluate(backend, cases=40, tasks=check, shots=(2,), seed=99, progress=False)
    log(f"after: { {k: v['accuracy'] for k, v in after['tasks'].items()} }")
    (LOGS / "lora.json").write_text(json.dumps({"before": before, "after": after}, indent=1))
    install(model, ["adapter", "llm", "projectors.safetensors", "codi2.json"])


def decoded_sounds(model: CoDi2Model, per_sound: int, log: Log) -> dict[Sound, list]:
    """Clips the model's own audio decoder makes from the encoder features of fresh renders, kept where the
    probe hears the sound they were made from (so a description of them can be taught)."""
    from codi2_sdk.mini.tasks import sound_part

    rng = np.random.default_rng(SEED + 41)
    pool: dict[Sound, list] = {}
    settings = model.config.defaults.audio
    made = kept = 0
    for sound in TRAIN_SOUNDS:
        for _ in range(per_sound):
            feature = model.encode("audio", [sound_part(sound, rng)])[0, 0]
            generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
            steps = model.decoders["audio"].iter_decode(feature[None], settings, generator=generator)
            while True:
                try:
                    next(steps)
                except StopIteration as done:
                    clip = done.value[0]
                    break
            made += 1
            if probe_sound(clip.to_numpy(), clip.sample_rate) == sound:
                pool.setdefault(sound, []).append(clip)
                kept += 1
    log(f"decoded {made} clips from fresh renders, kept {kept} the probe hears as their sound")
    return pool


def stage_own_outputs(steps: int, log: Log) -> None:
    """The LoRA again, on the shipped model: describe clips its own decoder made (it had heard only renders),
    with more in-context image edits and the whole task mix (the LoRA skill too) replayed; heads frozen.

    An experiment, not applied to the shipped weights (run it with ``--out`` on a copy): it lifts describing the
    model's own clips from 0.80 to 0.97 (40 clips), but held-out audio tasks drop by 0.05 to 0.10 at
    ``codi2 eval --cases 20`` (text_to_audio 0.80 -> 0.70). Teaching it without that cost needs the decoded
    pool in the LLM stage itself (issue 11, item 5).
    """
    from codi2_sdk.messages import assistant, user

    model = CoDi2Model.from_pretrained(OUT)
    with torch.no_grad():
        pool = decoded_sounds(model, per_sound=3, log=log)
    sounds = sorted(pool)
    replay = task_batches((*TASKS, LORA_TASK))
    edits = task_batches(("in_context_image_edit",))

    def own_clips(rng: random.Random, count: int) -> list[TrainingExample]:
        out = []
        for _ in range(count):
            sound = sounds[rng.randrange(len(sounds))]
            clip = pool[sound][rng.randrange(len(pool[sound]))]
            out.append(
                TrainingExample(messages=[user(clip, "what do you hear?")], answer=assistant(f"{sound.describe()}."))
            )
        return out

    def mixed(rng: random.Random, batch_size: int) -> list[TrainingExample]:
        eighth = batch_size // 8
        return own_clips(rng, eighth) + edits(rng, eighth) + replay(rng, batch_size - 2 * eighth)

    finetune(
        model,
        mixed,
        steps=steps,
        batch_size=32,
        lr=3e-4,
        lora=LORA,
        train_projectors=False,  # the heads stay as trained, so held-out outputs keep their quality
        seed=SEED + 7,
        checkpoint_dir=RUNS / "own-outputs",
        log=lambda e: log(e.to_json()),
        log_every=25,
        progress=False,
    )
    install(model, ["adapter", "codi2.json"])


STAGES: dict[str, tuple[Callable[..., None], int]] = {
    "encoders": (stage_encoders, 800),
    "vae-image": (lambda steps, log: stage_vae("image", steps, log), 3000),
    "vae-audio": (lambda steps, log: stage_vae("audio", steps, log), 2000),
    "unet-image": (lambda steps, log: stage_unet("image", steps, log), 2500),
    "unet-audio": (lambda steps, log: stage_unet("audio", steps, log), 2000),
    "llm": (stage_llm, 2000),
    "lora": (stage_lora, 300),
    "own-outputs": (stage_own_outputs, 300),
}


def main() -> None:
    global OUT, RUNS, LOGS, SEED
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=list(STAGES))
    parser.add_argument("--steps", type=int, help="training steps (default: the stage's own)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT, help="checkpoint folder to write (default: the package's)")
    parser.add_argument("--runs", type=Path, default=RUNS, help="folder for resumable states")
    args = parser.parse_args()
    OUT, RUNS, LOGS, SEED = args.out, args.runs, args.out / "training", args.seed
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    run, default_steps = STAGES[args.stage]
    RUNS.mkdir(parents=True, exist_ok=True)
    lock = (RUNS / f"{args.stage}.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another run of {args.stage} is going; waiting for it to finish, then resuming", flush=True)
        fcntl.flock(lock, fcntl.LOCK_EX)  # one run of a stage at a time: they share its state file
    log = Log(args.stage)
    steps = args.steps or default_steps
    log(f"stage {args.stage}: {steps} steps, seed {args.seed}, {args.threads} thread(s)")
    began = time.perf_counter()
    run(steps, log)
    log(f"stage {args.stage} done in {(time.perf_counter() - began) / 60:.1f} min")


if __name__ == "__main__":
    main()
