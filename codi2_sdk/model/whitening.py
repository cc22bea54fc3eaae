"""The regression space of the output head: ZCA-whitened encoder features."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeatureWhitening"]


class FeatureWhitening(nn.Module):
    """ZCA whitening of one modality's pooled features: the space the output head regresses in.

    Encoder features can hold an attribute in a direction of small variance (codi2-mini's image encoder
    puts size there: two items that differ only in size have cosine 0.975, against 0.46 for colour), and
    a cosine loss then hardly sees it. In whitened space every direction weighs alike; ``eps`` (a share
    of the largest eigenvalue) keeps render-to-render noise from being blown up.
    """

    mean: torch.Tensor
    matrix: torch.Tensor
    inverse: torch.Tensor
    norm: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("matrix", torch.eye(dim))
        self.register_buffer("inverse", torch.eye(dim))
        self.register_buffer("norm", torch.ones(()))

    @classmethod
    def fit(cls, features: torch.Tensor, *, eps: float = 0.02) -> FeatureWhitening:
        """Fit to pooled features ``(samples, dim)`` of many media."""
        features = features.double()
        mean = features.mean(0)
        centered = features - mean
        values, vectors = torch.linalg.eigh(centered.T @ centered / (len(features) - 1))
        # identical media can differ by float32 rounding in a batched forward: that is no variation
        if float(values.max()) <= 1e-10 * float(mean.square().mean()):
            raise ValueError("cannot fit a whitening to features that do not vary")
        values = values.clamp(min=0) + eps * values.max()
        whitening = cls(features.shape[1])
        whitening.mean.copy_(mean)
        whitening.matrix.copy_(vectors @ torch.diag(values.rsqrt()) @ vectors.T)
        whitening.inverse.copy_(vectors @ torch.diag(values.sqrt()) @ vectors.T)
        whitening.norm.copy_((centered @ whitening.matrix.double().T).norm(dim=-1).mean())
        return whitening

    def whiten(self, feature: torch.Tensor) -> torch.Tensor:
        return (feature - self.mean) @ self.matrix.T

    def unwhiten(self, whitened: torch.Tensor) -> torch.Tensor:
        return whitened @ self.inverse.T + self.mean
