"""Decoding and checking media bytes, kept apart from the pydantic models that hold them.

Every check reads headers before decoding, so a file that claims to be huge is refused before any
memory is spent on it. Every refusal is an :class:`~codi2_sdk.errors.InvalidMediaError`.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
import PIL.Image
import soundfile

from .errors import InvalidMediaError, MediaTooLargeError

#: Largest medium, in bytes, that the SDK accepts.
MAX_MEDIA_BYTES = 32 * 1024 * 1024
#: Largest image, in pixels (width x height), that is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
#: Longest audio clip, in seconds.
MAX_AUDIO_SECONDS = 600.0
#: Accepted audio sample rates, in Hz (inclusive).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1_000, 192_000
#: Most audio channels.
MAX_AUDIO_CHANNELS = 8
#: Most decoded audio samples in one clip (frames x channels): 600 s of 48 kHz stereo, 230 MB as float32.
#: Compressed formats can claim far more than their bytes hold, so the claim is checked before decoding.
MAX_AUDIO_SAMPLES = 600 * 48_000 * 2

IMAGE_FORMATS = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
}
AUDIO_FORMATS = {"WAV": "audio/wav", "FLAC": "audio/flac", "OGG": "audio/ogg", "MP3": "audio/mpeg"}
MIME_ALIASES = {
    "image/jpg": "image/jpeg",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "audio/vnd.wave": "audio/wav",
    "audio/x-flac": "audio/flac",
    "audio/mp3": "audio/mpeg",
}
IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP"}
AUDIO_SUFFIXES = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".mp3": "MP3"}


def normalize_mime(mime_type: str) -> str:
    """Lower-case a MIME type and map common aliases (``image/jpg``, ``audio/x-wav``) to one name."""
    mime = mime_type.strip().lower()
    return MIME_ALIASES.get(mime, mime)


def check_size(data: bytes, what: str) -> None:
    """Refuse empty media and media over :data:`MAX_MEDIA_BYTES`."""
    if not data:
        raise InvalidMediaError(f"{what} data is empty")
    if len(data) > MAX_MEDIA_BYTES:
        raise MediaTooLargeError(f"{what} is {len(data):,} bytes, over the limit of {MAX_MEDIA_BYTES:,} bytes")


@dataclass(frozen=True)
class ImageInfo:
    """What an image's bytes turned out to be."""

    mime_type: str
    width: int
    height: int


@dataclass(frozen=True)
class AudioInfo:
    """What an audio clip's bytes turned out to be."""

    mime_type: str
    sample_rate: int
    frames: int
    channels: int


def _open_image(data: bytes) -> PIL.Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
            return PIL.Image.open(io.BytesIO(data), formats=list(IMAGE_FORMATS))
    except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as exc:
        raise MediaTooLargeError(f"image refused before decoding: {exc}") from None
    except Exception:  # PIL raises many types for junk input
        raise InvalidMediaError("image data is not a PNG, JPEG, WebP, GIF or BMP image") from None


def image_header(data: bytes) -> tuple[PIL.Image.Image, ImageInfo]:
    """Open an image without decoding its pixels, and check its size against the limits."""
    check_size(data, "image")
    img = _open_image(data)
    width, height = img.size
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaTooLargeError(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
            f"{MAX_IMAGE_PIXELS:,}; it was refused before decoding"
        )
    assert img.format is not None
    return img, ImageInfo(IMAGE_FORMATS[img.format], width, height)


def inspect_image(data: bytes) -> ImageInfo:
    """Check that ``data`` is one decodable image within the limits, and say what it is."""
    img, info = image_header(data)
    try:
        img.load()
    except Exception as exc:
        raise InvalidMediaError(f"image data is corrupt or truncated ({exc})") from None
    return info


def decode_image(data: bytes) -> PIL.Image.Image:
    """Decode already-checked image bytes to a loaded PIL image."""
    img = _open_image(data)
    img.load()
    return img


def encode_image(img: PIL.Image.Image, fmt: str = "PNG") -> bytes:
    """Encode a PIL image (PNG unless told otherwise; JPEG drops alpha)."""
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def audio_header(data: bytes) -> AudioInfo:
    """Read an audio clip's header only, and check what it claims against the limits (nothing is decoded)."""
    check_size(data, "audio")
    try:
        info = soundfile.info(io.BytesIO(data))
    except Exception as exc:
        raise InvalidMediaError(f"audio data cannot be decoded ({exc})") from None
    if info.format not in AUDIO_FORMATS:
        raise InvalidMediaError(f"audio format {info.format} is not supported; use WAV, FLAC, OGG or MP3")
    check_audio_shape(info.frames, info.channels, info.samplerate)
    return AudioInfo(AUDIO_FORMATS[info.format], info.samplerate, info.frames, info.channels)


def check_audio_shape(frames: int, channels: int, sample_rate: int) -> None:
    """Refuse a clip by its shape alone: rate, channels, length and decoded size (before any allocation)."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise InvalidMediaError(
            f"audio sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz"
        )
    if not 1 <= channels <= MAX_AUDIO_CHANNELS:
        raise InvalidMediaError(f"audio has {channels} channels; at most {MAX_AUDIO_CHANNELS} are accepted")
    if frames <= 0:
        raise InvalidMediaError("audio clip has no samples")
    duration = frames / sample_rate
    if duration > MAX_AUDIO_SECONDS:
        raise MediaTooLargeError(f"audio is {duration:.1f} s long, over the limit of {MAX_AUDIO_SECONDS:.0f} s")
    if frames * channels > MAX_AUDIO_SAMPLES:
        raise MediaTooLargeError(
            f"audio has {frames * channels:,} samples ({frames:,} frames x {channels} channels), over the limit of "
            f"{MAX_AUDIO_SAMPLES:,}"
        )


def inspect_audio(data: bytes) -> AudioInfo:
    """Check that ``data`` is one decodable audio clip within the limits, and say what it is.

    The header's claims are checked first; then the clip is decoded once (the header can lie, and a
    header that claims more frames than the data holds gives the frames that are there).
    """
    header = audio_header(data)
    samples = decode_audio(data, frames=header.frames)
    if len(samples) == 0:
        raise InvalidMediaError("audio clip has no samples")
    return AudioInfo(header.mime_type, header.sample_rate, len(samples), header.channels)


def decode_audio(data: bytes, frames: int = -1) -> np.ndarray:
    """Decode audio bytes to float32 samples, shape ``(frames,)`` for mono, ``(frames, channels)`` otherwise
    (at most ``frames`` frames when given)."""
    try:
        samples, _ = soundfile.read(io.BytesIO(data), frames=frames, dtype="float32", always_2d=False)
    except Exception as exc:
        raise InvalidMediaError(f"audio data is corrupt or truncated ({exc})") from None
    return np.asarray(samples)


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """Encode float samples in [-1, 1] (WAV 16-bit PCM unless told otherwise)."""
    buf = io.BytesIO()
    if subtype is None and fmt == "WAV":
        subtype = "PCM_16"
    soundfile.write(buf, samples, sample_rate, format=fmt, subtype=subtype)
    return buf.getvalue()
