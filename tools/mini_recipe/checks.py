"""What each stage measures before it installs its weights: probes read decoded samples, own-feature checks."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.nn import functional as F

from codi2_sdk.mini.clips import Clip, probe_clip
from codi2_sdk.mini.probes import probe_picture, probe_sound
from codi2_sdk.mini.tasks import (
    TaskSampler,
)
from codi2_sdk.mini.world import (
    Picture,
)
from codi2_sdk.model import CoDi2Model
from codi2_sdk.model.media_io import image_to_tensor
from codi2_sdk.model.mini.decoders import AudioDecoder, ImageDecoder, VideoDecoder
from codi2_sdk.model.mini.encoders import CNNImageEncoder

from .data import (
    OWN_FEATURE_TASKS,
    encoder_input,
    heldout_items,
    heldout_marked,
    pick,
    pictures_tensor,
    train_pictures,
    trained_items,
)
from .places import Log


def probe_outputs(
    modality: str, decoder: ImageDecoder | AudioDecoder | VideoDecoder, outputs: torch.Tensor, items: list
) -> float:
    """The share of decoded ``outputs`` the probe reads back as their items (a mark is not probed)."""
    items = [i.with_("mark", "") if isinstance(i, Picture) else i for i in items]
    media = decoder.to_media(outputs, generator=torch.Generator().manual_seed(0))
    if modality == "image":
        found = [probe_picture(m.to_pil()) for m in media]
    elif modality == "video":
        found = [probe_clip(m.to_frames()) for m in media]
    else:
        found = [probe_sound(m.to_numpy()) for m in media]
    return float(np.mean([a == b for a, b in zip(found, items, strict=True)]))


def check_samples(
    modality: str, decoder: ImageDecoder | AudioDecoder | VideoDecoder, encoder: torch.nn.Module, log: Log
) -> None:
    """Log the probe's reading of samples (64; clips 32) from fresh features of trained items, then of held-out
    ones."""
    rng = np.random.default_rng(13)
    for name, pool in (("trained", trained_items()[modality]), ("held-out", heldout_items()[modality])):
        items = pick(pool, rng, 32 if modality == "video" else 64)
        with torch.no_grad():
            cond = encoder(encoder_input(modality, encoder, items, rng))[:, 0]
            for guidance in (1.0, 3.0):
                generator = torch.Generator().manual_seed(0)
                out = decoder.sample(cond, steps=25, guidance_scale=guidance, generator=generator)
                log(
                    f"probe accuracy of samples from fresh features of {name} items, 25 steps, guidance "
                    f"{guidance}: {probe_outputs(modality, decoder, out, items):.3f}"
                )


def check_image_samples(decoder: ImageDecoder, encoder: CNNImageEncoder, log: Log) -> None:
    """Log the probe's reading of samples from fresh features, plain and of held-out subjects, and their feature
    cosine to another render of the same picture (beside two renders' cosine)."""
    rng = np.random.default_rng(13)
    plain, held = pick(train_pictures(), rng, 48), pick(heldout_marked(), rng, 48)
    with torch.no_grad():
        for name, items in (("plain", plain), ("held-out subjects", held)):
            x = pictures_tensor(items, rng)
            out = decoder.sample(
                encoder(x)[:, 0], steps=25, guidance_scale=3.0, generator=torch.Generator().manual_seed(0)
            )
            made = decoder.to_media(out, generator=torch.Generator().manual_seed(0))
            f = encoder(image_to_tensor(made, 64))[:, 0]
            same = F.cosine_similarity(f, encoder(pictures_tensor(items, rng))[:, 0]).mean()
            floor = F.cosine_similarity(encoder(x)[:, 0], encoder(pictures_tensor(items, rng))[:, 0]).mean()
            log(
                f"{name}: probe accuracy of samples {probe_outputs('image', decoder, out, items):.3f}; feature "
                f"cosine to another render {float(same):.3f} (render to render {float(floor):.3f})"
            )


def llm_features(model: CoDi2Model, cases: int, *, heldout: bool, seed: int) -> tuple[list[Clip], torch.Tensor]:
    """The finished model's own features for the clips ``cases`` cases of ``OWN_FEATURE_TASKS`` ask for (any
    shots; trained or held-out items): the asked clips and the features (raw scale, as the decoder gets them)."""
    sampler = TaskSampler(np.random.default_rng(seed), heldout=heldout)
    pick_task = random.Random(seed)
    items: list[Clip] = []
    features = []
    with torch.no_grad():
        for start in range(0, cases, 32):
            drawn = [sampler.sample(pick_task.choice(OWN_FEATURE_TASKS)) for _ in range(min(32, cases - start))]
            inputs = model.embed([model.prompts.build(c.examples or [], c.messages, answer=c.answer) for c in drawn])
            out = model.llm(
                inputs_embeds=inputs.embeds, attention_mask=inputs.attention_mask, output_hidden_states=True
            )
            for b, position, modality, _target in inputs.targets:
                unit = model.predict_feature(modality, out.hidden_states[-1][b, position])
                features.append(model.restore_scale(modality, unit))
                items.append(drawn[b].expected[0])
    return items, torch.stack(features)


def check_own_features(decoder: VideoDecoder, checks: dict[bool, tuple[list[Clip], torch.Tensor]], log: Log) -> None:
    """Log the probe's reading of clips decoded (25 steps, guidance 3, one sample) from the LLM's own features
    ``checks`` (held-out or not: clips and features, of :func:`llm_features`)."""
    for heldout, (items, features) in checks.items():
        with torch.no_grad():
            out = decoder.sample(features, steps=25, guidance_scale=3.0, generator=torch.Generator().manual_seed(0))
        log(
            f"probe accuracy of clips from the LLM's features, {'held-out' if heldout else 'trained'} items: "
            f"{probe_outputs('video', decoder, out, items):.3f}"
        )
