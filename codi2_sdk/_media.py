"""Decoding and checking media bytes, kept apart from the pydantic models that hold them.

Every check reads headers before decoding, so a file that claims to be huge is refused before any
memory is spent on it. Every refusal is an :class:`~codi2_sdk.errors.InvalidMediaError`.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: ``import codi2_sdk`` stays light (tools/bench/import_time.py)
    import numpy as np
    import PIL.Image

from .errors import Codi2Error, InvalidMediaError, MediaTooLargeError, MissingDependencyError

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


_EXIF_ORIENTATION = 0x0112
_QUARTER_TURNS = (5, 6, 7, 8)  # EXIF orientations that swap width and height
_SIXTEEN_BIT_GREY = ("I;16", "I;16L", "I;16B", "I")  # how PIL opens 16-bit grey PNG and TIFF


def _reason(exc: Exception) -> str:
    """A decoding library's reason for refusing data, without the handles it names (``<_io.BytesIO object at
    0x...>``): these messages reach API clients."""
    reason = getattr(exc, "error_string", None) or getattr(exc, "strerror", None)  # soundfile's, PyAV's
    return str(reason) if reason else str(exc)


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


def read_regular_file(path: Path, limit: int | None = None) -> bytes | None:
    """The bytes of ``path``, or ``None`` when it is a device, pipe or socket: reading one may block until a writer
    comes (a pipe) or never end (``/dev/zero``). The file is opened without blocking and checked on the open
    descriptor, so one swapped between the check and the read is caught. A file over ``limit`` bytes raises
    :class:`MediaTooLargeError`, checked before reading and bounded while reading (a file may grow, or report no
    size, as ``/proc`` does). A missing file raises ``FileNotFoundError`` and a folder ``IsADirectoryError``, as
    ``open()`` would."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):  # before fdopen(), whose own error would name the descriptor
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(info.st_mode):
            return None
        if limit is None:
            return file.read()
        if info.st_size > limit:
            raise MediaTooLargeError(f"{path} is {info.st_size:,} bytes, over the limit of {limit:,} bytes")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise MediaTooLargeError(f"{path} is over the limit of {limit:,} bytes")
    return data


def as_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """Pixels as ``uint8``: integers as they are (0 to 255), floats from [0, 1] (NaN as 0, the rest clipped)."""
    import numpy as np

    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_:
        if array.dtype != np.bool_ and (array.min() < 0 or array.max() > 255):
            raise InvalidMediaError(f"{what} given as integers must be 0 to 255 (or floats in [0, 1])")
        return array.astype(np.uint8) * (255 if array.dtype == np.bool_ else 1)
    with np.errstate(invalid="ignore", over="ignore"):
        return (np.clip(np.nan_to_num(array.astype(np.float64)), 0.0, 1.0) * 255).round().astype(np.uint8)


def pcm_as_float(array: np.ndarray) -> np.ndarray:
    """Samples as ``float32``: the PCM types WAV files hold scaled from their range to [-1, 1] (``int16``,
    ``int32``, ``int8``; ``uint8`` centred on 128, as 8-bit WAV stores it); anything else (floats, and Python's
    ints, which are no PCM format) as it is."""
    import numpy as np

    if array.dtype == np.uint8:
        return (array.astype(np.float32) - 128.0) / 128.0
    if array.dtype in (np.int8, np.int16, np.int32):
        return (array.astype(np.float64) / -float(np.iinfo(array.dtype).min)).astype(np.float32)
    return array.astype(np.float32)


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
    import PIL.Image

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
    if _orientation(img) in _QUARTER_TURNS:
        width, height = height, width  # the size it is shown at (see decode_image)
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
        raise InvalidMediaError(f"image data is corrupt or truncated ({_reason(exc)})") from None
    return info


def decode_image(data: bytes) -> PIL.Image.Image:
    """Decode already-checked image bytes to a loaded PIL image, turned upright as its EXIF orientation says
    (a phone's portrait photo is stored sideways with a tag that viewers, and transformers' ``load_image``,
    obey)."""
    import PIL.ImageOps

    img = _open_image(data)
    img.load()
    if _orientation(img) == 1:
        return img
    return PIL.ImageOps.exif_transpose(img)


