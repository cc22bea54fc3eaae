"""The codi2-mini world: renders, probes, tasks, held-out items."""

from __future__ import annotations

import numpy as np
import pytest

from codi2_sdk import assistant
from codi2_sdk.mini.probes import probe_picture, probe_sound
from codi2_sdk.mini.tasks import (
    HELDOUT_PICTURES,
    HELDOUT_SOUNDS,
    HELDOUT_SUBJECTS,
    LORA_TASK,
    SUBJECT_TASK,
    TASKS,
    TaskSampler,
    edit_shown,
    is_heldout,
    parse_picture,
    parse_sound,
    score_answer,
    vocabulary,
)
from codi2_sdk.mini.world import (
    MARKS,
    PICTURE_ATTRIBUTES,
    POSITIONS,
    SIZES,
    SOUND_ATTRIBUTES,
    Picture,
    Sound,
    all_pictures,
    all_sounds,
    all_subjects,
    picture_to_sound,
    render_picture,
    render_sound,
    sound_to_picture,
)


def test_world_sizes() -> None:
    assert len(all_pictures()) == 144 and len(all_sounds()) == 72
    assert len(PICTURE_ATTRIBUTES["shape"]) >= 4 and len(PICTURE_ATTRIBUTES["colour"]) >= 6
    assert len(SOUND_ATTRIBUTES["note"]) >= 8 and len(SOUND_ATTRIBUTES["timbre"]) == 3


def test_renders_are_jittered() -> None:
    rng = np.random.default_rng(0)
    p = Picture("circle", "red", "large", "left")
    assert not np.array_equal(np.asarray(render_picture(p, rng)), np.asarray(render_picture(p, rng)))
    s = Sound("mi", "sine", 2)
    assert not np.array_equal(render_sound(s, rng), render_sound(s, rng))


def test_a_render_can_be_painted_off_palette() -> None:
    # training's off-palette subjects: the same outline and mark, in a colour that is none of the world's six
    picture = Picture("square", "red", "large", "center", "hstripes")
    painted = np.asarray(render_picture(picture, np.random.default_rng(0), rgb=(90, 160, 40))).astype(int)
    named = np.asarray(render_picture(picture, np.random.default_rng(0))).astype(int)
    assert np.array_equal(painted.min(axis=-1) < 250, named.min(axis=-1) < 250)  # the same pixels are drawn
    centre = painted[32, 30]
    assert max(abs(centre - np.array([90, 160, 40]))) <= 10 or max(abs(centre - np.array([36, 64, 16]))) <= 6
    read = probe_picture(render_picture(picture, np.random.default_rng(0), rgb=(90, 160, 40)))
    assert read is not None and read.shape == "square" and read.size == "large"


def test_picture_probe_reads_clean_renders() -> None:
    rng = np.random.default_rng(1)
    items = all_pictures() * 3
    right = sum(probe_picture(render_picture(p, rng)) == p for p in items)
    assert right / len(items) >= 0.99


def test_sound_probe_reads_clean_renders() -> None:
    rng = np.random.default_rng(2)
    items = all_sounds() * 3
    right = sum(probe_sound(render_sound(s, rng)) == s for s in items)
    assert right / len(items) >= 0.99


def test_probes_say_none_for_empty_media() -> None:
    assert probe_picture(np.full((64, 64, 3), 255, dtype=np.uint8)) is None
    assert probe_sound(np.zeros(16000)) is None


def test_mapping_between_pictures_and_sounds() -> None:
    p = Picture("triangle", "green", "small", "right")
    assert picture_to_sound(p) == Sound("mi", "sawtooth", 3)
    assert sound_to_picture(Sound("mi", "sawtooth", 3)) == Picture("triangle", "green", "large", "right")
    assert sound_to_picture(Sound("si", "sine", 1)) is None


def test_descriptions_parse_back() -> None:
    for p in all_pictures():
        assert parse_picture(p.describe()) == p
    for s in all_sounds():
        assert parse_sound(s.describe()) == s


def test_heldout_items_never_appear_in_training_cases() -> None:
    assert len(HELDOUT_PICTURES) == 14 and len(HELDOUT_SOUNDS) == 7
    sampler = TaskSampler(np.random.default_rng(3))
    for task in (*TASKS, LORA_TASK):
        for _ in range(15):
            case = sampler.sample(task)
            items = [case.query, *case.expected]
            assert not any(is_heldout(i) for i in items if i is not None), task


@pytest.mark.parametrize("task", [*TASKS, LORA_TASK])
def test_right_answers_score_right_and_wrong_ones_do_not(task: str) -> None:
    sampler = TaskSampler(np.random.default_rng(4))
    heldout = TaskSampler(np.random.default_rng(5), heldout=True)
    for case in (sampler.sample(task), heldout.sample(task)):
        assert score_answer(case, case.answer)[0]
        assert not score_answer(case, assistant("I do not know."))[0]
    assert heldout.sample(task).heldout


