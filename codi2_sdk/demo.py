"""``codi2 demo``: a showcase of what the SDK does, on codi2-mini, written to a folder with a page to open.

Each scene is a real conversation with the model (no server): text to image, a 2-shot in-context image edit,
image to audio, a 2-shot in-context audio edit, text to video, a 2-shot in-context video edit and a three-turn
conversation. Every input and output is saved as a PNG, WAV or MP4 file beside ``index.html``, which shows every
turn with pictures, audio and video players.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import samples
from .backends.base import Backend
from .content import Audio, Image, Part, Text
from .conversation import Conversation

__all__ = ["SCENES", "run_demo"]


@dataclass
class Scene:
    """A titled conversation: in-context examples, then user turns (each a list of parts)."""

    title: str
    what: str
    turns: list[list[Any]]
    examples: list[tuple[Any, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)


def _scenes() -> list[Scene]:
    return _picture_and_sound_scenes() + _video_and_conversation_scenes()


def _picture_and_sound_scenes() -> list[Scene]:
    pic, snd = samples.picture, samples.sound
    return [
        Scene(
            "Text to image",
            "A description in, a picture out.",
            [["draw a large magenta diamond on the right."]],
            config={"output_modality": "image"},
        ),
        Scene(
            "In-context image edit (2 examples)",
            "The edit is never named: two before/after pairs show it (make it large), then a new picture comes.",
            [[pic("a small cyan triangle in the center")]],
            examples=[
                (pic("a small red circle on the left"), pic("a large red circle on the left")),
                (pic("a small blue square on the right"), pic("a large blue square on the right")),
            ],
            config={"output_modality": "image"},
        ),
        Scene(
            "Image to audio",
            "A picture in, its sound out (colour sets the note, position the beeps, shape the timbre).",
            [[pic("a large green circle on the right"), "what does it sound like?"]],
            config={"output_modality": "audio"},
        ),
        Scene(
            "In-context audio edit (2 examples)",
            "Two before/after pairs show the change (three beeps); the model applies it to a new clip.",
            [[snd("one sawtooth beep at la")]],
            examples=[
                (snd("one sine beep at do"), snd("three sine beeps at do")),
                (snd("two square beeps at sol"), snd("three square beeps at sol")),
            ],
            config={"output_modality": "audio"},
        ),
    ]


def _video_and_conversation_scenes() -> list[Scene]:
    pic, vid = samples.picture, samples.clip
    return [
        Scene(
            "Text to video",
            "A description in, a clip out (8 frames at 4 fps).",
            [["show a large red circle moving to the right."]],
            config={"output_modality": "video"},
        ),
        Scene(
            "In-context video edit (2 examples)",
            "Two before/after pairs of clips show the change (make it green); the model applies it to a new clip.",
            [[vid("a small blue triangle moving to the left")]],
            examples=[
                (vid("a large red square moving to the right"), vid("a large green square moving to the right")),
                (vid("a yellow circle growing"), vid("a green circle growing")),
            ],
            config={"output_modality": "video"},
        ),
        Scene(
            "A three-turn conversation",
            "Each turn sees the whole history, including the pictures the model made before.",
            [
                [pic("a small yellow square on the left"), "what is this?"],
                ["make it blue."],
                ["move it to the right."],
            ],
        ),
        Scene(
            "Subject-driven generation (zero-shot)",
            "Two pictures of an object no word names and no training saw (a blue diamond with a checker on it), then "
            '"draw this object large on the right.": the model keeps the object\'s look at the new size and place.',
            [
                [
                    pic("a small blue diamond on the left", mark="checker", seed=1),
                    pic("a large blue diamond in the center", mark="checker", seed=2),
                    "draw this object large on the right.",
                ]
            ],
            config={"output_modality": "image"},
        ),
    ]


SCENES: Callable[[], list[Scene]] = _scenes
"""The demo's scenes (built on call: rendering the sample media takes a moment)."""


class _Page:
    """Saves parts as files and renders turns as HTML that points at them."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.count = 0

    def part(self, part: Part) -> str:
        if isinstance(part, Text):
            return f"<span>{html.escape(part.text)}</span>"
        self.count += 1
        if isinstance(part, Image):
            name = f"{self.count:02d}-image.png"
            part.save(self.out / name)
            return f'<img src="{name}" alt="picture {self.count}">'
        if isinstance(part, Audio):
            name = f"{self.count:02d}-audio.wav"
            part.save(self.out / name)
            return f'<audio controls src="{name}"></audio>'
        name = f"{self.count:02d}-video.mp4"
        part.save(self.out / name)
        return f'<video controls src="{name}"></video>'

    def parts(self, parts: list[Part]) -> str:
        return " ".join(self.part(p) for p in parts)


STYLE = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
section{border:1px solid #ddd;border-radius:8px;padding:1rem;margin:1rem 0}
.turn{display:flex;gap:.75rem;align-items:center;margin:.5rem 0}.role{width:6rem;font-weight:600;color:#555}
img{width:128px;height:128px;image-rendering:pixelated;border:1px solid #ccc}.what{color:#555}"""


def run_demo(out: str | Path, backend: Backend | None = None, *, progress: bool = True, seed: int = 0) -> Path:
    """Play every scene against ``backend`` (codi2-mini in-process by default) and write ``out/index.html``
    with the media files beside it; returns the page's path."""
    from tqdm.auto import tqdm

    from .backends.local import LocalBackend

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backend = backend or LocalBackend.from_pretrained("codi2-mini")
    scenes = SCENES()
    page = _Page(out)
    sections: list[str] = []
    bar = tqdm(total=sum(len(s.turns) for s in scenes), disable=not progress, desc="demo", unit="turn")
    for scene in scenes:
        conv = Conversation(backend=backend, config={"seed": seed, **scene.config})
        rows = []
        for before, after in scene.examples:
            conv.add_example(inputs=before, outputs=after)
            example = f"{page.parts([before])} &rarr; {page.parts([after])}"
            rows.append(f'<div class="turn"><span class="role">example</span>{example}</div>')
        for turn in scene.turns:
            answer = conv.send(*turn)
            asked = page.parts(conv.messages[-2].parts)
            rows.append(f'<div class="turn"><span class="role">you</span>{asked}</div>')
            rows.append(f'<div class="turn"><span class="role">codi2-mini</span>{page.parts(answer.parts)}</div>')
            bar.update()
        conv.save(out / f"{len(sections) + 1}-conversation.json")
        sections.append(
            f"<section><h2>{html.escape(scene.title)}</h2><p class='what'>{html.escape(scene.what)}</p>"
            + "".join(rows)
            + "</section>"
        )
    bar.close()
    model = html.escape(backend.capabilities.model)
    index = out / "index.html"
    index.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>codi2-sdk demo</title><style>{STYLE}</style>"
        f"</head><body><h1>codi2-sdk demo</h1><p>Every turn below was made by {model} on this machine "
        f"(seed {seed}); the conversations are saved beside this page as JSON.</p>{''.join(sections)}</body></html>"
    )
    return index