def _orientation(img: PIL.Image.Image) -> int:
    """The EXIF orientation tag (1: stored upright) read from the header's EXIF block only (``getexif`` would
    decode a whole PNG to look for one); a malformed block counts as upright."""
    import PIL.Image

    raw = img.info.get("exif")
    if not raw:
        return 1
    exif = PIL.Image.Exif()
    try:
        exif.load(raw)
        return int(exif.get(_EXIF_ORIENTATION, 1))
    except Exception:  # EXIF blocks are written by every camera and editor, not always well
        return 1


def is_animated(data: bytes) -> bool:
    """Whether checked image bytes hold more than one frame (an animated GIF or WebP)."""
    return bool(getattr(_open_image(data), "is_animated", False))


def as_rgb(img: PIL.Image.Image) -> PIL.Image.Image:
    """``img`` in RGB as a person sees it on a white page: transparent pixels over white (not the black or
    stray colours their RGB values hold), 16-bit grey scaled to 8 bits (PIL's own conversion clips it to
    white)."""
    import numpy as np
    import PIL.Image

    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT_GREY:
        grey = np.asarray(img, dtype=np.float32) / 257.0
        return PIL.Image.fromarray(grey.clip(0, 255).round().astype(np.uint8)).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        page = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(page, rgba).convert("RGB")
    return img.convert("RGB")


def encode_image(img: PIL.Image.Image, fmt: str = "PNG") -> bytes:
    """Encode a PIL image (PNG unless told otherwise; JPEG drops alpha)."""
    if fmt == "JPEG" and img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def audio_header(data: bytes) -> AudioInfo:
    """Read an audio clip's header only, and check what it claims against the limits (nothing is decoded)."""
    import soundfile

    check_size(data, "audio")
    try:
        info = soundfile.info(io.BytesIO(data))
    except Exception as exc:
        raise InvalidMediaError(f"audio data cannot be decoded ({_reason(exc)})") from None
    if info.format not in AUDIO_FORMATS:
        raise InvalidMediaError(f"audio format {info.format} is not supported; use WAV, FLAC, OGG or MP3")
    if info.format == "WAV":
        _check_wav_data_size(data)
    check_audio_shape(info.frames, info.channels, info.samplerate)
    return AudioInfo(AUDIO_FORMATS[info.format], info.samplerate, info.frames, info.channels)


def _check_wav_data_size(data: bytes) -> None:
    """Refuse a WAV file whose ``data`` chunk claims more bytes than the file holds (libsndfile would read the
    samples that are there and say nothing, so a 4 GB claim over one second of samples would pass)."""
    position = 12  # after "RIFF", the RIFF size and "WAVE"
    while position + 8 <= len(data):
        chunk, size = data[position : position + 4], int.from_bytes(data[position + 4 : position + 8], "little")
        if chunk == b"data":
            held = len(data) - position - 8
            if size > held:
                raise InvalidMediaError(
                    f"the WAV header promises {size:,} bytes of samples, but the file holds {held:,}: "
                    "it is truncated or its header lies"
                )
            return
        position += 8 + size + (size & 1)  # chunks are padded to an even size


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
    import numpy as np
    import soundfile

    try:
        samples, _ = soundfile.read(io.BytesIO(data), frames=frames, dtype="float32", always_2d=False)
    except Exception as exc:
        raise InvalidMediaError(f"audio data is corrupt or truncated ({_reason(exc)})") from None
    return np.asarray(samples)


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """Encode float samples in [-1, 1] (WAV 16-bit PCM unless told otherwise)."""
    import soundfile

    buf = io.BytesIO()
    if subtype is None and fmt == "WAV":
        subtype = "PCM_16"
    soundfile.write(buf, samples, sample_rate, format=fmt, subtype=subtype)
    return buf.getvalue()


# -- video -------------------------------------------------------------------------------------------

