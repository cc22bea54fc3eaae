"""Tensors to media and back: the one place pixels, frames and waves become parts (and parts tensors).

Ranges are fixed: pictures and frames are floats in [-1, 1] (``(batch, 3, H, W)``, ``(batch, frames, 3, H, W)``),
sounds are mono waves in [-1, 1] at a stated rate. Decoders hand their outputs in those ranges to
:func:`pixels_to_images`, :func:`frames_to_videos` or :func:`waves_to_clips`; encoders read parts with
:func:`image_to_tensor`, :func:`center_crop_resize` and :func:`audio_to_tensor`. :class:`LogMel` and
:func:`griffin_lim` turn waves into log-mel spectrograms and back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import PIL.Image
import torch
from torch import nn

from .._media import as_rgb
from ..config import AudioConfig, ImageConfig
from ..content import Audio, Image, MediaModality, Provenance, Video
from ..errors import ModelError

__all__ = [
    "LogMel",
    "PixelOutputs",
    "audio_to_tensor",
    "frames_to_videos",
    "griffin_lim",
    "image_to_tensor",
    "mel_filterbank",
    "pixels_to_images",
    "rgb_picture",
    "waves_to_clips",
]


def rgb_picture(image: Image | PIL.Image.Image) -> PIL.Image.Image:
    """A part or PIL image as the RGB picture a person sees: upright, transparency over white (see
    :meth:`Image.to_pil` and ``_media.as_rgb``)."""
    return as_rgb(image.to_pil() if isinstance(image, Image) else image)


def image_to_tensor(images: Sequence[Image | PIL.Image.Image], size: int, *, height: int | None = None) -> torch.Tensor:
    """Decode images (parts or PIL images) to ``(batch, 3, height, size)`` floats in [-1, 1] (RGB, bicubic resize);
    square (``size`` x ``size``) unless ``height`` is given."""
    arrays = []
    shape = (size, height or size)
    for image in images:
        pil = rgb_picture(image)
        if pil.size != shape:
            pil = pil.resize(shape, PIL.Image.Resampling.BICUBIC)
        arrays.append(np.asarray(pil, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def audio_to_tensor(clips: list[Audio], sample_rate: int, num_samples: int) -> torch.Tensor:
    """Decode clips to mono ``(batch, num_samples)`` at ``sample_rate`` (cut or zero-padded), resampled with
    soxr's anti-aliasing filter: what lies above the new Nyquist frequency is removed, not folded down."""
    import soxr

    waves = np.zeros((len(clips), num_samples), dtype=np.float32)
    for i, clip in enumerate(clips):
        samples = clip.to_numpy()
        if samples.ndim == 2:
            samples = samples.mean(axis=1)
        if clip.sample_rate != sample_rate:
            assert clip.sample_rate is not None
            samples = soxr.resample(samples.astype(np.float32), clip.sample_rate, sample_rate, quality="HQ")
        n = min(num_samples, len(samples))
        waves[i, :n] = samples[:n]
    return torch.from_numpy(waves)


def center_crop_resize(image: PIL.Image.Image, size: int) -> PIL.Image.Image:
    """Shortest side to ``size`` (bicubic), then the centred ``size x size`` square, as torchvision's
    ``Resize(size)`` + ``CenterCrop(size)`` in ImageBind's transform."""
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize(
        (max(size, int(width * scale)), max(size, int(height * scale))), PIL.Image.Resampling.BICUBIC
    )
    left = round((resized.width - size) / 2.0)
    top = round((resized.height - size) / 2.0)
    return resized.crop((left, top, left + size, top + size))


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


def pixels_to_pil(outputs: torch.Tensor, *, size: int | None = None) -> list[PIL.Image.Image]:
    """Pixels in [-1, 1], ``(batch, 3, height, width)``, as RGB pictures (resized to a square of side ``size``
    when given, bicubic)."""
    pixels = ((outputs.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    pictures = []
    for p in pixels:
        pil = PIL.Image.fromarray(np.ascontiguousarray(p))
        if size is not None and pil.size != (size, size):
            pil = pil.resize((size, size), PIL.Image.Resampling.BICUBIC)
        pictures.append(pil)
    return pictures


def pixels_to_images(
    outputs: torch.Tensor, *, size: int | None = None, provenance: Provenance | None = None
) -> list[Image]:
    """Pixels in [-1, 1], ``(batch, 3, height, width)``, as PNG :class:`Image` parts (see :func:`pixels_to_pil`),
    made without decoding the PNG again."""
    return [Image._encoded_here(pil, provenance=provenance) for pil in pixels_to_pil(outputs, size=size)]


def frames_to_videos(
    outputs: torch.Tensor, *, settings: Any = None, fps: float, provenance: Provenance | None = None
) -> list[Video]:
    """Frames in [-1, 1], ``(batch, frames, 3, height, width)``, as MP4 :class:`Video` parts: at ``settings.fps``
    when set (else ``fps``), resized to ``settings.size`` when set (see :func:`pixels_to_pil`)."""
    rate = float(settings.fps) if settings is not None and settings.fps else fps
    size = settings.size if settings is not None else None
    clips = []
    for clip in outputs:
        pixels = np.stack([np.asarray(frame) for frame in pixels_to_pil(clip, size=size)])
        clips.append(Video._encoded_here(pixels, fps=rate, provenance=provenance))
    return clips


class PixelOutputs:
    """For image decoders whose outputs are pixels in [-1, 1]: :meth:`to_media` makes PNG parts."""

    modality: ClassVar[MediaModality] = "image"

    def to_media(
        self,
        outputs: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        settings: ImageConfig | None = None,
        provenance: Provenance | None = None,
    ) -> list[Image]:
        return pixels_to_images(outputs, size=settings.size if settings else None, provenance=provenance)


def waves_to_clips(
    waves: np.ndarray, rate: int, settings: AudioConfig | None, provenance: Provenance | None
) -> list[Audio]:
    """Waveforms ``(batch, samples)`` as WAV parts, clipped to [-1, 1] and cut or padded to the asked duration
    (a wave with a NaN or infinite sample is a model failure: :class:`~codi2_sdk.errors.ModelError`)."""
    waves = np.asarray(waves, dtype=np.float32)
    if not np.isfinite(waves).all():
        raise ModelError("the decoder made a sound with NaN or infinite samples")
    clips = []
    for wave in np.clip(waves, -1.0, 1.0):
        if settings is not None and settings.duration is not None:
            n = round(settings.duration * rate)
            wave = wave[:n] if len(wave) >= n else np.pad(wave, (0, n - len(wave)))
        clips.append(Audio._encoded_here(wave, sample_rate=rate, provenance=provenance))
    return clips
