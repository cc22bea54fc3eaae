"""What the stages learn from: the mini world's items (computed on first use), renders as tensors, the task batches and mixes, and cached latents."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch

from codi2_sdk.mini.clips import Clip, all_clips, probe_clip, render_clip
from codi2_sdk.mini.probes import probe_picture, probe_sound
from codi2_sdk.mini.tasks import (
    SUBJECT_TASK,
    TASKS,
    VIDEO_TASKS,
    Case,
    TaskSampler,
    clip_part,
    is_heldout,
)
from codi2_sdk.mini.world import (
    COLOURS,
    MARKS,
    PICTURE_ATTRIBUTES,
    POSITIONS,
    SIZES,
    Picture,
    Sound,
    Subject,
    all_pictures,
    all_sounds,
    all_subjects,
    picture_to_sound,
    render_picture,
    render_sound,
)
from codi2_sdk.model import TrainingExample
from codi2_sdk.model.media_io import image_to_tensor
from codi2_sdk.model.mini.decoders import AudioDecoder, ImageDecoder, VideoDecoder
from codi2_sdk.model.mini.encoders import CNNImageEncoder
from codi2_sdk.model.parts import FrameVideoEncoder

from .places import Log, Places


@functools.cache
def train_pictures() -> list[Picture]:
    return [p for p in all_pictures() if not is_heldout(p)]


@functools.cache
def train_sounds() -> list[Sound]:
    return [s for s in all_sounds() if not is_heldout(s)]


@functools.cache
def paired_pictures() -> list[Picture]:
    """Trained pictures whose sound is trained too."""
    return [p for p in train_pictures() if not is_heldout(picture_to_sound(p))]


@functools.cache
def train_clips() -> list[Clip]:
    return [c for c in all_clips() if not is_heldout(c)]


@functools.cache
def heldout_clips() -> list[Clip]:
    return [c for c in all_clips() if is_heldout(c)]


@functools.cache
def heldout_pictures() -> list[Picture]:
    return [p for p in all_pictures() if is_heldout(p)]


@functools.cache
def heldout_sounds() -> list[Sound]:
    return [s for s in all_sounds() if is_heldout(s)]


@functools.cache
def train_subjects() -> list[Subject]:
    return [s for s in all_subjects() if not is_heldout(s)]


@functools.cache
def marked_pictures() -> list[Picture]:
    """Every trained subject at every size and place."""
    return [s.at(size, where) for s in train_subjects() for size in SIZES for where in POSITIONS]


@functools.cache
def image_unet_items() -> list[Picture]:
    """The pictures the image UNets learn (plain, then marked), in the order of their feature bank."""
    return train_pictures() + marked_pictures()


@functools.cache
def heldout_marked() -> list[Picture]:
    return [s.at(size, where) for s in all_subjects() if is_heldout(s) for size in SIZES for where in POSITIONS]


def trained_items() -> dict[str, list]:
    return {"image": train_pictures(), "audio": train_sounds(), "video": train_clips()}


def heldout_items() -> dict[str, list]:
    return {"image": heldout_pictures(), "audio": heldout_sounds(), "video": heldout_clips()}


MARK_ATTRIBUTES = {**PICTURE_ATTRIBUTES, "mark": ("", *MARKS)}


def pictures_tensor(pictures: list[Picture], rng: np.random.Generator) -> torch.Tensor:
    renders = [render_picture(p, rng) for p in pictures]
    return image_to_tensor(renders, renders[0].width)


def sounds_tensor(sounds: list[Sound], rng: np.random.Generator) -> torch.Tensor:
    return torch.from_numpy(np.stack([render_sound(s, rng) for s in sounds]))


def clips_tensor(clips: list[Clip], rng: np.random.Generator) -> torch.Tensor:
    """Renders as ``(batch, frames, 3, 64, 64)`` in [-1, 1]."""
    frames = [torch.from_numpy(render_clip(clip, rng).astype(np.float32) / 127.5 - 1.0) for clip in clips]
    return torch.stack(frames).permute(0, 1, 4, 2, 3)


def pick(pool: list, rng: np.random.Generator, n: int) -> list:
    return [pool[i] for i in rng.integers(len(pool), size=n)]


def attribute_labels(items: list, attributes: dict[str, tuple]) -> dict[str, torch.Tensor]:
    return {a: torch.tensor([values.index(getattr(i, a)) for i in items]) for a, values in attributes.items()}


def decoder_space(modality: str, decoder: object, items: list, rng: np.random.Generator) -> torch.Tensor:
    if modality == "image":
        return pictures_tensor(items, rng)
    if modality == "video":
        return clips_tensor(items, rng)
    return decoder.mel_input(sounds_tensor(items, rng))  # type: ignore[attr-defined]


def marked_batch_weight(x: torch.Tensor) -> torch.Tensor:
    """The image autoencoders' loss weights: object pixels 10x."""
    return 1.0 + 9.0 * ((1.0 - x).abs().amax(dim=1, keepdim=True) > 0.15).float()


