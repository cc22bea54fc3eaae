"""Log-mel spectrograms and their inversion (Griffin-Lim), in plain torch.

torchaudio does not import beside the CPU torch build this project targets, so the few pieces needed
are here: a triangular (HTK) mel filterbank, a log-mel front-end, and fast Griffin-Lim (with momentum)
on ``torch.stft`` / ``torch.istft``. The mel filterbank is inverted with ``torch.linalg.pinv``: the
default CPU driver of ``torch.linalg.lstsq`` returns garbage for this under-determined system.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["LogMel", "griffin_lim", "mel_filterbank"]

LOG_FLOOR = 1e-5


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None
) -> torch.Tensor:
    """Triangular HTK mel filters, shape ``(n_mels, n_fft // 2 + 1)``."""
    f_max = f_max if f_max is not None else sample_rate / 2
    mels = torch.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2, dtype=torch.float64)
    hz = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    rising = (bins - lower) / (centre - lower)
    falling = (upper - bins) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


class LogMel(nn.Module):
    """Waveforms ``(batch, samples)`` to log-mel images ``(batch, 1, n_mels, frames)``.

    ``f_max`` (default: half the sample rate) bounds the filters: a lower one gives the low notes finer
    bins, which the Griffin-Lim inversion needs to keep pitch and harmonics apart.

    Clips are cut or zero-padded to exactly ``frames`` frames (``(frames - 1) * hop_length`` samples).
    """

    window: torch.Tensor
    filters: torch.Tensor

    def __init__(
        self, *, sample_rate: int, n_fft: int, hop_length: int, n_mels: int, frames: int, f_max: float | None = None
    ) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels, self.frames = (
            sample_rate,
            n_fft,
            hop_length,
            n_mels,
            frames,
        )
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("filters", mel_filterbank(sample_rate, n_fft, n_mels, f_max=f_max), persistent=False)

    @property
    def num_samples(self) -> int:
        """Samples in one clip of ``frames`` frames."""
        return (self.frames - 1) * self.hop_length

    def fit_length(self, wave: torch.Tensor) -> torch.Tensor:
        """Cut or zero-pad ``(batch, samples)`` to :attr:`num_samples`."""
        n = self.num_samples
        if wave.shape[-1] >= n:
            return wave[..., :n]
        return torch.nn.functional.pad(wave, (0, n - wave.shape[-1]))

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = self.fit_length(wave)
        spec = torch.stft(wave, self.n_fft, self.hop_length, window=self.window, center=True, return_complex=True).abs()
        mel = torch.matmul(self.filters, spec)
        return torch.log(mel + LOG_FLOOR).unsqueeze(1)


def griffin_lim(
    log_mel: torch.Tensor,
    logmel: LogMel,
    *,
    iterations: int = 60,
    momentum: float = 0.99,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Invert log-mel images ``(batch, 1, n_mels, frames)`` to waveforms ``(batch, samples)``."""
    mel = torch.exp(log_mel.squeeze(1).float()) - LOG_FLOOR
    magnitude = torch.clamp(torch.matmul(torch.linalg.pinv(logmel.filters), mel.clamp(min=0.0)), min=0.0)
    noise_device = generator.device if generator is not None else magnitude.device
    phase = torch.rand(magnitude.shape, generator=generator, device=noise_device).to(magnitude.device) * 2 * math.pi
    angles = torch.polar(torch.ones_like(magnitude), phase)
    previous = torch.zeros_like(angles)
    length = logmel.num_samples
    for _ in range(iterations):
        wave = torch.istft(
            magnitude * angles, logmel.n_fft, logmel.hop_length, window=logmel.window, center=True, length=length
        )
        rebuilt = torch.stft(
            wave, logmel.n_fft, logmel.hop_length, window=logmel.window, center=True, return_complex=True
        )
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        previous = rebuilt
        angles = angles / (angles.abs() + 1e-8)
    return torch.istft(
        magnitude * angles, logmel.n_fft, logmel.hop_length, window=logmel.window, center=True, length=length
    )
