"""Tasks over the mini world: rendered conversations with known answers, and their scoring.

A :class:`Case` is one request (in-context examples and messages), the right answer (an assistant
message with rendered media, used as the training target) and what the answer must contain (the
attributes of each medium or described item), so any answer can be scored with the probes.

Held-out items: a fixed set of pictures and sounds (about 10% of each) never appears in a training case,
in any role; :class:`TaskSampler` draws training cases without them and evaluation cases with them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..content import Audio, Image, Video
from ..messages import Example, Message, assistant, user
from .clips import CLIP_ATTRIBUTES, CLIP_FPS, Clip, all_clips, probe_clip, render_clip
from .probes import probe_picture, probe_sound
from .world import (
    BEEP_WORDS,
    PICTURE_ATTRIBUTES,
    POSITIONS,
    SAMPLE_RATE,
    SIZES,
    SOUND_ATTRIBUTES,
    Picture,
    Sound,
    Subject,
    all_pictures,
    all_sounds,
    all_subjects,
    picture_to_sound,
    render_picture,
    render_sound,
    sound_to_picture,
)

__all__ = [
    "HELDOUT_CLIPS",
    "HELDOUT_PICTURES",
    "HELDOUT_SOUNDS",
    "HELDOUT_SUBJECTS",
    "LORA_TASK",
    "TASKS",
    "Case",
    "OWN_OUTPUT_TASKS",
    "SUBJECT_TASK",
    "VIDEO_TASKS",
    "TaskSampler",
    "edit_shown",
    "parse_clip",
    "parse_picture",
    "parse_sound",
    "score_answer",
    "vocabulary",
]

VIDEO_TASKS = ("text_to_video", "video_to_text", "image_to_video", "in_context_video_edit")
"""The video tasks (codi2-mini v2: its LLM learnt them after the others, in the ``llm-v2`` stage)."""
OWN_OUTPUT_TASKS = ("describe_generated_image", "describe_generated_audio")
"""Make a medium, then describe it in the next turn: reading the model's own outputs (codi2-mini v2)."""
SUBJECT_TASK = "subject_driven_image"
"""Draw "this object" (shown in 1-3 reference pictures, never named) at an asked size and position."""
TASKS = (
    "text_to_image",
    "image_to_text",
    "text_to_audio",
    "audio_to_text",
    "image_to_audio",
    "audio_to_image",
    "instructed_image_edit",
    "instructed_audio_edit",
    "in_context_image_edit",
    "in_context_audio_edit",
    "multi_round_edit",
    "interleaved_answer",
    *VIDEO_TASKS,
    *OWN_OUTPUT_TASKS,
    SUBJECT_TASK,
)
LORA_TASK = "step_right_edit"
"""The skill held out of the main mix and taught by the LoRA stage: "move it one step right"."""

Item = Picture | Sound | Clip


def _pick_heldout() -> tuple[frozenset[Picture], frozenset[Sound], frozenset[Clip]]:
    # Fixed forever (seeds 2311, 2312): every attribute value still appears in training.
    rng = np.random.default_rng(2311)
    pictures, sounds, clips = all_pictures(), all_sounds(), all_clips()
    held_p = [pictures[i] for i in rng.choice(len(pictures), 14, replace=False)]
    held_s = [sounds[i] for i in rng.choice(len(sounds), 7, replace=False)]
    held_c = [clips[i] for i in np.random.default_rng(2312).choice(len(clips), 14, replace=False)]
    return frozenset(held_p), frozenset(held_s), frozenset(held_c)


HELDOUT_PICTURES, HELDOUT_SOUNDS, HELDOUT_CLIPS = _pick_heldout()
HELDOUT_SUBJECTS = frozenset(
    all_subjects()[i] for i in np.random.default_rng(2313).choice(len(all_subjects()), 14, replace=False)
)
"""Subjects no stage of training ever sees (subject-driven generation is zero-shot on them)."""