def test_in_context_examples_show_the_change() -> None:
    sampler = TaskSampler(np.random.default_rng(6))
    for shots in (1, 2, 3):
        case = sampler.sample("in_context_image_edit", shots=shots)
        assert case.name == f"in_context_image_edit_{shots}shot" and len(case.examples) == shots
        for example in case.examples:
            before = probe_picture(example.inputs[0].to_pil())
            after = probe_picture(example.outputs[0].to_pil())
            assert before != after


def test_edit_shown_is_what_the_sampled_cases_ask_for() -> None:
    from codi2_sdk import Image, Video
    from codi2_sdk.mini.clips import probe_clip

    def read(medium):  # the item a rendered medium shows
        if isinstance(medium, Image):
            return probe_picture(medium.to_pil())
        return probe_clip(medium.to_frames()) if isinstance(medium, Video) else probe_sound(medium.to_numpy())

    sampler = TaskSampler(np.random.default_rng(7))
    for task in ("in_context_image_edit", "in_context_audio_edit", "in_context_video_edit"):
        for _ in range(10):
            case = sampler.sample(task, shots=2)
            shown = edit_shown([(read(e.inputs[0]), read(e.outputs[0])) for e in case.examples], case.query)
            # a reversed motion differs by pair (rightward -> leftward, growing -> shrinking): no one change
            assert shown == case.expected[0] or (shown is None and case.query.motion != case.expected[0].motion)


def test_edit_shown_needs_one_change_shown_by_every_pair() -> None:
    red, blue = Picture("square", "red", "large", "left"), Picture("square", "blue", "large", "left")
    query = Picture("circle", "green", "small", "right")
    assert edit_shown([(red, blue)], query) == Picture("circle", "blue", "small", "right")
    moved = Picture("square", "red", "large", "right")
    assert edit_shown([(red, blue), (red, moved)], query) is None  # two different edits
    assert edit_shown([(red, red)], query) is None  # no edit
    assert edit_shown([], query) is None
    assert edit_shown([(red, blue)], Sound("do", "sine", 1)) is None  # another kind of item


def test_vocabulary_covers_every_case() -> None:
    words = set(vocabulary())
    sampler = TaskSampler(np.random.default_rng(7))
    import re

    for task in (*TASKS, LORA_TASK):
        case = sampler.sample(task)
        for message in [*case.messages, case.answer]:
            assert set(re.findall(r"[a-z]+|[.,:?]", message.text)) <= words


def test_clips_are_read_back_exactly_from_renders_and_from_mp4() -> None:
    from codi2_sdk import Video
    from codi2_sdk.mini.clips import CLIP_FPS, all_clips, probe_clip, render_clip

    clips = all_clips()
    assert len(clips) == len(set(clips)) == 144
    rng = np.random.default_rng(0)
    renders = [(clip, render_clip(clip, rng)) for clip in clips for _ in range(3)]
    assert all(frames.shape == (8, 64, 64, 3) for _, frames in renders)
    assert sum(probe_clip(frames) == clip for clip, frames in renders) / len(renders) >= 0.99
    for clip, frames in renders[::9]:  # through H.264 and back
        assert probe_clip(Video.from_frames(frames, fps=CLIP_FPS).to_frames()) == clip
    assert clips[0].describe() == "a small red circle moving to the right"
    assert probe_clip(np.full((8, 64, 64, 3), 255, dtype=np.uint8)) is None  # nothing there


def test_subjects_carry_their_mark_and_the_probe_still_reads_them() -> None:
    subjects = all_subjects()
    assert len(subjects) == len(set(subjects)) == 144
    rng = np.random.default_rng(8)
    pictures = [s.at(size, where) for s in subjects for size in SIZES for where in POSITIONS]
    right = sum(probe_picture(render_picture(p, rng)) == p.with_("mark", "") for p in pictures)
    assert right / len(pictures) >= 0.99
    # a mark changes the object's pixels, and each mark its own way
    looks = {
        m: np.asarray(render_picture(Picture("square", "blue", "large", "center", m), np.random.default_rng(0)))
        for m in ("", *MARKS)
    }
    for a in looks:
        for b in looks:
            assert a == b or np.abs(looks[a].astype(int) - looks[b]).sum() > 10_000, (a, b)
    assert Picture("square", "blue", "large", "center", "ring").describe() == "a large blue square in the center"


def test_subject_cases_ask_for_a_new_layout_of_the_shown_subject() -> None:
    assert len(HELDOUT_SUBJECTS) == 14
    assert {s.mark for s in all_subjects() if s not in HELDOUT_SUBJECTS} == set(MARKS)
    sampler = TaskSampler(np.random.default_rng(9))
    for _ in range(20):
        case = sampler.sample(SUBJECT_TASK)
        references = case.messages[0].images
        target = case.expected[0]
        assert 1 <= len(references) <= 3 and "this object" in case.messages[0].text
        assert target.mark and target.subject not in HELDOUT_SUBJECTS
        shown = [probe_picture(r.to_pil()) for r in references]
        assert all((p.shape, p.colour) == (target.shape, target.colour) for p in shown)
        assert all((p.size, p.position) != (target.size, target.position) for p in shown)
    held = TaskSampler(np.random.default_rng(10), heldout=True).sample(SUBJECT_TASK)
    assert held.heldout and held.expected[0].subject in HELDOUT_SUBJECTS