def one_change_apart(items: Sequence[Clip | Picture], attributes: Sequence[str]) -> list[list[int]]:
    """For each of ``items``, the indices of the others that differ from it in exactly one of ``attributes``."""

    def changes(a: Clip | Picture, b: Clip | Picture) -> int:
        return sum(getattr(a, name) != getattr(b, name) for name in attributes)

    return [[j for j, b in enumerate(items) if changes(a, b) == 1] for a in items]


def encoder_input(modality: str, encoder: torch.nn.Module, items: list, rng: np.random.Generator) -> torch.Tensor:
    """What ``encoder`` reads for fresh renders of ``items`` (a clip goes through its MP4, as a user's does)."""
    if isinstance(encoder, FrameVideoEncoder):
        return encoder.preprocess([clip_part(item, rng) for item in items])
    return pictures_tensor(items, rng) if modality == "image" else sounds_tensor(items, rng)


LATENT_CACHE = {"image": (6000, 100, 16), "audio": (6000, 100, 16), "video": (2000, 50, 8)}
"""Per modality: renders cached for a UNet, in batches of, and features of other renders kept per item."""


def item_latents(
    modality: str, decoder: ImageDecoder | AudioDecoder | VideoDecoder, encoder: torch.nn.Module, log: Log
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A UNet's training set (``LATENT_CACHE``): renders' latents of trained items, each one's item, and per item
    features of other renders (what each latent is conditioned on)."""
    pool = trained_items()[modality]
    renders, batch, features = LATENT_CACHE[modality]
    rng = np.random.default_rng(5)
    latents, owners, conds = [], [], {}
    with torch.no_grad():
        for _ in range(renders // batch):
            items = pick(pool, rng, batch)
            latents.append(decoder.encode_latents(decoder_space(modality, decoder, items, rng)))
            owners += [pool.index(i) for i in items]
        for index, item in enumerate(pool):
            conds[index] = encoder(encoder_input(modality, encoder, [item] * features, rng))[:, 0]
    cached, owner_ids = torch.cat(latents), torch.tensor(owners)
    bank = torch.stack([conds[i] for i in range(len(pool))])  # (items, features, width)
    log(f"cached {len(cached)} latents {tuple(cached.shape[1:])}, {bank.shape[1]} features per item")
    return cached, owner_ids, bank


def task_batches(
    tasks: tuple[str, ...],
    weights: list[float] | None = None,
    *,
    keep: Callable[[Case], bool] | None = None,
    shots: int | None = None,
) -> Callable[[random.Random, int], list]:
    """Batches of training examples of ``tasks`` (drawn by ``weights``), only cases that ``keep`` accepts;
    ``shots`` sets the in-context tasks' number of examples (default: the sampler's mix)."""

    def draw(rng: random.Random, batch_size: int) -> list[TrainingExample]:
        sampler = TaskSampler(np.random.default_rng(rng.getrandbits(63)))
        chosen = rng.choices(tasks, weights=weights, k=batch_size)
        cases = [sampler.sample(task, shots=shots) for task in chosen]
        if keep is not None:
            for i, task in enumerate(chosen):
                while not keep(cases[i]):
                    cases[i] = sampler.sample(task, shots=shots)
        return [TrainingExample(messages=c.messages, answer=c.answer, examples=c.examples) for c in cases]

    return draw


def own_outputs(pools: dict, rate: float) -> Callable[[random.Random, TrainingExample], TrainingExample]:
    """Swap the media of a training case's conversation (not its answer, not its examples) for the model's
    own decoded media of the same item, each with probability ``rate``."""
    from codi2_sdk.content import Audio, Image, Video

    readers = {
        Image: lambda part: probe_picture(part.to_pil()),
        Audio: lambda part: probe_sound(part.to_numpy(), part.sample_rate),
        Video: lambda part: probe_clip(part.to_frames()),
    }
    kinds = {Image: "image", Audio: "audio", Video: "video"}

    def swap(rng: random.Random, example: TrainingExample) -> TrainingExample:
        messages = []
        for message in example.messages:
            parts = []
            for part in message.parts:
                pool = pools.get(kinds.get(type(part), ""))
                if pool is not None and rng.random() < rate:
                    made = pool.get(readers[type(part)](part), [])
                    part = made[rng.randrange(len(made))] if made else part
                parts.append(part)
            messages.append(message.model_copy(update={"parts": parts}))
        return TrainingExample(messages=messages, answer=example.answer, examples=example.examples)

    return swap


def marked_latents(
    decoder: ImageDecoder, encoder: CNNImageEncoder, log: Log
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The image UNets' training set: 3000 plain and 3000 marked pictures' latents, each one's item, and per item
    8 features of other renders (what each latent is conditioned on)."""
    pool = image_unet_items()
    rng = np.random.default_rng(5)
    latents, owners, conds = [], [], {}
    with torch.no_grad():
        for source in (train_pictures(), marked_pictures()):
            for _ in range(3000 // 100):
                items = pick(source, rng, 100)
                latents.append(decoder.encode_latents(pictures_tensor(items, rng)))
                owners += [pool.index(i) for i in items]
        for index, item in enumerate(pool):
            conds[index] = encoder(pictures_tensor([item] * 8, rng))[:, 0]
    cached, owner_ids = torch.cat(latents), torch.tensor(owners)
    bank = torch.stack([conds[i] for i in range(len(pool))])
    log(f"cached {len(cached)} latents (half marked), {bank.shape[1]} features per item")
    return cached, owner_ids, bank


def off_palette_latents(
    decoder: ImageDecoder, encoder: CNNImageEncoder, count: int, first_id: int, log: Log
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` marked pictures of any shape, mark, size and position painted in random colours at least 80 away
    (RGB distance) from the six named ones and from white, so no held-out subject is among them: their latents,
    their ids (from ``first_id``) and per picture 8 features of other renders of it."""
    rng = np.random.default_rng(29)
    named = np.array([*COLOURS.values(), (255, 255, 255)], dtype=np.float64)
    shapes = sorted(PICTURE_ATTRIBUTES["shape"])  # this order drew the shipped UNet's pictures
    latents, features = [], []
    with torch.no_grad():
        for _ in range(count // 100):
            batch: list[tuple[Picture, tuple[int, int, int]]] = []
            while len(batch) < 100:
                rgb = rng.integers(0, 256, 3)
                if np.linalg.norm(named - rgb, axis=1).min() < 80:
                    continue
                picture = Picture(
                    str(rng.choice(shapes)),
                    "red",  # not drawn: ``rgb`` replaces it
                    str(rng.choice(PICTURE_ATTRIBUTES["size"])),
                    str(rng.choice(PICTURE_ATTRIBUTES["position"])),
                    str(rng.choice(MARKS)),
                )
                batch.append((picture, (int(rgb[0]), int(rgb[1]), int(rgb[2]))))
            renders = [[render_picture(p, rng, rgb=rgb) for p, rgb in batch] for _ in range(9)]
            latents.append(decoder.encode_latents(image_to_tensor(renders[0], 64)))
            features.append(torch.stack([encoder(image_to_tensor(r, 64))[:, 0] for r in renders[1:]], dim=1))
    cached, bank = torch.cat(latents), torch.cat(features)
    log(f"{len(cached)} off-palette marked pictures cached, 8 features each")
    return cached, torch.arange(first_id, first_id + len(cached)), bank


OWN_FEATURE_TASKS = ("text_to_video", "image_to_video", "in_context_video_edit")
"""The tasks whose answer is a clip alone: the teacher-forced start tag is where generation writes it."""


DIAMOND_OR_SQUARE = ("diamond", "square")


def example_pool(
    at: Places, draw: Callable[[random.Random, int], list[TrainingExample]], *, size: int, log: Log
) -> Callable[[random.Random, int], list[TrainingExample]]:
    """``size`` examples drawn by ``draw`` once, then batches drawn from them: for focus sets whose filter
    rejects most cases (about 0.3 s an example for 3-shot video edits of diamonds)."""
    pool = draw(random.Random(at.seed + 51), size)
    log(f"{len(pool)} examples pooled")
    return lambda rng, batch_size: [pool[rng.randrange(len(pool))] for _ in range(batch_size)]


def mix_weights(tasks: tuple[str, ...], video_edit_weight: float) -> list[float]:
    """The late LLM stages' task weights: in-context video edits ``video_edit_weight``, other video and
    in-context tasks 1.5, the rest 1."""
    return [
        video_edit_weight
        if t == "in_context_video_edit"
        else 1.5
        if t in VIDEO_TASKS or t.startswith("in_context")
        else 1.0
        for t in tasks
    ]


def late_mix(
    video_edit_weight: float,
    *,
    swap: Callable[[random.Random, TrainingExample], TrainingExample] | None = None,
    focus: Callable[[random.Random, int], list[TrainingExample]] | None = None,
) -> Callable[[random.Random, int], list[TrainingExample]]:
    """The late LLM stages' batches: a quarter subject cases, ``focus`` (if given) another quarter, the rest the
    other tasks weighted by ``mix_weights`` (each passed through ``swap``, if given)."""
    others = tuple(t for t in TASKS if t != SUBJECT_TASK)
    draw, subjects = task_batches(others, mix_weights(others, video_edit_weight)), task_batches((SUBJECT_TASK,))

    def batches(rng: random.Random, batch_size: int) -> list[TrainingExample]:
        share = batch_size // 4
        focused = focus(rng, share) if focus is not None else []
        mixed = draw(rng, batch_size - share - len(focused))
        if swap is not None:
            mixed = [swap(rng, example) for example in mixed]
        return mixed + subjects(rng, share) + focused

    return batches