def is_heldout(item: Item | Subject | None) -> bool:
    if isinstance(item, Picture) and item.mark:
        return item.subject in HELDOUT_SUBJECTS
    if isinstance(item, Subject):
        return item in HELDOUT_SUBJECTS
    return item in HELDOUT_PICTURES or item in HELDOUT_SOUNDS or item in HELDOUT_CLIPS


def image_instruction(attribute: str, value: str) -> str:
    """The words of an instructed picture edit."""
    return {
        "colour": f"make it {value}",
        "shape": f"turn it into a {value}",
        "size": f"make it {value}",
        "position": "move it to the center" if value == "center" else f"move it to the {value}",
    }[attribute]


def sound_instruction(attribute: str, value: str | int) -> str:
    """The words of an instructed sound edit."""
    if attribute == "beeps":
        return f"make it {BEEP_WORDS[int(value)]} beeps" if value != 1 else "make it one beep"
    return {"note": f"change the note to {value}", "timbre": f"play it as {value}"}[attribute]


def motion_instruction(motion: str) -> str:
    """The words that ask for a picture to move: ``"make it move to the right"``, ``"make it grow"``."""
    return {
        "rightward": "make it move to the right",
        "leftward": "make it move to the left",
        "growing": "make it grow",
        "shrinking": "make it shrink",
    }[motion]


STEP_RIGHT = "move it one step right"
_NEXT_POSITION = {"left": "center", "center": "right"}


@dataclass
class Case:
    """One scored request."""

    task: str
    messages: list[Message]
    answer: Message
    expected: list[Item]
    """What the answer must hold, in order: pictures and sounds (as media, or described in text)."""
    examples: list[Example] = field(default_factory=list)
    query: Item | None = None
    """The medium the request is about (copying it is the baseline for edits)."""
    followups: list[Message] = field(default_factory=list)
    """For multi-round cases: the later user turns, to be sent after the model's own answers."""
    heldout: bool = False

    @property
    def name(self) -> str:
        if self.task.startswith("in_context"):
            return f"{self.task}_{len(self.examples)}shot"
        return self.task


def picture_part(picture: Picture, rng: np.random.Generator) -> Image:
    return Image.from_pil(render_picture(picture, rng))


def sound_part(sound: Sound, rng: np.random.Generator) -> Audio:
    return Audio.from_array(render_sound(sound, rng), sample_rate=SAMPLE_RATE)


def clip_part(clip: Clip, rng: np.random.Generator) -> Video:
    return Video.from_frames(render_clip(clip, rng), fps=CLIP_FPS)


def _media(item: Item, rng: np.random.Generator) -> Image | Audio | Video:
    if isinstance(item, Clip):
        return clip_part(item, rng)
    return picture_part(item, rng) if isinstance(item, Picture) else sound_part(item, rng)


def item_attributes(item: Item) -> dict[str, tuple[Any, ...]]:
    """The attributes an item is scored on, with their values."""
    if isinstance(item, Clip):
        return CLIP_ATTRIBUTES
    return PICTURE_ATTRIBUTES if isinstance(item, Picture) else SOUND_ATTRIBUTES


def edit_shown(pairs: Sequence[tuple[Item, Item]], query: Item) -> Item | None:
    """The answer an in-context edit asks for: the attribute changes that every (before, after) pair shows,
    applied to ``query``; ``None`` when the pairs show no change, different changes, or items of another kind."""
    if not all(type(before) is type(after) is type(query) for before, after in pairs):
        return None
    changes = [
        {
            name: getattr(after, name)
            for name in item_attributes(before)
            if getattr(before, name) != getattr(after, name)
        }
        for before, after in pairs
    ]
    if not changes or not changes[0] or any(change != changes[0] for change in changes):
        return None
    return replace(query, **changes[0])


