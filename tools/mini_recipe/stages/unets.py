"""The decoders' UNets: latent diffusion per medium, then marks, finer latents and noisy conditions."""

from __future__ import annotations

import functools

import numpy as np
import torch

from codi2_sdk.content import MediaModality
from codi2_sdk.mini.clips import CLIP_ATTRIBUTES, all_clips
from codi2_sdk.model import CoDi2Config, CoDi2Model
from codi2_sdk.model.mini.decoders import AudioDecoder, ImageDecoder, VideoDecoder
from codi2_sdk.model.mini.encoders import CNNImageEncoder

from ..checks import check_image_samples, check_own_features, check_samples, llm_features
from ..data import (
    MARK_ATTRIBUTES,
    encoder_input,
    image_unet_items,
    item_latents,
    marked_latents,
    off_palette_latents,
    one_change_apart,
    train_clips,
)
from ..install import fresh_decoder, install_decoder, item_encoder, video_encoder
from ..places import Log, Places, run_stage

BLEND_RATE, BLEND_SHARE = 0.3, 0.4
"""The share of a UNet's conditions blended with another item's feature, and how much of it at most."""


def train_unet(
    at: Places,
    stage: str,
    decoder: ImageDecoder | AudioDecoder | VideoDecoder,
    cached: torch.Tensor,
    owner_ids: torch.Tensor,
    bank: torch.Tensor,
    *,
    batch: int,
    steps: int,
    log: Log,
    save_every: int = 250,
    lr: float,
    cond_noise: float = 0.0,
    blend_with: list[list[int]] | None = None,
) -> None:
    """A decoder's UNet on cached latents, each conditioned on a feature of another render of its item (10%
    dropped to zeros, for guidance; with ``cond_noise``, moved by Gaussian noise of up to that share of its norm),
    with EMA; leaves the EMA weights in the UNet, in eval mode. With ``blend_with`` (per item, the items it may
    be blended with), ``BLEND_RATE`` of the conditions are blended with a feature of one of them, up to
    ``BLEND_SHARE`` of it, and still ask for their own item: the decoder learns to draw the nearer item of two."""
    from diffusers.training_utils import EMAModel

    unet = decoder.unet
    ema = EMAModel(unet.parameters(), decay=0.998)
    scheduler = decoder.scheduler

    def step_fn(step: int, rng: np.random.Generator, _trained: torch.nn.Module) -> torch.Tensor:
        idx = torch.from_numpy(rng.integers(len(cached), size=batch))
        z = cached[idx]
        cond = bank[owner_ids[idx], torch.from_numpy(rng.integers(bank.shape[1], size=batch))]
        if blend_with is not None:
            others = [blend_with[int(owner)] for owner in owner_ids[idx]]
            other = torch.tensor(
                [
                    choices[int(rng.integers(len(choices)))] if choices else int(owner)
                    for choices, owner in zip(others, owner_ids[idx], strict=True)
                ]
            )
            other_cond = bank[other, torch.from_numpy(rng.integers(bank.shape[1], size=batch))]
            share = torch.from_numpy(rng.uniform(0.0, BLEND_SHARE, batch)).float()[:, None]
            share = share * (torch.from_numpy(rng.random(batch)) < BLEND_RATE).float()[:, None]
            cond = (1 - share) * cond + share * other_cond
        cond = cond * (torch.from_numpy(rng.random(batch)) >= 0.1).float()[:, None]
        if cond_noise:
            scale = torch.from_numpy(rng.random(batch)).float()[:, None] * cond_noise * cond.norm(dim=-1, keepdim=True)
            cond = cond + scale * torch.from_numpy(rng.standard_normal(cond.shape)).float() / cond.shape[-1] ** 0.5
        noise = torch.randn_like(z)
        t = torch.from_numpy(rng.integers(scheduler.config.num_train_timesteps, size=batch))
        return decoder.diffusion_loss(z, cond, noise, t)

    run_stage(at, stage, unet, step_fn, steps=steps, lr=lr, log=log, ema=ema, save_every=save_every)
    ema.copy_to(unet.parameters())
    unet.eval()


