"""MediaStore: stable, readable references to media for agents.

Agents never pass bytes or guess paths. A medium is referred to by an id the store gave it
(``image_1``, ``audio_3``, ``video_2``), or by the path of a file under one of the store's allowed folders. Every
other reference is refused with :class:`~codi2_sdk.errors.MediaReferenceError`, saying why.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from ..content import MEDIA_PARTS, Audio, Image, MediaModality, MediaPart, Video, open_media
from ..errors import InvalidMediaError, MediaReferenceError

__all__ = ["MediaStore"]

_ID = re.compile(r"^(image|audio|video)_\d+$")
MEDIUM_NOUNS = {"image": "an image", "audio": "an audio clip", "video": "a video"}
"""How messages to agents name each kind of medium."""
MAX_REFERENCE_LENGTH = 4096
"""Longest reference accepted (a path, or an id)."""


class MediaStore:
    """Holds media for tools and hands out ids.

    Args:
        directory: if given, every stored medium is also written there in its own format, named by its id
            (``image_1.png``, ``image_2.jpg``, ``audio_1.wav``, ``video_1.mp4``; :attr:`~codi2_sdk.Image.suffix`),
            and the folder is readable by reference, like an allowed root.
        allowed_roots: folders whose files may be referenced by path.
    """

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, *, allowed_roots: Sequence[str | os.PathLike[str]] = ()
    ) -> None:
        self.directory = Path(directory).resolve() if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        roots = [Path(r).resolve() for r in allowed_roots]
        self.allowed_roots = roots + ([self.directory] if self.directory is not None else [])
        self._items: dict[str, MediaPart] = {}
        self._counts = dict.fromkeys(MEDIA_PARTS, 0)
        self._lock = threading.Lock()

    def put(self, part: MediaPart) -> str:
        """Store a medium and return its new id."""
        with self._lock:
            self._counts[part.type] += 1
            ref = f"{part.type}_{self._counts[part.type]}"
            self._items[ref] = part
        if self.directory is not None:
            part.save(self.directory / f"{ref}{part.suffix}")
        return ref

    def __contains__(self, ref: object) -> bool:
        return ref in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, ref: str) -> MediaPart:
        """The medium for an id, or for a file under an allowed folder.

        Raises:
            MediaReferenceError: for any reference that does not name a stored medium or a readable medium
                file under an allowed folder (whatever the string: empty, over-long, with NUL bytes, ...).
        """
        if not isinstance(ref, str) or not ref.strip():
            raise MediaReferenceError("a media reference must be an id like 'image_1' or a file path")
        if len(ref) > MAX_REFERENCE_LENGTH:
            raise MediaReferenceError(f"a media reference is at most {MAX_REFERENCE_LENGTH} characters long")
        if "\x00" in ref:
            raise MediaReferenceError("a media reference cannot contain a NUL character")
        ref = ref.strip()
        if ref in self._items:
            return self._items[ref]
        if _ID.match(ref):
            known = ", ".join(sorted(self._items)) or "none yet"
            raise MediaReferenceError(f"unknown media id '{ref}'; known ids: {known}")
        return self._open(ref)

    def get_as(self, ref: str, modality: MediaModality) -> MediaPart:
        """Like :meth:`get`, but the medium must be of ``modality`` (``"image"``, ``"audio"`` or ``"video"``)."""
        part = self.get(ref)
        if part.type != modality:
            raise MediaReferenceError(
                f"'{ref}' is {MEDIUM_NOUNS[part.type]}, but {MEDIUM_NOUNS[modality]} is needed here"
            )
        return part

    def get_image(self, ref: str) -> Image:
        """Like :meth:`get`, but the medium must be an image."""
        return self.get_as(ref, "image")  # type: ignore[return-value]

    def get_audio(self, ref: str) -> Audio:
        """Like :meth:`get`, but the medium must be an audio clip."""
        return self.get_as(ref, "audio")  # type: ignore[return-value]

    def get_video(self, ref: str) -> Video:
        """Like :meth:`get`, but the medium must be a video."""
        return self.get_as(ref, "video")  # type: ignore[return-value]

    def _open(self, ref: str) -> MediaPart:
        try:
            resolved = self._resolve(ref)
            is_file = resolved.is_file()
        except (OSError, ValueError, RuntimeError) as exc:  # too long, undecodable, ~nobody, ... for this system
            raise MediaReferenceError(f"'{ref[:200]}' is not a usable file path ({type(exc).__name__})") from None
        if not any(resolved.is_relative_to(root) for root in self.allowed_roots):
            roots = ", ".join(str(r) for r in self.allowed_roots) or "none are configured"
            raise MediaReferenceError(f"'{ref[:200]}' is outside the folders media may be read from ({roots})")
        if not is_file:
            raise MediaReferenceError(f"no file at '{ref[:200]}'")
        try:
            return open_media(resolved)
        except InvalidMediaError as exc:
            raise MediaReferenceError(f"'{ref}' is not a usable medium: {exc}") from exc
        except OSError as exc:  # unreadable: permissions, a folder swapped in, ...
            raise MediaReferenceError(f"'{ref}' cannot be read ({exc.strerror or type(exc).__name__})") from None

    def _resolve(self, ref: str) -> Path:
        path = Path(ref).expanduser()
        if not path.is_absolute():
            # A relative name is looked up in each allowed folder, then taken from the working folder.
            found = [root / path for root in self.allowed_roots if (root / path).exists()]
            if found:
                path = found[0]
            elif len(self.allowed_roots) == 1:
                path = self.allowed_roots[0] / path
        return path.resolve()  # follows symlinks, so a link cannot lead outside a root