def _edit(item: Item, rng: np.random.Generator, attribute: str | None = None) -> tuple[str, Any, Item]:
    """A random attribute change of ``item``: (attribute, new value, edited item). A clip's motion is
    reversed (a clip keeps how it moves, only its direction changes)."""
    if isinstance(item, Clip):
        attribute = attribute or str(rng.choice(["shape", "colour", "motion"]))
        if attribute == "motion":
            edited = item.reversed()
            return attribute, edited.motion, edited
    attributes = item_attributes(item)
    attribute = attribute or str(rng.choice(list(attributes)))
    values = [v for v in attributes[attribute] if v != getattr(item, attribute)]
    value = values[int(rng.integers(len(values)))]
    return attribute, value, item.with_(attribute, value)  # type: ignore[arg-type]


def _instruction(item: Item, attribute: str, value: Any) -> str:
    return image_instruction(attribute, value) if isinstance(item, Picture) else sound_instruction(attribute, value)


class TaskSampler:
    """Draws :class:`Case` objects.

    Args:
        rng: the random generator (every render and choice comes from it).
        heldout: ``False`` draws only training items; ``True`` makes each case's query or target a
            held-out item (for the held-out evaluation).
    """

    SHOT_WEIGHTS = (0.2, 0.3, 0.5)
    """How often an in-context case without a set number of shots has 1, 2 and 3 examples (training draws
    more of the longer prompts, so more examples never score worse than fewer)."""

    def __init__(self, rng: np.random.Generator, *, heldout: bool = False) -> None:
        self.rng = rng
        self.heldout = heldout
        self.pictures = [p for p in all_pictures() if not is_heldout(p)]
        self.sounds = [s for s in all_sounds() if not is_heldout(s)]
        self.clips = [c for c in all_clips() if not is_heldout(c)]
        self.subjects = [s for s in all_subjects() if not is_heldout(s)]

    def _pick(self, pool: list[Any]) -> Any:
        return pool[int(self.rng.integers(len(pool)))]

    def picture(self) -> Picture:
        return self._pick(self.pictures)

    def sound(self) -> Sound:
        return self._pick(self.sounds)

    def clip(self) -> Clip:
        return self._pick(self.clips)

    def sample(self, task: str, *, shots: int | None = None, tries: int = 200) -> Case:
        """One case of ``task`` (``shots`` sets the number of examples for in-context tasks)."""
        build = getattr(self, f"_{task}")
        for _ in range(tries):
            case, involved = build(shots) if task.startswith("in_context") else build()
            touches_heldout = any(is_heldout(i) for i in involved)
            if self.heldout:
                focus = [case.query, *case.expected]
                if any(is_heldout(i) for i in focus if i is not None):
                    case.heldout = True
                    return case
            elif not touches_heldout:
                return case
        raise RuntimeError(f"no {task} case found in {tries} tries")

    # In held-out mode the query/target pools include every item; otherwise only training items.
    def _any_picture(self) -> Picture:
        return self._pick(all_pictures()) if self.heldout else self.picture()

    def _any_sound(self) -> Sound:
        return self._pick(all_sounds()) if self.heldout else self.sound()

    def _any_clip(self) -> Clip:
        return self._pick(all_clips()) if self.heldout else self.clip()

    def _any_subject(self) -> Subject:
        return self._pick(all_subjects()) if self.heldout else self._pick(self.subjects)

    # -- the tasks: each returns (case, every item it involves) --------------------------------------

    def _text_to_image(self) -> tuple[Case, list[Item]]:
        p = self._any_picture()
        case = Case("text_to_image", [user(f"draw {p.describe()}.")], assistant(picture_part(p, self.rng)), [p])
        return case, [p]

    def _image_to_text(self) -> tuple[Case, list[Item]]:
        p = self._any_picture()
        msg = user(picture_part(p, self.rng), "what is this?")
        return Case("image_to_text", [msg], assistant(f"{p.describe()}."), [p], query=p), [p]

    def _text_to_audio(self) -> tuple[Case, list[Item]]:
        s = self._any_sound()
        case = Case("text_to_audio", [user(f"play {s.describe()}.")], assistant(sound_part(s, self.rng)), [s])
        return case, [s]

    def _audio_to_text(self) -> tuple[Case, list[Item]]:
        s = self._any_sound()
        msg = user(sound_part(s, self.rng), "what do you hear?")
        return Case("audio_to_text", [msg], assistant(f"{s.describe()}."), [s], query=s), [s]

    def _image_to_audio(self) -> tuple[Case, list[Item]]:
        p = self._any_picture()
        s = picture_to_sound(p)
        msg = user(picture_part(p, self.rng), "what does it sound like?")
        return Case("image_to_audio", [msg], assistant(sound_part(s, self.rng)), [s], query=p), [p, s]

    def _audio_to_image(self) -> tuple[Case, list[Item]]:
        while True:
            s = self._any_sound()
            p = sound_to_picture(s)
            if p is not None:
                break
        msg = user(sound_part(s, self.rng), "what does it look like?")
        return Case("audio_to_image", [msg], assistant(picture_part(p, self.rng)), [p], query=s), [s, p]

    def _instructed(self, task: str, item: Item) -> tuple[Case, list[Item]]:
        attribute, value, edited = _edit(item, self.rng)
        msg = user(_media(item, self.rng), f"{_instruction(item, attribute, value)}.")
        return Case(task, [msg], assistant(_media(edited, self.rng)), [edited], query=item), [item, edited]

    def _instructed_image_edit(self) -> tuple[Case, list[Item]]:
        return self._instructed("instructed_image_edit", self._any_picture())

    def _instructed_audio_edit(self) -> tuple[Case, list[Item]]:
        return self._instructed("instructed_audio_edit", self._any_sound())

    def _in_context(self, task: str, shots: int | None, draw: Callable[[], Item]) -> tuple[Case, list[Item]]:
        shots = shots or 1 + int(self.rng.choice(3, p=self.SHOT_WEIGHTS))
        query = draw()
        attribute, value, target = _edit(query, self.rng)
        examples: list[Example] = []
        involved: list[Item] = [query, target]
        while len(examples) < shots:
            if isinstance(query, Clip):
                clip = self.clip()
                if attribute == "motion" and clip.motion != query.motion:
                    continue  # the same reversal as the query's
                source: Item = clip
            else:
                source = self.picture() if isinstance(query, Picture) else self.sound()
            if getattr(source, attribute) == value or source == query:
                continue  # an example must show the change
            edited = (
                source.reversed()
                if isinstance(source, Clip) and attribute == "motion"
                else source.with_(attribute, value)
            )  # type: ignore[arg-type]
            examples.append(Example(inputs=[_media(source, self.rng)], outputs=[_media(edited, self.rng)]))
            involved += [source, edited]
        msg = user(_media(query, self.rng))
        case = Case(task, [msg], assistant(_media(target, self.rng)), [target], examples=examples, query=query)
        return case, involved

    def _in_context_image_edit(self, shots: int | None = None) -> tuple[Case, list[Item]]:
        return self._in_context("in_context_image_edit", shots, self._any_picture)

    def _in_context_audio_edit(self, shots: int | None = None) -> tuple[Case, list[Item]]:
        return self._in_context("in_context_audio_edit", shots, self._any_sound)

    def _in_context_video_edit(self, shots: int | None = None) -> tuple[Case, list[Item]]:
        return self._in_context("in_context_video_edit", shots, self._any_clip)

    def _text_to_video(self) -> tuple[Case, list[Item]]:
        c = self._any_clip()
        case = Case("text_to_video", [user(f"show {c.describe()}.")], assistant(clip_part(c, self.rng)), [c])
        return case, [c]

    def _video_to_text(self) -> tuple[Case, list[Item]]:
        c = self._any_clip()
        msg = user(clip_part(c, self.rng), "what happens?")
        return Case("video_to_text", [msg], assistant(f"{c.describe()}."), [c], query=c), [c]

    def _image_to_video(self) -> tuple[Case, list[Item]]:
        while True:
            c = self._any_clip()
            p = Picture(c.shape, c.colour, c.size, "center" if c.motion in ("growing", "shrinking") else "left")
            if c.motion == "leftward":
                p = p.with_("position", "right")
            if not self.heldout and is_heldout(p):
                continue
            break
        # the picture may stand anywhere for a move; it moves across the whole frame
        if c.motion in ("rightward", "leftward"):
            p = p.with_("position", str(self.rng.choice(list(PICTURE_ATTRIBUTES["position"]))))
        msg = user(picture_part(p, self.rng), f"{motion_instruction(c.motion)}.")
        return Case("image_to_video", [msg], assistant(clip_part(c, self.rng)), [c], query=p), [p, c]

    def _describe_generated(self, task: str, item: Item, make: str, ask: str) -> tuple[Case, list[Item]]:
        first, followup = user(make), user(ask)
        messages = [first, assistant(_media(item, self.rng)), followup]
        answer = assistant(f"{item.describe()}.")
        return Case(task, messages, answer, [item], query=item, followups=[followup]), [item]

    def _describe_generated_image(self) -> tuple[Case, list[Item]]:
        p = self._any_picture()
        return self._describe_generated("describe_generated_image", p, f"draw {p.describe()}.", "what is this?")

    def _describe_generated_audio(self) -> tuple[Case, list[Item]]:
        s = self._any_sound()
        return self._describe_generated("describe_generated_audio", s, f"play {s.describe()}.", "what do you hear?")

    def _multi_round_edit(self) -> tuple[Case, list[Item]]:
        item: Picture = self._any_picture()
        start = item
        involved: list[Item] = [item]
        messages: list[Message] = []
        followups: list[Message] = []
        answer = assistant("")
        for round_ in range(3):
            attribute, value, item = _edit(item, self.rng)  # type: ignore[assignment]
            words = f"{image_instruction(attribute, value)}."
            turn = user(picture_part(start, self.rng), words) if round_ == 0 else user(words)
            if round_ > 0:
                messages.append(answer)
                followups.append(turn)
            messages.append(turn)
            answer = assistant(picture_part(item, self.rng))
            involved.append(item)
        return Case("multi_round_edit", messages, answer, [item], query=start, followups=followups), involved

    def _interleaved_answer(self) -> tuple[Case, list[Item]]:
        p = self._any_picture()
        s = picture_to_sound(p)
        msg = user(f"draw {p.describe()} and play its sound.")
        answer = assistant(
            "here is the picture:", picture_part(p, self.rng), "and here is its sound:", sound_part(s, self.rng)
        )
        return Case("interleaved_answer", [msg], answer, [p, s]), [p, s]

    def _subject_driven_image(self) -> tuple[Case, list[Item]]:
        subject = self._any_subject()
        layouts = [(size, where) for size in SIZES for where in POSITIONS]
        chosen = self.rng.choice(len(layouts), 1 + int(self.rng.integers(4)), replace=False)
        asked, shown = layouts[chosen[0]], [layouts[i] for i in chosen[1:]]
        if not shown:  # one reference, at a layout other than the asked one
            shown = [layouts[int(self.rng.choice([i for i in range(len(layouts)) if i != chosen[0]]))]]
        references = [subject.at(*layout) for layout in shown]
        target = subject.at(*asked)
        where = "in the center" if asked[1] == "center" else f"on the {asked[1]}"
        msg = user(*[picture_part(p, self.rng) for p in references], f"draw this object {asked[0]} {where}.")
        case = Case(SUBJECT_TASK, [msg], assistant(picture_part(target, self.rng)), [target], query=references[0])
        return case, [*references, target]

    def _step_right_edit(self) -> tuple[Case, list[Item]]:
        while True:
            p = self._any_picture()
            if p.position in _NEXT_POSITION:
                break
        target = p.with_("position", _NEXT_POSITION[p.position])
        msg = user(picture_part(p, self.rng), f"{STEP_RIGHT}.")
        return Case(LORA_TASK, [msg], assistant(picture_part(target, self.rng)), [target], query=p), [p, target]


