"""The encoders' stages: contrastive and attribute alignment, then subjects' marks."""

from __future__ import annotations

import json

import numpy as np
import torch
from torch.nn import functional as F

from codi2_sdk.mini.world import (
    PICTURE_ATTRIBUTES,
    SOUND_ATTRIBUTES,
    picture_to_sound,
)
from codi2_sdk.model.mini.encoders import CNNAudioEncoder, CNNImageEncoder

from ..data import (
    MARK_ATTRIBUTES,
    attribute_labels,
    heldout_marked,
    marked_pictures,
    paired_pictures,
    pick,
    pictures_tensor,
    sounds_tensor,
    train_pictures,
    train_sounds,
)
from ..places import Log, Places, run_stage


def stage_encoders(at: Places, steps: int, lr: float, log: Log) -> None:
    """Both encoders: attribute heads on each, and InfoNCE between a picture and its sound (as ImageBind)."""
    image_encoder = CNNImageEncoder(**at.config.encoders["image"].args)
    audio_encoder = CNNAudioEncoder(**at.config.encoders["audio"].args)
    width = image_encoder.width
    image_heads = torch.nn.ModuleDict({a: torch.nn.Linear(width, len(v)) for a, v in PICTURE_ATTRIBUTES.items()})
    audio_heads = torch.nn.ModuleDict({a: torch.nn.Linear(width, len(v)) for a, v in SOUND_ATTRIBUTES.items()})
    modules = torch.nn.ModuleDict(
        {"image": image_encoder, "audio": audio_encoder, "image_heads": image_heads, "audio_heads": audio_heads}
    )
    batch = 48

    def step_fn(step: int, rng: np.random.Generator, _trained: torch.nn.Module) -> torch.Tensor:
        pictures = pick(paired_pictures(), rng, batch)
        sounds = [picture_to_sound(p) for p in pictures] + pick(train_sounds(), rng, batch)
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

    run_stage(at, "encoders", modules, step_fn, steps=steps, lr=lr, log=log)
    image_encoder.eval(), audio_encoder.eval()
    rng = np.random.default_rng(7)
    with torch.no_grad():
        pictures, sounds = pick(train_pictures(), rng, 256), pick(train_sounds(), rng, 256)
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
    image_encoder.save_pretrained(at.out / "encoders" / "image")
    audio_encoder.save_pretrained(at.out / "encoders" / "audio")
    (at.logs / "feature_norms.json").write_text(json.dumps(norms))


def stage_encoders_marks(at: Places, steps: int, lr: float, log: Log) -> None:
    """The image encoder learns subjects' marks: its texture branch (``detail_channels``, starting at zero) is
    trained to make the mark readable from the pooled feature, while the trained encoder stays frozen and the
    branch adds nothing to plain pictures (distilled), so that the UNets and the LLM that read those features
    keep working. The video encoder keeps the encoder it was trained with."""
    teacher = CNNImageEncoder.from_pretrained(at.out / "encoders" / "image").eval().requires_grad_(False)
    args = {k: v for k, v in teacher.config.items() if not k.startswith("_")}
    student = CNNImageEncoder(**{**args, "detail_channels": at.config.encoders["image"].args["detail_channels"]})
    student.load_state_dict(teacher.state_dict(), strict=False)
    student.requires_grad_(False)
    branch = torch.nn.ModuleList([student.detail, student.detail_proj]).requires_grad_(True)
    marks = MARK_ATTRIBUTES["mark"]
    head = torch.nn.Linear(student.width, len(marks))
    modules = torch.nn.ModuleDict({"branch": branch, "head": head})
    half = 32

    def step_fn(step: int, rng: np.random.Generator, _trained: torch.nn.Module) -> dict[str, torch.Tensor]:
        pictures = pick(train_pictures(), rng, half) + pick(marked_pictures(), rng, half)
        x = pictures_tensor(pictures, rng)
        f = student(x)[:, 0]
        with torch.no_grad():
            kept = teacher(x[:half])[:, 0]
        distill = (f[:half] - kept).square().mean() / kept.square().mean()
        labels = torch.tensor([marks.index(p.mark) for p in pictures])
        # a small head: the mark must be a large move of the feature, not a faint one read by big weights
        mark_loss = F.cross_entropy(head(f), labels) + 1e-4 * head.weight.square().sum()
        return {"loss": mark_loss + 100.0 * distill, "distill": distill.detach()}

    run_stage(at, "encoders-marks", modules, step_fn, steps=steps, lr=lr, log=log)
    student.eval()
    rng = np.random.default_rng(7)
    with torch.no_grad():
        plain = pictures_tensor(pick(train_pictures(), rng, 256), rng)
        new, old = student(plain), teacher(plain)
        drift = float((new - old).norm(dim=-1).mean() / old.norm(dim=-1).mean())
        for name, items in (
            ("training subjects", pick(marked_pictures(), rng, 256)),
            ("held-out subjects", heldout_marked()),
        ):
            x = pictures_tensor(items, rng)
            f = student(x)[:, 0]
            acc = float((head(f).argmax(1) == torch.tensor([marks.index(p.mark) for p in items])).float().mean())
            moved = float((f - teacher(x)[:, 0]).norm(dim=-1).mean() / f.norm(dim=-1).mean())
            log(f"{name}: mark read from the pooled feature {acc:.3f}; the branch moves it {moved:.3f} of its norm")
    log(f"features of plain pictures moved {drift:.4f} of their norm")
    student.save_pretrained(at.out / "encoders" / "image")
