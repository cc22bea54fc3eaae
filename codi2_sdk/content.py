"""Content parts: the typed pieces (text, image, audio, video) that messages interleave.

Parts are immutable pydantic models told apart by their ``type`` field. Media keep their encoded
bytes (PNG, WAV, ...) in ``data``; in JSON those bytes are base64. A medium is checked when it is
made: the bytes must decode, match the declared MIME type and stay within the limits in
:mod:`codi2_sdk._media` (a header that claims a huge image is refused before decoding). Any refusal
raises :class:`~codi2_sdk.errors.InvalidMediaError`.

>>> from codi2_sdk import Image, Audio, Text
>>> img = Image.open("cat.png")            # doctest: +SKIP
>>> clip = Audio.from_array(samples, sample_rate=16_000)  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    field_serializer,
    model_validator,
)

from . import _media
from ._base import SDKModel
from .errors import InvalidMediaError, MediaTooLargeError

if TYPE_CHECKING:  # numpy is imported where used: ``import codi2_sdk`` stays light
    import numpy as np
    import PIL.Image

__all__ = [
    "MEDIA_MODALITIES",
    "MEDIA_PARTS",
    "Audio",
    "Video",
    "Image",
    "MediaModality",
    "MediaPart",
    "Modality",
    "Part",
    "Provenance",
    "Text",
    "open_media",
    "picture_or_clip",
]

MediaModality = Literal["image", "audio", "video"]
"""A kind of medium: each has a content part class (:data:`MEDIA_PARTS`) and, in a model, its own encoder
and decoder kinds and prompt tags."""
Modality = Literal["text", "image", "audio", "video"]
"""Anything a model may read or write: text or a :data:`MediaModality`."""
MEDIA_MODALITIES: tuple[MediaModality, ...] = get_args(MediaModality)


def _base64_to_bytes(value: Any) -> Any:
    # JSON carries media as base64 text; Python callers pass bytes, which pass through untouched.
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("media data must be bytes, or base64 text in JSON") from None
    return value


MediaBytes = Annotated[bytes, BeforeValidator(_base64_to_bytes), Field(repr=False)]


class Provenance(SDKModel):
    """How a generated medium was made, so that it can be made again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = None
    """Name of the model that made it."""
    seed: int | None = None
    """Seed of the random generator that the decoder started from."""
    steps: int | None = None
    """Number of diffusion steps."""
    guidance_scale: float | None = None
    """Classifier-free guidance scale."""
    noise_level: int | None = None
    """Noise added to the conditioning embedding (unCLIP image decoders)."""
    candidates: int | None = None
    """Samples drawn (from ``seed``, in one batch), of which this one was kept (see ``ImageConfig.candidates``)."""
    scheduler: str | None = None
    """The sampler, where it was not the decoder's own (``"dpm_solver"``; see ``ImageConfig.scheduler``)."""


class Text(SDKModel):
    """A piece of text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["text"] = "text"
    text: str = Field(max_length=1_000_000)

    def __init__(self, text: str | None = None, /, **data: Any) -> None:
        if text is not None:
            data["text"] = text
        super().__init__(**data)


class _Media(SDKModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    data: MediaBytes
    """The encoded file (PNG, JPEG, WAV, ...); base64 in JSON."""
    mime_type: str | None = None
    """The file type; found from the bytes when not given, checked against them when given."""
    provenance: Provenance | None = None
    """How the model made this medium; ``None`` for media that came from elsewhere."""

    @field_serializer("data", when_used="json")
    def _data_as_base64(self, data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    def _repr_html_(self) -> str:
        """Notebooks show the picture or a player."""
        from ._display import part_html

        return part_html(self)

    @property
    def suffix(self) -> str:
        """The file suffix of the medium's own format (``.png``, ``.jpg``, ``.wav``, ``.mp4``, ``.gif``, ...):
        :meth:`save` to a name with it writes the bytes unchanged."""
        return _media.SUFFIX_OF_MIME[str(self.mime_type)]

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the encoded bytes: equal media have equal hashes."""
        return hashlib.sha256(self.data).hexdigest()

    def _check_mime(self, actual: str) -> str:
        if self.mime_type is not None and _media.normalize_mime(self.mime_type) != actual:
            raise InvalidMediaError(f"declared type {self.mime_type} does not match the data, which is {actual}")
        return actual

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._describe()}, {len(self.data):,} bytes)"

    def _describe(self) -> str:
        raise NotImplementedError