_PICTURE_WORDS = {attr: {str(v): attr for v in values} for attr, values in PICTURE_ATTRIBUTES.items()}


def parse_picture(text: str) -> Picture | None:
    """Read a picture description (``"a large red circle on the left"``) back; ``None`` if incomplete."""
    words = re.findall(r"[a-z]+", text.lower())
    found: dict[str, str] = {}
    for word in words:
        for attribute, values in PICTURE_ATTRIBUTES.items():
            if word in values and attribute not in found:
                found[attribute] = word
    return Picture(**found) if len(found) == 4 else None


def parse_sound(text: str) -> Sound | None:
    """Read a sound description (``"two sine beeps at mi"``) back; ``None`` if incomplete."""
    words = re.findall(r"[a-z]+", text.lower())
    counts = {w: n for n, w in BEEP_WORDS.items()}
    beeps = next((counts[w] for w in words if w in counts), None)
    timbre = next((w for w in words if w in SOUND_ATTRIBUTES["timbre"]), None)
    after_at = words[words.index("at") + 1 :] if "at" in words else []
    note = next((w for w in after_at if w in SOUND_ATTRIBUTES["note"]), None)
    if beeps is None or timbre is None or note is None:
        return None
    return Sound(note, timbre, beeps)


def parse_clip(text: str) -> Clip | None:
    """Read a clip description (``"a large red circle moving to the right"``, ``"a red circle growing"``) back;
    ``None`` if incomplete."""
    words = re.findall(r"[a-z]+", text.lower())
    shape = next((w for w in words if w in CLIP_ATTRIBUTES["shape"]), None)
    colour = next((w for w in words if w in CLIP_ATTRIBUTES["colour"]), None)
    if shape is None or colour is None:
        return None
    if "growing" in words:
        return Clip(shape, colour, "small", "growing")
    if "shrinking" in words:
        return Clip(shape, colour, "large", "shrinking")
    size = next((w for w in words if w in CLIP_ATTRIBUTES["size"]), None)
    after_to = words[words.index("to") + 1 :] if "to" in words else []
    way = next((w for w in after_to if w in ("left", "right")), None)
    if size is None or way is None or "moving" not in words:
        return None
    return Clip(shape, colour, size, "rightward" if way == "right" else "leftward")


