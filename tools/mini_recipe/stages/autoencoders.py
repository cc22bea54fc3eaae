"""The decoders' autoencoders: image (8x8x16, then 16x16x8 with marks) and audio (log-mel)."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from codi2_sdk.mini.world import (
    SIZES,
)
from codi2_sdk.model.mini.encoders import CNNImageEncoder

from ..checks import probe_outputs
from ..data import (
    decoder_space,
    heldout_marked,
    marked_batch_weight,
    marked_pictures,
    pick,
    pictures_tensor,
    train_pictures,
    train_sounds,
)
from ..install import drop_local_path, fresh_decoder
from ..places import Log, Places, run_stage


def autoencoder_loss(vae: torch.nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The autoencoder stages' loss: weighted L1 + L2 of a sampled latent's reconstruction, and KL 1e-6."""
    posterior = vae.encode(x).latent_dist
    error = vae.decode(posterior.sample()).sample - x
    return (weight * error.abs()).mean() + (weight * error.square()).mean() + 1e-6 * posterior.kl().mean()


def stage_vae(at: Places, modality: str, steps: int, lr: float, log: Log) -> None:
    """The decoder's autoencoder; object pixels (or loud mel bins) weigh 10x (5x) in the loss from step 0."""
    decoder = fresh_decoder(at, modality)
    vae = decoder.vae
    pool = train_pictures() if modality == "image" else train_sounds()
    batch = 16

    def step_fn(step: int, rng: np.random.Generator, _trained: torch.nn.Module) -> torch.Tensor:
        x = decoder_space(modality, decoder, pick(pool, rng, batch), rng)
        weight = marked_batch_weight(x) if modality == "image" else 1.0 + 4.0 * (x > -1.0).float()
        return autoencoder_loss(vae, x, weight)

    run_stage(at, f"vae-{modality}", vae, step_fn, steps=steps, lr=lr, log=log)
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
    vae.save_pretrained(at.out / "decoders" / modality / "vae")


def stage_vae_marks(at: Places, steps: int, lr: float, log: Log) -> None:
    """The image autoencoder continues on plain and marked pictures, so that its latents keep a mark and its
    decoder paints it back. (The video decoder keeps its own copy of the autoencoder it was trained with.)"""
    from diffusers import AutoencoderKL

    decoder = fresh_decoder(at, "image")
    vae = AutoencoderKL.from_pretrained(at.out / "decoders" / "image" / "vae")

    def step_fn(step: int, rng: np.random.Generator, _trained: torch.nn.Module) -> torch.Tensor:
        x = pictures_tensor(pick(train_pictures(), rng, 6) + pick(marked_pictures(), rng, 10), rng)
        return autoencoder_loss(vae, x, marked_batch_weight(x))

    run_stage(at, "vae-marks", vae, step_fn, steps=steps, lr=lr, log=log)
    vae.eval()
    rng = np.random.default_rng(11)
    with torch.no_grad():
        for name, pool in (("plain", train_pictures()), ("marked", marked_pictures())):
            items = pick(pool, rng, 128)
            x = pictures_tensor(items, rng)
            latents = vae.encode(x).latent_dist.mean
            recon = vae.decode(latents).sample
            error = float(((recon - x).abs() * marked_batch_weight(x)).mean())
            log(
                f"{name}: probe accuracy of reconstructions {probe_outputs('image', decoder, recon, items):.3f}, "
                f"weighted L1 {error:.4f}, latent std {float(latents.std()) * vae.config.scaling_factor:.3f} "
                "(scaled)"
            )
    vae.save_pretrained(at.out / "decoders" / "image" / "vae")