#: Longest video clip, in seconds.
MAX_VIDEO_SECONDS = 60.0
#: Most frames in one video clip.
MAX_VIDEO_FRAMES = 600
#: Largest video frame, in pixels (width x height).
MAX_VIDEO_FRAME_PIXELS = 1920 * 1080
#: Frames per second accepted.
MIN_VIDEO_FPS, MAX_VIDEO_FPS = 0.1, 240.0

VIDEO_CONTAINERS = {"mov,mp4,m4a,3gp,3g2,mj2": "video/mp4", "matroska,webm": "video/webm"}
"""PyAV's container names of the video formats read through FFmpeg, and their MIME types."""
VIDEO_IMAGE_FORMATS = {"GIF": "image/gif", "WEBP": "image/webp"}
"""Animated image formats accepted as video (read with Pillow)."""
VIDEO_SUFFIXES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".gif": "image/gif"}
SUFFIX_OF_MIME = {
    mime: suffix
    for suffix, mime in reversed(
        [
            *((s, IMAGE_FORMATS[f]) for s, f in IMAGE_SUFFIXES.items()),
            *((s, AUDIO_FORMATS[f]) for s, f in AUDIO_SUFFIXES.items()),
            *VIDEO_SUFFIXES.items(),
        ]
    )
}
"""The usual file suffix of each MIME type read here (the first suffix listed for it: ``.jpg``, ``.mp4``)."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video's bytes turned out to be."""

    mime_type: str
    width: int
    height: int
    frames: int
    fps: float


def _pyav() -> Any:
    try:
        import av
    except ImportError:
        raise MissingDependencyError("video needs PyAV: pip install 'codi2-sdk[video]'") from None
    return av


def check_video_shape(frames: int, width: int, height: int, fps: float) -> None:
    """Refuse a clip by what it claims (frames, frame size, rate, length) before anything is decoded."""
    if not (MIN_VIDEO_FPS <= fps <= MAX_VIDEO_FPS):
        raise InvalidMediaError(f"video frame rate {fps:g} fps is outside {MIN_VIDEO_FPS:g}..{MAX_VIDEO_FPS:g}")
    if width <= 0 or height <= 0:
        raise InvalidMediaError("video frames have no pixels")
    if width * height > MAX_VIDEO_FRAME_PIXELS:
        raise MediaTooLargeError(
            f"video frames are {width}x{height}, over the limit of {MAX_VIDEO_FRAME_PIXELS:,} pixels a frame"
        )
    if frames > MAX_VIDEO_FRAMES:
        raise MediaTooLargeError(f"video has {frames:,} frames, over the limit of {MAX_VIDEO_FRAMES:,}")
    if frames / fps > MAX_VIDEO_SECONDS:
        raise MediaTooLargeError(f"video lasts {frames / fps:.1f} s, over the limit of {MAX_VIDEO_SECONDS:.0f} s")


def _animated_image(data: bytes) -> PIL.Image.Image | None:
    import PIL.Image

    with warnings.catch_warnings():
        warnings.simplefilter("error", PIL.Image.DecompressionBombWarning)
        try:
            img = PIL.Image.open(io.BytesIO(data), formats=list(VIDEO_IMAGE_FORMATS))
        except (PIL.Image.DecompressionBombError, PIL.Image.DecompressionBombWarning) as exc:
            raise MediaTooLargeError(f"video refused before decoding: {exc}") from None
        except Exception:
            return None
    return img


def _decode_animated(img: PIL.Image.Image, keep: bool) -> tuple[VideoInfo, list[np.ndarray]]:
    import numpy as np

    count = int(getattr(img, "n_frames", 1))
    durations = []
    frames: list[np.ndarray] = []
    for index in range(count):
        img.seek(index)
        img.load()  # sets the frame's duration (WebP)
        frame = as_rgb(img)
        durations.append(float(img.info.get("duration") or 100))
        if keep:
            frames.append(np.asarray(frame))
    fps = 1000.0 / (sum(durations) / len(durations))
    assert img.format is not None
    return VideoInfo(VIDEO_IMAGE_FORMATS[img.format], img.width, img.height, count, fps), frames