def read_answer(answer: Message, expected: list[Item]) -> list[Item | None]:
    """What the answer holds for each expected item: probed media, or parsed text."""
    images, audios, videos = list(answer.images), list(answer.audios), list(answer.videos)
    found: list[Item | None] = []
    for item in expected:
        if isinstance(item, Clip):
            found.append(probe_clip(videos.pop(0).to_frames()) if videos else parse_clip(answer.text))
        elif isinstance(item, Picture):
            found.append(probe_picture(images.pop(0).to_pil()) if images else parse_picture(answer.text))
        else:
            found.append(probe_sound(audios.pop(0).to_numpy()) if audios else parse_sound(answer.text))
    return found


def score_answer(case: Case, answer: Message) -> tuple[bool, dict[str, bool]]:
    """(all attributes of every expected item right, per-attribute rightness) for one answer."""
    found = read_answer(answer, case.expected)
    attributes: dict[str, bool] = {}
    for item, got in zip(case.expected, found, strict=True):
        prefix = "video" if isinstance(item, Clip) else "picture" if isinstance(item, Picture) else "sound"
        for name in item_attributes(item):
            attributes[f"{prefix}.{name}"] = got is not None and getattr(got, name) == getattr(item, name)
    return all(attributes.values()), attributes


def vocabulary() -> list[str]:
    """Every word the task grammar can produce (the codi2-mini tokenizer's vocabulary)."""
    texts = [
        "draw play and its sound what is this do you hear does it sound look like here the picture",
        "make it turn into a move to center on in one step right change note as beep beeps at",
        ". , : ?",
    ]
    texts += [" ".join(map(str, values)) for values in PICTURE_ATTRIBUTES.values()]
    texts += [" ".join(map(str, values)) for values in SOUND_ATTRIBUTES.values()]
    texts += list(BEEP_WORDS.values())
    texts.append("show what happens moving growing shrinking grow shrink")
    texts.append("object")
    return sorted({w for t in texts for w in re.findall(r"[a-z]+|[.,:?]", t)})