def stage_unet(at: Places, modality: str, steps: int, lr: float, log: Log) -> None:
    """Latent diffusion conditioned on the (frozen) encoder's pooled feature of another render of the item."""
    from diffusers import AutoencoderKL

    decoder = fresh_decoder(at, modality)
    decoder.vae = AutoencoderKL.from_pretrained(at.out / "decoders" / modality / "vae").eval()
    decoder.vae.requires_grad_(False)
    encoder = item_encoder(at, modality)
    cached, owner_ids, bank = item_latents(modality, decoder, encoder, log)
    train_unet(at, f"unet-{modality}", decoder, cached, owner_ids, bank, batch=64, steps=steps, lr=lr, log=log)
    check_samples(modality, decoder, encoder, log)
    install_decoder(at, modality, decoder, ["unet", "scheduler"])


def stage_unet_video(at: Places, steps: int, lr: float, log: Log) -> None:
    """Video diffusion over the (frozen) image autoencoder's per-frame latents, conditioned on the video
    encoder's feature (start and end spans) of another render of the clip."""
    from diffusers import AutoencoderKL

    decoder = fresh_decoder(at, "video")
    assert isinstance(decoder, VideoDecoder)
    decoder.vae = AutoencoderKL.from_pretrained(at.out / "decoders" / "image" / "vae").eval()
    decoder.vae.requires_grad_(False)
    encoder = video_encoder(
        at,
    )
    cached, owner_ids, bank = item_latents("video", decoder, encoder, log)
    train_unet(
        at, "unet-video", decoder, cached, owner_ids, bank, batch=16, steps=steps, lr=lr, log=log, save_every=100
    )
    check_samples("video", decoder, encoder, log)
    install_decoder(at, "video", decoder, ["vae", "unet", "scheduler"])


def stage_unet_marks(at: Places, steps: int, lr: float, log: Log) -> None:
    """The trained image UNet continues on plain and marked pictures, conditioned on the mark-aware encoder's
    features (of other renders of the same item) and decoded by the mark-painting autoencoder."""
    from codi2_sdk.model.parts import load_kind

    decoder = load_kind("decoder", at.config.decoders["image"].kind, at.out / "decoders" / "image")
    decoder.vae.requires_grad_(False)
    encoder = CNNImageEncoder.from_pretrained(at.out / "encoders" / "image").eval()
    cached, owner_ids, bank = marked_latents(decoder, encoder, log)
    train_unet(at, "unet-marks", decoder, cached, owner_ids, bank, batch=64, steps=steps, log=log, lr=lr)
    check_image_samples(decoder, encoder, log)
    install_decoder(at, "image", decoder, ["unet", "scheduler"])


def stage_unet_fine(at: Places, steps: int, lr: float, log: Log) -> None:
    """A new image UNet (three levels, 16x16 latents) on ``vae-fine``'s latents of plain and marked pictures,
    conditioned as ``unet-marks``; then the new autoencoder and UNet replace the package's image decoder (the
    video decoder keeps its own copy of the first autoencoder)."""
    from diffusers import AutoencoderKL

    decoder = fresh_decoder(at, "image", fine=True)
    decoder.vae = AutoencoderKL.from_pretrained(at.runs / "vae-fine" / "vae").eval().requires_grad_(False)
    encoder = CNNImageEncoder.from_pretrained(at.out / "encoders" / "image").eval()
    cached, owner_ids, bank = marked_latents(decoder, encoder, log)
    train_unet(at, "unet-fine", decoder, cached, owner_ids, bank, batch=64, steps=steps, lr=lr, log=log)
    check_image_samples(decoder, encoder, log)
    install_decoder(at, "image", decoder, ["vae", "unet", "scheduler"])
    checkpoint = CoDi2Config.model_validate_json((at.out / "codi2.json").read_text())
    decoders = {**checkpoint.decoders, "image": at.config.decoders["image"]}
    (at.out / "codi2.json").write_text(checkpoint.model_copy(update={"decoders": decoders}).model_dump_json(indent=2))