def _decode_container(data: bytes, keep: bool) -> tuple[VideoInfo, list[np.ndarray]]:
    av = _pyav()
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:
        raise InvalidMediaError(f"video data cannot be decoded ({_reason(exc)})") from None
    with container:
        mime = VIDEO_CONTAINERS.get(container.format.name)
        if mime is None or not container.streams.video:
            raise InvalidMediaError(
                f"video format {container.format.name} is not supported; use MP4 (H.264), WebM, GIF or WebP"
            )
        stream = container.streams.video[0]
        if stream.codec_context is None:  # a container that names a video stream it cannot decode
            raise InvalidMediaError("video data cannot be decoded (its video stream has no codec)")
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        promised = claimed = int(stream.frames or 0)  # read while open: PyAV 18.1.1 refuses it after close
        if not claimed and stream.duration and stream.time_base:
            claimed = round(float(stream.duration * stream.time_base) * fps)
        check_video_shape(claimed, stream.codec_context.width, stream.codec_context.height, fps or 1.0)
        frames: list[np.ndarray] = []
        count = 0
        try:
            for frame in container.decode(stream):
                count += 1
                if count > MAX_VIDEO_FRAMES:  # the header lied
                    raise MediaTooLargeError(f"video has over {MAX_VIDEO_FRAMES:,} frames")
                if frame.width * frame.height > MAX_VIDEO_FRAME_PIXELS:
                    raise MediaTooLargeError(f"a video frame is {frame.width}x{frame.height}, over the limit")
                if keep:
                    frames.append(frame.to_ndarray(format="rgb24"))
        except av.error.FFmpegError as exc:
            raise InvalidMediaError(f"video data is corrupt or truncated ({_reason(exc)})") from None
        width, height = stream.codec_context.width, stream.codec_context.height
    if count == 0:
        raise InvalidMediaError("video has no frames")
    if promised and count < promised:  # the container's frame count is exact (MP4's sample table)
        raise InvalidMediaError(
            f"the video's header promises {promised:,} frames, but only {count:,} can be decoded: "
            "it is truncated or its header lies"
        )
    check_video_shape(count, width, height, fps)
    return VideoInfo(mime, width, height, count, fps), frames


def decode_video(data: bytes, *, keep_frames: bool = True) -> tuple[VideoInfo, list[np.ndarray]]:
    """Check a video clip within the limits (from its header first) and decode it; returns what it is and,
    with ``keep_frames``, its frames as ``(height, width, 3)`` uint8 arrays."""
    check_size(data, "video")
    img = _animated_image(data)
    if img is not None:
        check_video_shape(int(getattr(img, "n_frames", 1)), img.width, img.height, 1.0)
        try:
            info, frames = _decode_animated(img, keep_frames)
        except Codi2Error:
            raise
        except Exception as exc:
            raise InvalidMediaError(f"video data is corrupt or truncated ({_reason(exc)})") from None
        check_video_shape(info.frames, info.width, info.height, info.fps)
        return info, frames
    return _decode_container(data, keep_frames)


def stored_frame_rate(fps: float) -> float:
    """The frame rate :func:`encode_video` writes for ``fps`` (a fraction with a denominator of at most 1001)."""
    return float(Fraction(fps).limit_denominator(1001))


def encode_video(frames: np.ndarray, fps: float) -> bytes:
    """Encode ``(frames, height, width, 3)`` uint8 RGB as MP4 (H.264, yuv420p; odd sides padded by one pixel)."""
    import numpy as np

    av = _pyav()
    height, width = frames.shape[1:3]
    padded = np.pad(frames, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = padded.shape[2], padded.shape[1]
        stream.pix_fmt = "yuv420p"
        # x264's macroblock tree reads memory it has not written (its bytes then change with the heap's garbage,
        # from call to call); without it the same frames always give the same file, a few per cent larger
        stream.options = {"crf": "18", "x264-params": "mbtree=0"}
        for index, array in enumerate(padded):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            frame.pts = index  # in the stream's time base, 1 / fps
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