def stage_vae_fine(at: Places, steps: int, lr: float, log: Log) -> None:
    """A new image autoencoder with 16x16x8 latents (4x downsampling; the first had 8x8x16), trained from scratch
    on plain and marked pictures: an 8x8 latent blurs a small subject's mark (its reconstructions' feature
    cosine to another render was 0.82, two renders' 0.98). Written to runs/mini/vae-fine/ for ``unet-fine``,
    which installs it with its UNet."""
    decoder = fresh_decoder(at, "image", fine=True)
    vae = decoder.vae

    def step_fn(step: int, rng: np.random.Generator, _trained: torch.nn.Module) -> torch.Tensor:
        x = pictures_tensor(pick(train_pictures(), rng, 8) + pick(marked_pictures(), rng, 8), rng)
        return autoencoder_loss(vae, x, marked_batch_weight(x))

    run_stage(at, "vae-fine", vae, step_fn, steps=steps, lr=lr, log=log)
    vae.eval()
    rng = np.random.default_rng(11)
    encoder = CNNImageEncoder.from_pretrained(at.out / "encoders" / "image").eval()
    with torch.no_grad():
        x = pictures_tensor(pick(train_pictures(), rng, 128) + pick(marked_pictures(), rng, 128), rng)
        std = float(vae.encode(x).latent_dist.mean.std())
        vae.register_to_config(scaling_factor=1.0 / std)
        for name, pool in (("plain", train_pictures()), ("marked", marked_pictures()), ("held-out", heldout_marked())):
            for size in SIZES:
                items = pick([p for p in pool if p.size == size], rng, 64)
                x = pictures_tensor(items, rng)
                recon = vae.decode(vae.encode(x).latent_dist.mean).sample
                error = float(((recon - x).abs() * marked_batch_weight(x)).mean())
                other = encoder(pictures_tensor(items, rng))[:, 0]
                same = F.cosine_similarity(encoder(recon.clamp(-1, 1))[:, 0], other).mean()
                floor = F.cosine_similarity(encoder(x)[:, 0], other).mean()
                log(
                    f"{name} {size}: probe accuracy of reconstructions {probe_outputs('image', decoder, recon, items):.3f},"
                    f" weighted L1 {error:.4f}, feature cosine to another render {float(same):.3f} (render to "
                    f"render {float(floor):.3f})"
                )
    log(f"latent std {std:.4f}")
    vae.save_pretrained(at.runs / "vae-fine" / "vae")


def stage_vae_fine_edges(at: Places, steps: int, lr: float, log: Log) -> None:
    """The new image autoencoder's decoder alone, with each picture's worst background pixels added to the loss:
    ``vae-fine`` left one corner pixel grey (distance 50 from white, of 64 renders' mean; the first autoencoder's:
    6), which the probe takes for part of the object. The encoder is frozen, so the UNet's latents stay valid."""
    from diffusers import AutoencoderKL

    target = at.out / "decoders" / "image" / "vae"
    vae = AutoencoderKL.from_pretrained(target)
    vae.requires_grad_(False)
    trained = torch.nn.ModuleList([vae.decoder, vae.post_quant_conv]).requires_grad_(True)

    def worst_background(x: torch.Tensor, y: torch.Tensor, k: int = 16) -> torch.Tensor:
        background = marked_batch_weight(x) == 1.0
        error = ((y - x).abs().amax(dim=1, keepdim=True) * background).flatten(1)
        return error.topk(k, dim=1).values.mean()

    def step_fn(step: int, rng: np.random.Generator, _trained: torch.nn.Module) -> dict[str, torch.Tensor]:
        x = pictures_tensor(pick(train_pictures(), rng, 8) + pick(marked_pictures(), rng, 8), rng)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        y = vae.decode(z).sample
        error = y - x
        weight = marked_batch_weight(x)
        edges = worst_background(x, y)
        loss = (weight * error.abs()).mean() + (weight * error.square()).mean() + edges
        return {"loss": loss, "worst background": edges.detach()}

    run_stage(at, "vae-fine-edges", trained, step_fn, steps=steps, lr=lr, log=log)
    vae.eval()
    rng = np.random.default_rng(11)
    with torch.no_grad():
        for name, pool in (("plain", train_pictures()), ("marked", marked_pictures()), ("held-out", heldout_marked())):
            x = pictures_tensor(pick(pool, rng, 64), rng)
            y = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
            corner = float((1.0 - y[:, :, 0, -1]).norm(dim=1).mean() * 127.5)
            error = float(((y - x).abs() * marked_batch_weight(x)).mean())
            log(f"{name}: weighted L1 {error:.4f}; top-right pixel's distance from white {corner:.1f} (of 441)")
    vae.save_pretrained(target)
    drop_local_path(target)