def stage_unet_robust(
    at: Places, modality: MediaModality, steps: int, lr: float, log: Log, *, blend: bool = False, off_palette: int = 0
) -> None:
    """A trained UNet continues with its conditions moved by Gaussian noise of up to 30% of their norm: the LLM's
    features are not a render's. Image (``unet-fine-robust``): small plain pictures drawn from them came out pale
    after ``unet-fine`` (in-context image edits 33/40 right, the first decoder's 39/40). Video
    (``unet-video-robust``): 0.92 of clips sampled from fresh features were read right, and in-context video edits
    lost whole clips (a circle's first frame read as a square, a shrinking clip that grew back). Audio
    (``unet-audio-robust``): samples from fresh features of held-out sounds were read right 0.91 (trained 1.00).

    With ``blend`` (``unet-fine-blend``, pictures only), some conditions are also blended with a picture one change
    apart (``one_change_apart``: shape, colour, size, position or mark) and still ask for their own picture, as
    ``unet-video-own`` does for clips. Why: held-out subjects were drawn right in 179 of 200 cases (the eval's
    seeds), and 14 of the 21 misses were small striped squares drawn as circles from LLM features clearly nearer
    the square (cosine 0.97-0.98 against 0.87-0.95); from a render's own feature the decoder drew one as a circle
    in 1-2 of 8 samples. It runs after the LLM stages up to ``llm-video-shapes``, which train on pictures the image
    decoder drew before it (their own-output pools); ``llm-video-diamonds`` runs after it.

    With ``off_palette`` (``unet-fine-palette``, pictures only), that many marked pictures in colours outside the
    world's six join the training set (``off_palette_latents``), each conditioned on its own renders' features.
    """
    from codi2_sdk.model.parts import load_kind

    decoder = load_kind("decoder", at.config.decoders[modality].kind, at.out / "decoders" / modality)
    decoder.vae.requires_grad_(False)
    encoder = (
        video_encoder(
            at,
        )
        if modality == "video"
        else item_encoder(at, modality)
    )
    blend_with = None
    if isinstance(decoder, ImageDecoder):  # plain and marked pictures
        assert isinstance(encoder, CNNImageEncoder)
        cached, owner_ids, bank = marked_latents(decoder, encoder, log)
        check = functools.partial(check_image_samples, decoder, encoder, log)
        if blend:
            check()  # the figures before, beside the ones after
            blend_with = one_change_apart(image_unet_items(), list(MARK_ATTRIBUTES))
        if off_palette:
            extra, extra_ids, extra_bank = off_palette_latents(decoder, encoder, off_palette, len(bank), log)
            cached, owner_ids, bank = (
                torch.cat([cached, extra]),
                torch.cat([owner_ids, extra_ids]),
                torch.cat([bank, extra_bank]),
            )
            if blend_with is not None:
                blend_with += [[] for _ in range(off_palette)]  # blended with nothing: their own feature
    else:
        assert not blend, "blended conditions here are for the image UNet (unet-video-own blends clips)"
        cached, owner_ids, bank = item_latents(modality, decoder, encoder, log)
        check = functools.partial(check_samples, modality, decoder, encoder, log)
    stage = (
        "unet-fine-palette"
        if off_palette
        else "unet-fine-blend"
        if blend
        else f"unet-{'fine' if modality == 'image' else modality}-robust"
    )
    batch = 16 if modality == "video" else 64
    train_unet(
        at,
        stage,
        decoder,
        cached,
        owner_ids,
        bank,
        batch=batch,
        steps=steps,
        log=log,
        lr=lr,
        cond_noise=0.3,
        blend_with=blend_with,
    )
    check()
    install_decoder(at, modality, decoder, ["unet", "scheduler"])


