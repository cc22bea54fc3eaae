"""codi2-sdk: interleaved text, image, audio and video conversations with CoDi-2 models.

>>> from codi2_sdk import Conversation
>>> conv = Conversation()   # the embedded codi2-mini model, on the CPU
>>> conv.send("Describe the sound of a red circle.")   # doctest: +SKIP

The top level holds the public API. ``LocalBackend`` (needs torch) and ``RemoteBackend`` (needs
httpx) are imported on first use, so ``import codi2_sdk`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _moved  # noqa: F401  (registers the old import paths of renamed modules, for one release)
from .backends.base import Backend
from .config import AudioConfig, GenerationConfig, ImageConfig, TextConfig, VideoConfig
from .content import Audio, Image, MediaModality, Modality, Part, Provenance, Text, Video
from .conversation import Conversation
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    Codi2Error,
    ConversationFileError,
    InternalServerError,
    InvalidMediaError,
    InvalidRequestError,
    MediaReferenceError,
    MediaTooLargeError,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableEntityError,
)
from .events import Capabilities, Done, ErrorEvent, Event, GenerationRequest, MediaDone, Progress, TextDelta
from .messages import Example, Message, assistant, system, user

if TYPE_CHECKING:
    from .backends.local import LocalBackend
    from .backends.remote import RemoteBackend

__version__ = "0.1.0"

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "Audio",
    "AudioConfig",
    "AuthenticationError",
    "Backend",
    "BadRequestError",
    "Capabilities",
    "Codi2Error",
    "Conversation",
    "ConversationFileError",
    "Done",
    "ErrorEvent",
    "Event",
    "Example",
    "GenerationConfig",
    "GenerationRequest",
    "Image",
    "ImageConfig",
    "InternalServerError",
    "InvalidMediaError",
    "InvalidRequestError",
    "LocalBackend",
    "MediaDone",
    "MediaModality",
    "MediaReferenceError",
    "MediaTooLargeError",
    "Message",
    "MissingDependencyError",
    "Modality",
    "ModelError",
    "ModelNotFoundError",
    "NotFoundError",
    "Part",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Progress",
    "Provenance",
    "RateLimitError",
    "RemoteBackend",
    "ServiceUnavailableError",
    "Text",
    "TextConfig",
    "TextDelta",
    "UnprocessableEntityError",
    "Video",
    "VideoConfig",
    "__version__",
    "assistant",
    "system",
    "user",
]

_LAZY = {
    "LocalBackend": ".backends.local",
    "RemoteBackend": ".backends.remote",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'codi2_sdk' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
