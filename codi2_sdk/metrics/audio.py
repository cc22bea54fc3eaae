"""Audio editing metrics (the paper's, after AudioLDM's evaluation): log-spectral distance between an edited clip
and the target, and KL divergence and Fréchet distance over an audio embedding model's features."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..content import Audio
from ..model.media_io import audio_to_tensor

__all__ = ["AudioEditMetrics", "frechet_distance", "log_spectral_distance", "paired_kl"]

Embed = Callable[[list[Audio]], np.ndarray]
"""Audio clips to feature vectors ``(n, dim)``: e.g. CLAP's or ImageBind's audio tower, or codi2-mini's encoder."""


def log_spectral_distance(
    generated: Audio, target: Audio, *, sample_rate: int = 16_000, n_fft: int = 2048, hop: int = 512
) -> float:
    """LSD in log10 power units: per frame, the root mean square over frequency of ``log10(P_gen / P_target)``,
    averaged over frames; both clips resampled to ``sample_rate`` mono and cut to the shorter."""
    length = min(round(generated.duration * sample_rate), round(target.duration * sample_rate))
    waves = audio_to_tensor([generated, target], sample_rate, max(length, n_fft))
    window = torch.hann_window(n_fft)
    power = torch.stft(waves, n_fft, hop, window=window, return_complex=True).abs().square()
    ratio = torch.log10((power[0] + 1e-8) / (power[1] + 1e-8))
    return float(ratio.square().mean(dim=0).sqrt().mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of features ``(n, dim)`` (FAD's formula)."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(np.atleast_2d(cov_a))
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = np.linalg.eigvalsh(root_a @ np.atleast_2d(cov_b) @ root_a)
    trace_root = np.sqrt(np.clip(middle, 0, None)).sum()
    return float(
        np.square(mu_a - mu_b).sum() + np.trace(np.atleast_2d(cov_a)) + np.trace(np.atleast_2d(cov_b)) - 2 * trace_root
    )


def paired_kl(generated: np.ndarray, targets: np.ndarray, *, temperature: float = 1.0) -> float:
    """Mean KL(target || generated) between each pair's softmax distributions over feature dimensions (AudioLDM's
    KL over a tagger's class probabilities, here over any embedding's dimensions)."""
    log_p = torch.log_softmax(torch.as_tensor(targets, dtype=torch.float64) / temperature, dim=-1)
    log_q = torch.log_softmax(torch.as_tensor(generated, dtype=torch.float64) / temperature, dim=-1)
    return float((log_p.exp() * (log_p - log_q)).sum(dim=-1).mean())


class AudioEditMetrics:
    """LSD, KL and FD of edited clips against their targets, over the features of ``embed``."""

    def __init__(self, embed: Embed) -> None:
        self.embed = embed

    def score(self, generated: Sequence[Audio], targets: Sequence[Audio]) -> dict[str, float]:
        """``{"lsd", "kl", "fd"}``; FD needs at least two pairs (it compares the two sets' distributions)."""
        if len(generated) != len(targets) or not generated:
            raise ValueError("give one target per generated clip, at least one pair")
        made, wanted = self.embed(list(generated)), self.embed(list(targets))
        return {
            "lsd": float(np.mean([log_spectral_distance(g, t) for g, t in zip(generated, targets, strict=True)])),
            "kl": paired_kl(made, wanted),
            "fd": frechet_distance(made, wanted) if len(generated) > 1 else float("nan"),
        }