class Image(_Media):
    """An image, kept as its encoded bytes.

    Make one with :meth:`open`, :meth:`from_bytes` or :meth:`from_pil`; read it back with
    :meth:`to_pil` or :meth:`to_numpy`.
    """

    type: Literal["image"] = "image"

    _width: int = PrivateAttr(0)
    _height: int = PrivateAttr(0)

    @model_validator(mode="after")
    def _validate_bytes(self) -> Image:
        info = _media.inspect_image(self.data)
        object.__setattr__(self, "mime_type", self._check_mime(info.mime_type))
        self._width, self._height = info.width, info.height
        return self

    @property
    def width(self) -> int:
        """Width in pixels."""
        return self._width

    @property
    def height(self) -> int:
        """Height in pixels."""
        return self._height

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, provenance: Provenance | None = None) -> Image:
        """Read an image file (PNG, JPEG, WebP, GIF or BMP); its type is found from its bytes."""
        return cls(data=_read_file(path), provenance=provenance)

    @classmethod
    def from_bytes(cls, data: bytes, *, mime_type: str | None = None, provenance: Provenance | None = None) -> Image:
        """Wrap encoded image bytes; ``mime_type``, when given, is checked against them."""
        return cls(data=data, mime_type=mime_type, provenance=provenance)

    @classmethod
    def from_pil(cls, img: PIL.Image.Image, *, format: str = "PNG", provenance: Provenance | None = None) -> Image:
        """Encode a PIL image (PNG by default, lossless)."""
        return cls(data=_media.encode_image(img, format.upper()), provenance=provenance)

    @classmethod
    def from_numpy(cls, pixels: Any, *, provenance: Provenance | None = None) -> Image:
        """Encode pixels as PNG: shape ``(height, width)`` (grey), ``(height, width, 3)`` (RGB) or
        ``(height, width, 4)`` (RGBA); integers from 0 to 255, or floats in [0, 1] (:meth:`to_numpy` gives ``uint8``)."""
        import numpy as np
        import PIL.Image

        try:
            shape = np.shape(pixels)
        except (TypeError, ValueError) as exc:
            raise InvalidMediaError(f"image pixels must be an array ({exc})") from None
        if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (3, 4))) or 0 in shape:
            raise InvalidMediaError(f"image pixels must be a non-empty (height, width[, 3 or 4]) array, got {shape}")
        if shape[0] * shape[1] > _media.MAX_IMAGE_PIXELS:
            raise MediaTooLargeError(
                f"image is {shape[1]}x{shape[0]} pixels, over the limit of {_media.MAX_IMAGE_PIXELS:,}"
            )
        try:
            array = _media.as_uint8(np.asarray(pixels), "image pixels")
        except (TypeError, ValueError) as exc:
            raise InvalidMediaError(f"image pixels must be numbers ({exc})") from None
        return cls._encoded_here(PIL.Image.fromarray(np.ascontiguousarray(array)), provenance=provenance)

    @classmethod
    def _encoded_here(cls, img: PIL.Image.Image, *, provenance: Provenance | None = None) -> Image:
        """A picture the SDK encodes itself (a model's output) as PNG: what it is, is known from the encoding, so
        the bytes are not decoded again to check them, as :meth:`from_pil` does."""
        image = cls.model_construct(data=_media.encode_image(img, "PNG"), mime_type="image/png", provenance=provenance)
        image._width, image._height = img.size
        return image

    def _repr_png_(self) -> bytes:
        """Notebooks show the picture."""
        return self.data if self.mime_type == "image/png" else _media.encode_image(self.to_pil(), "PNG")

    def to_pil(self) -> PIL.Image.Image:
        """Decode to a PIL image, turned upright where the file's EXIF orientation says so (as viewers show it;
        :attr:`width` and :attr:`height` are that upright size)."""
        return _media.decode_image(self.data)

    def to_numpy(self) -> np.ndarray:
        """Decode to a ``uint8`` array, shape ``(height, width, channels)`` (``(height, width)`` for grey)."""
        import numpy as np

        return np.asarray(self.to_pil())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the image; the bytes are kept as they are unless the suffix names another format."""
        path = Path(path)
        fmt = _media.IMAGE_SUFFIXES.get(path.suffix.lower())
        if fmt is None or _media.IMAGE_FORMATS[fmt] == self.mime_type:
            path.write_bytes(self.data)
        else:
            path.write_bytes(_media.encode_image(self.to_pil(), fmt))
        return path

    def _describe(self) -> str:
        return f"{self.mime_type}, {self.width}x{self.height}"


class Audio(_Media):
    """An audio clip, kept as its encoded bytes.

    Make one with :meth:`open`, :meth:`from_bytes` or :meth:`from_array`; read it back with
    :meth:`to_numpy`.
    """

    type: Literal["audio"] = "audio"
    sample_rate: int | None = None
    """Samples per second; found from the bytes when not given, checked against them when given."""

    _frames: int = PrivateAttr(0)
    _channels: int = PrivateAttr(0)

    @model_validator(mode="after")
    def _validate_bytes(self) -> Audio:
        info = _media.inspect_audio(self.data)
        object.__setattr__(self, "mime_type", self._check_mime(info.mime_type))
        if self.sample_rate is not None and self.sample_rate != info.sample_rate:
            raise InvalidMediaError(
                f"declared sample rate {self.sample_rate} Hz does not match the data, which is {info.sample_rate} Hz"
            )
        object.__setattr__(self, "sample_rate", info.sample_rate)
        self._frames, self._channels = info.frames, info.channels
        return self

    @property
    def duration(self) -> float:
        """Length in seconds."""
        assert self.sample_rate is not None
        return self._frames / self.sample_rate

    @property
    def channels(self) -> int:
        """Number of channels."""
        return self._channels

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, provenance: Provenance | None = None) -> Audio:
        """Read an audio file (WAV, FLAC, OGG or MP3); its type is found from its bytes."""
        return cls(data=_read_file(path), provenance=provenance)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        mime_type: str | None = None,
        sample_rate: int | None = None,
        provenance: Provenance | None = None,
    ) -> Audio:
        """Wrap encoded audio bytes; ``mime_type`` and ``sample_rate``, when given, are checked against them."""
        return cls(data=data, mime_type=mime_type, sample_rate=sample_rate, provenance=provenance)

    @classmethod
    def from_array(
        cls,
        samples: Any,
        *,
        sample_rate: int,
        provenance: Provenance | None = None,
    ) -> Audio:
        """Encode samples, shape ``(frames,)`` or ``(frames, channels)``, as 16-bit WAV: floats in [-1, 1], or
        integer PCM (``int16`` as a WAV file holds it, ``int32``, ``uint8``) scaled from its type's range."""
        import numpy as np

        if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)):
            raise InvalidMediaError(f"sample_rate must be an int, not {type(sample_rate).__name__}")
        try:
            shape = np.shape(samples)  # an array's shape costs nothing; a list's is read without a float copy
        except (TypeError, ValueError) as exc:
            raise InvalidMediaError(f"audio samples must be an array of numbers ({exc})") from None
        if len(shape) not in (1, 2) or 0 in shape:
            raise InvalidMediaError(
                f"audio samples must be a non-empty (frames,) or (frames, channels) array, got shape {shape}"
            )
        # duration, channels and decoded size are refused from the shape, before any conversion is allocated
        _media.check_audio_shape(shape[0], shape[1] if len(shape) == 2 else 1, int(sample_rate))
        try:
            with np.errstate(over="ignore", invalid="ignore"):  # what does not fit is refused just below
                array = _media.pcm_as_float(np.asarray(samples))
        except (TypeError, ValueError) as exc:
            raise InvalidMediaError(f"audio samples must be numbers ({exc})") from None
        if not np.all(np.isfinite(array)):
            raise InvalidMediaError("audio samples contain NaN or infinity")
        data = _media.encode_audio(np.clip(array, -1.0, 1.0), int(sample_rate))
        return cls(data=data, provenance=provenance)

    @classmethod
    def _encoded_here(cls, samples: np.ndarray, *, sample_rate: int, provenance: Provenance | None = None) -> Audio:
        """Finite ``float32`` samples the SDK encodes itself (a model's output) as 16-bit WAV, with what the clip
        is known from the encoding, not decoded again; the shape is held to the limits as :meth:`from_array`
        holds it."""
        channels = 1 if samples.ndim == 1 else int(samples.shape[1])
        _media.check_audio_shape(len(samples), channels, sample_rate)
        data = _media.encode_audio(samples.clip(-1.0, 1.0), sample_rate)
        clip = cls.model_construct(data=data, mime_type="audio/wav", sample_rate=sample_rate, provenance=provenance)
        clip._frames, clip._channels = len(samples), channels
        return clip

    def to_numpy(self) -> np.ndarray:
        """Decode to ``float32`` samples, shape ``(frames,)`` for mono, ``(frames, channels)`` otherwise."""
        return _media.decode_audio(self.data)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the clip; the bytes are kept as they are unless the suffix names another format."""
        path = Path(path)
        fmt = _media.AUDIO_SUFFIXES.get(path.suffix.lower())
        if fmt is None or _media.AUDIO_FORMATS[fmt] == self.mime_type:
            path.write_bytes(self.data)
        else:
            assert self.sample_rate is not None
            path.write_bytes(_media.encode_audio(self.to_numpy(), self.sample_rate, fmt))
        return path

    def _describe(self) -> str:
        return f"{self.mime_type}, {self.sample_rate} Hz, {self.duration:.2f} s"


class Video(_Media):
    """A video clip, kept as its encoded bytes (MP4 with H.264 when the SDK encodes one; WebM, and animated
    GIF and WebP are read too). An audio track, if any, is ignored for now.

    Make one with :meth:`open`, :meth:`from_bytes` or :meth:`from_frames`; read it back with
    :meth:`to_frames`. Needs PyAV (``pip install 'codi2-sdk[video]'``).
    """

    type: Literal["video"] = "video"
    fps: float | None = None
    """Frames per second; found from the bytes when not given, checked against them when given."""

    _width: int = PrivateAttr(0)
    _height: int = PrivateAttr(0)
    _frames: int = PrivateAttr(0)

    @model_validator(mode="after")
    def _validate_bytes(self) -> Video:
        info, _ = _media.decode_video(self.data, keep_frames=False)
        object.__setattr__(self, "mime_type", self._check_mime(info.mime_type))
        if self.fps is not None and abs(self.fps - info.fps) > 0.01 * info.fps:
            raise InvalidMediaError(
                f"declared frame rate {self.fps:g} fps does not match the data, which is {info.fps:g}"
            )
        object.__setattr__(self, "fps", info.fps)
        self._width, self._height, self._frames = info.width, info.height, info.frames
        return self

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return self._width

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return self._height

    @property
    def frames(self) -> int:
        """Number of frames."""
        return self._frames

    @property
    def duration(self) -> float:
        """Length in seconds."""
        assert self.fps is not None
        return self._frames / self.fps

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, provenance: Provenance | None = None) -> Video:
        """Read a video file (MP4, WebM, animated GIF or WebP); its type is found from its bytes."""
        return cls(data=_read_file(path), provenance=provenance)

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        mime_type: str | None = None,
        fps: float | None = None,
        provenance: Provenance | None = None,
    ) -> Video:
        """Wrap encoded video bytes; ``mime_type`` and ``fps``, when given, are checked against them."""
        return cls(data=data, mime_type=mime_type, fps=fps, provenance=provenance)

    @classmethod
    def from_frames(cls, frames: Any, *, fps: float, provenance: Provenance | None = None) -> Video:
        """Encode RGB frames, shape ``(frames, height, width, 3)`` (integers from 0 to 255, or floats in [0, 1]), as
        MP4/H.264."""
        import numpy as np

        try:
            shape = np.shape(frames)
        except (TypeError, ValueError) as exc:
            raise InvalidMediaError(f"video frames must be an array ({exc})") from None
        if len(shape) != 4 or shape[-1] != 3 or 0 in shape:
            raise InvalidMediaError(f"video frames must be a non-empty (frames, height, width, 3) array, got {shape}")
        _media.check_video_shape(shape[0], shape[2], shape[1], float(fps))
        try:
            array = _media.as_uint8(np.asarray(frames), "video frames")
        except (TypeError, ValueError) as exc:
            raise InvalidMediaError(f"video frames must be numbers ({exc})") from None
        return cls(data=_media.encode_video(array, float(fps)), provenance=provenance)

    @classmethod
    def _encoded_here(cls, frames: np.ndarray, *, fps: float, provenance: Provenance | None = None) -> Video:
        """``uint8`` RGB frames the SDK encodes itself (a model's output) as MP4, with what the clip is known from
        the encoding (sides padded to even, the rate as the container stores it), not decoded again."""
        count, height, width = frames.shape[:3]
        _media.check_video_shape(count, width, height, float(fps))
        data, rate = _media.encode_video(frames, float(fps)), _media.stored_frame_rate(float(fps))
        clip = cls.model_construct(data=data, mime_type="video/mp4", fps=rate, provenance=provenance)
        clip._width, clip._height, clip._frames = width + width % 2, height + height % 2, count
        return clip

    def to_frames(self) -> np.ndarray:
        """Decode to ``uint8`` RGB frames, shape ``(frames, height, width, 3)``."""
        import numpy as np

        _, frames = _media.decode_video(self.data)
        return np.stack(frames)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the clip; the bytes are kept as they are unless the suffix names another format (``.gif``,
        ``.mp4``)."""
        path = Path(path)
        wanted = _media.VIDEO_SUFFIXES.get(path.suffix.lower())
        if wanted is None or wanted == self.mime_type:
            path.write_bytes(self.data)
        elif wanted == "image/gif":
            import PIL.Image

            pictures = [PIL.Image.fromarray(frame) for frame in self.to_frames()]
            assert self.fps is not None
            pictures[0].save(
                path, format="GIF", save_all=True, append_images=pictures[1:], duration=1000 / self.fps, loop=0
            )
        else:
            assert self.fps is not None
            path.write_bytes(_media.encode_video(self.to_frames(), self.fps))
        return path

    def _describe(self) -> str:
        return f"{self.mime_type}, {self.width}x{self.height}, {self.frames} frames at {self.fps:g} fps"


def _read_file(path: str | os.PathLike[str]) -> bytes:
    data = _media.read_regular_file(Path(path), _media.MAX_MEDIA_BYTES)
    if data is None:
        raise InvalidMediaError(f"{path} is not a regular file (a device, pipe or socket)")
    return data


Part = Annotated[Text | Image | Audio | Video, Field(discriminator="type")]
"""Any content part; pydantic picks the class from ``type``."""

MediaPart = Image | Audio | Video
"""An image, an audio clip or a video clip."""

MEDIA_PARTS: dict[MediaModality, type[Image] | type[Audio] | type[Video]] = {
    "image": Image,
    "audio": Audio,
    "video": Video,
}
"""The content part class of each medium: the one registry of media kinds that the rest derives from."""


def picture_or_clip(image: Image) -> Image | Video:
    """``image`` as a :class:`Video` when it is an animated GIF or WebP, else as it is: where a file's kind is
    known only from its format, an animation is a clip."""
    if image.mime_type in _media.VIDEO_IMAGE_FORMATS.values() and _media.is_animated(image.data):
        return Video.from_bytes(image.data, mime_type=image.mime_type)
    return image


def open_media(path: str | os.PathLike[str]) -> MediaPart:
    """Open a picture, sound or video file as its part, by the file's suffix (``.png``, ``.wav``, ``.mp4``,
    ...); a GIF or WebP is a :class:`Video` when it is animated and an :class:`Image` when it is still (open it
    with ``Image.open`` to take an animation's first frame as a picture).

    Raises:
        InvalidMediaError: the suffix is not one of a medium, or the file is not a usable medium.
        MediaTooLargeError: the file is over the size limit.
    """
    suffix = Path(path).suffix.lower()
    if suffix in _media.IMAGE_SUFFIXES:
        return picture_or_clip(Image.open(path))
    if suffix in _media.AUDIO_SUFFIXES:
        return Audio.open(path)
    if suffix in _media.VIDEO_SUFFIXES:
        return Video.open(path)
    known = sorted({*_media.IMAGE_SUFFIXES, *_media.AUDIO_SUFFIXES, *_media.VIDEO_SUFFIXES})
    raise InvalidMediaError(f"{path}: not a picture, sound or video file (known suffixes: {', '.join(known)})")
