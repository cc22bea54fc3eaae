"""MediaStore: stable, readable references to media for agents.

Agents never pass bytes or guess paths. A medium is referred to by an id the store gave it
(``image_1``, ``audio_3``, ``video_2``), or by the path of a file under one of the store's allowed folders. Every
other reference is refused with :class:`~codi2_sdk.errors.MediaReferenceError`, saying why.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from ..content import MEDIA_PARTS, Audio, Image, MediaModality, MediaPart, Video, open_media
from ..errors import InvalidMediaError, InvalidRequestError, MediaReferenceError

__all__ = ["MediaStore"]

_ID = re.compile(r"^(image|audio|video)_\d+$")
MEDIUM_NOUNS = {"image": "an image", "audio": "an audio clip", "video": "a video"}
"""How messages to agents name each kind of medium."""
DEFAULT_MAX_BYTES = 256 * 2**20
"""Memory a :class:`MediaStore` holds media in by default."""
MAX_REFERENCE_LENGTH = 4096
"""Longest reference accepted (a path, or an id)."""


class MediaStore:
    """Holds media for tools and hands out ids.

    Args:
        directory: if given, every stored medium is also written there in its own format, named by its id
            (``image_1.png``, ``image_2.jpg``, ``audio_1.wav``, ``video_1.mp4``; :attr:`~codi2_sdk.Image.suffix`),
            and the folder is readable by reference, like an allowed root.
        allowed_roots: folders whose files may be referenced by path.
        max_bytes: memory the media held may take (256 MiB by default); past it, the least recently used are let
            go (the newest is always kept). An id let go is read back from ``directory`` when there is one, and
            refused with a message that says so when there is none: a long-running agent or MCP server does not
            grow without bound.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        allowed_roots: Sequence[str | os.PathLike[str]] = (),
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.directory = Path(directory).resolve() if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        roots = [Path(r).resolve() for r in allowed_roots]
        self.allowed_roots = roots + ([self.directory] if self.directory is not None else [])
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
            raise InvalidRequestError(f"max_bytes must be a whole number of bytes, at least 1, not {max_bytes!r}")
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, MediaPart] = OrderedDict()  # least recently used first
        self._bytes = 0
        self._counts = dict.fromkeys(MEDIA_PARTS, 0)
        self._lock = threading.Lock()

    def put(self, part: MediaPart) -> str:
        """Store a medium and return its new id."""
        with self._lock:
            self._counts[part.type] += 1
            ref = f"{part.type}_{self._counts[part.type]}"
            self._hold(ref, part)
        if self.directory is not None:
            part.save(self.directory / f"{ref}{part.suffix}")
        return ref

    def _hold(self, ref: str, part: MediaPart) -> None:
        """Keep ``part`` in memory as the most recently used, letting the least recently used go past the budget."""
        self._items[ref] = part
        self._bytes += len(part.data)
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped.data)

    def _handed_out(self, ref: str) -> bool:
        kind, _, number = ref.partition("_")
        return bool(_ID.match(ref)) and 1 <= int(number) <= self._counts[kind]  # type: ignore[index]

    def __contains__(self, ref: object) -> bool:
        """Whether ``ref`` is an id this store handed out and can still give back."""
        if not isinstance(ref, str) or not self._handed_out(ref):
            return False
        return ref in self._items or self._kept_file(ref) is not None

    def __len__(self) -> int:
        """How many media are held in memory."""
        return len(self._items)

    def _kept_file(self, ref: str) -> Path | None:
        """The file ``directory`` holds for an id, if any."""
        if self.directory is None:
            return None
        return next((p for p in sorted(self.directory.glob(f"{ref}.*")) if p.stem == ref and p.is_file()), None)

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
        with self._lock:
            if ref in self._items:
                self._items.move_to_end(ref)
                return self._items[ref]
        if _ID.match(ref):
            return self._let_go(ref)
        return self._open(ref)

    def _let_go(self, ref: str) -> MediaPart:
        """An id not held in memory: read back from ``directory``, or refused saying why."""
        if not self._handed_out(ref):
            recent = list(reversed(self._items))
            known = ", ".join(recent[:10]) + (f" and {len(recent) - 10} more" if len(recent) > 10 else "")
            raise MediaReferenceError(f"unknown media id '{ref}'; known ids: {known or 'none yet'}")
        kept = self._kept_file(ref)
        if kept is None:
            raise MediaReferenceError(
                f"media id '{ref}' was let go: the store keeps the most recently used media within "
                f"{_amount(self.max_bytes)} (give it a directory to keep every medium on disk)"
            )
        part = self._open(str(kept))
        with self._lock:
            self._hold(ref, part)
        return part

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


def _amount(size: int) -> str:
    return f"{size / 2**20:.0f} MiB" if size >= 2**20 else f"{size:,} bytes"