def stage_unet_fine_palette(at: Places, steps: int, lr: float, log: Log) -> None:
    """The image UNet continues as in ``unet-fine-blend`` with 2000 marked pictures in colours far from the six
    named ones (``off_palette_latents``) beside its 6000: it had learnt 130 subjects, each a fixed colour, mark and
    shape, and drew a held-out combination of the three less faithfully. After ``llm-video-diamonds`` all 14
    held-out subject misses at 200 cases (the eval's seeds) were striped subjects drawn in the wrong shape, 10 of
    them small squares drawn as pale circles, and even from the mean feature of 8 renders of the asked picture it
    drew those squares right in only 3-6 of 6 samples; the autoencoder was not the cause (the probe read all 864
    reconstructions of striped subjects right, trained and held-out, small and large)."""
    stage_unet_robust(at, "image", steps, lr, log, blend=True, off_palette=2000)


def stage_unet_video_own(at: Places, steps: int, lr: float, log: Log) -> None:
    """The video UNet continues with half its conditions the finished LLM's own features for trained clips (the
    answers of ``OWN_FEATURE_TASKS``, teacher-forced), the other half renders' (noisy, as in
    ``unet-video-robust``). A feature is kept only where it lies nearer its own clip's renders than any other
    clip's: the decoder learns the LLM's noise, not its errors. Some conditions are blended with a feature of a
    clip one change apart (``one_change_apart``) and still ask for their own clip. Why: after ``llm-video-edits``,
    three of seven held-out in-context video edit misses at one shot were clips the probe could not read from a
    feature nearest the right clip; and the diamonds it drew as circles came from features partly a square's
    (a diamond and a square overlaid make an octagon). (The same stage for the image UNet, 800 steps, was tried
    and not kept: held-out subject-driven pictures 47 -> 45 of 50.)"""
    model = CoDi2Model.from_pretrained(at.out)
    decoder = model.decoders["video"]
    assert isinstance(decoder, VideoDecoder)
    decoder.vae.requires_grad_(False)
    encoder = video_encoder(
        at,
    )
    cached, owner_ids, bank = item_latents("video", decoder, encoder, log)
    items, features = llm_features(model, 3200, heldout=False, seed=at.seed + 43)
    rng = np.random.default_rng(at.seed + 45)
    every = all_clips()
    with torch.no_grad():
        means = torch.stack([encoder(encoder_input("video", encoder, [clip] * 4, rng))[:, 0].mean(0) for clip in every])
    nearest = (model.regression_target("video", features) @ model.regression_target("video", means).T).argmax(1)
    own: dict[int, list[torch.Tensor]] = {}
    for item, feature, near in zip(items, features, nearest.tolist(), strict=True):
        if every[near] == item:
            own.setdefault(train_clips().index(item), []).append(feature)
    log(f"{len(items)} features of the LLM, {sum(map(len, own.values()))} nearest their own clip, {len(own)} clips")
    per_item = bank.shape[1]
    mixed = []
    for index in range(len(train_clips())):
        kept = own.get(index) or list(bank[index])
        mixed.append(torch.stack([kept[int(k)] for k in rng.integers(len(kept), size=per_item)]))
    bank = torch.cat([bank, torch.stack(mixed)], dim=1)
    # 64 video cases of trained items and 64 of held-out ones, decoded before and after
    checks = {heldout: llm_features(model, 64, heldout=heldout, seed=at.seed + 47) for heldout in (False, True)}
    check_own_features(decoder, checks, log)
    train_unet(
        at,
        "unet-video-own",
        decoder,
        cached,
        owner_ids,
        bank,
        batch=16,
        steps=steps,
        log=log,
        lr=lr,
        cond_noise=0.3,
        blend_with=one_change_apart(train_clips(), CLIP_ATTRIBUTES),
    )
    check_own_features(decoder, checks, log)
    install_decoder(at, "video", decoder, ["unet", "scheduler"])
