"""The shipped codi2-mini model: it loads by name, is what Conversation() runs, fits the size budget,
and still scores what docs/mini.md reports (thresholds a little below the measured figures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from codi2_sdk import Conversation, Image
from codi2_sdk.mini.evaluate import evaluate
from codi2_sdk.mini.probes import probe_picture
from codi2_sdk.mini.tasks import TaskSampler
from codi2_sdk.mini.world import Picture, render_picture

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "codi2_sdk" / "weights" / "codi2-mini"

# task -> (accuracy floor, held-out accuracy floor) on the CI evaluation below: every row of `codi2 eval`, each
# 0.1 below this evaluation's own figures (10 cases, seed 1, at CI's 2 threads; written beside each floor), 0.2 for
# the video, own-output and subject rows, whose cases vary most. docs/mini.md has the 50-case table.
THRESHOLDS = {
    "audio_to_image": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "audio_to_text": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "describe_generated_audio": (0.80, 0.80),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "describe_generated_image": (0.80, 0.80),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "image_to_audio": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "image_to_text": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "image_to_video": (0.80, 0.80),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "in_context_audio_edit_1shot": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "in_context_audio_edit_2shot": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "in_context_audio_edit_3shot": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "in_context_image_edit_1shot": (0.90, 0.80),  # measured 1.00/0.90 here (10 cases, seed 1, 2 threads)
    "in_context_image_edit_2shot": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "in_context_image_edit_3shot": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "in_context_video_edit_1shot": (0.80, 0.80),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "in_context_video_edit_2shot": (0.80, 0.80),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "in_context_video_edit_3shot": (0.80, 0.80),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "instructed_audio_edit": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "instructed_image_edit": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "interleaved_answer": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "multi_round_edit": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "subject_driven_image": (0.80, 0.70),  # measured 1.00/0.90 here (10 cases, seed 1, 2 threads)
    "text_to_audio": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "text_to_image": (0.90, 0.90),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
    "text_to_video": (0.80, 0.70),  # measured 1.00/0.90 here (10 cases, seed 1, 2 threads)
    "video_to_text": (0.80, 0.80),  # measured 1.00/1.00 here (10 cases, seed 1, 2 threads)
}

# subject-driven generation: each measure of the answers at least this share of an exact render's (DINO- and
# CLIP-I-style similarity to the references, CLIP-T-style to the asked picture), on trained and on held-out subjects;
# 0.1 below the lowest of four figures: trained and held-out subjects in this evaluation (0.99, 0.93, 0.92; 0.70, 0.84,
# 0.92) and in a 20-case run of other cases (seed 2, before ``llm-video-edits``: 0.98, 0.91, 0.93; 0.81, 0.95, 0.93)
SUBJECT_SHARES = {"dino": 0.59, "clip_i": 0.74, "clip_t": 0.81}


@pytest.fixture(scope="module")
def mini():
    from codi2_sdk.backends.local import LocalBackend

    return LocalBackend.from_pretrained("codi2-mini")


def test_weights_fit_the_budget() -> None:
    weights = [p for p in WEIGHTS.rglob("*") if p.suffix in (".safetensors", ".bin")]
    assert weights and sum(p.stat().st_size for p in weights) <= 80 * 1024 * 1024


def test_conversation_uses_codi2_mini_by_default() -> None:
    conv = Conversation()
    query = Image.from_pil(render_picture(Picture("square", "green", "large", "left")))
    answer = conv.send(query, "what is this?", config={"seed": 0})
    assert conv.backend.capabilities.model == "codi2-mini"
    assert answer.text.strip().rstrip(".") == "a large green square on the left"


@pytest.fixture(scope="module")
def small_evaluation(mini) -> dict:
    tasks = sorted({name.split("_1shot")[0].split("_2shot")[0].split("_3shot")[0] for name in THRESHOLDS})
    return evaluate(mini, cases=10, tasks=tasks, shots=(1, 2, 3), seed=1, progress=False)


def test_small_evaluation_meets_the_thresholds(small_evaluation) -> None:
    result = small_evaluation
    assert set(result["tasks"]) == set(THRESHOLDS)
    for name, (floor, heldout_floor) in THRESHOLDS.items():
        row = result["tasks"][name]
        assert row["accuracy"] >= floor, (name, row)
        assert row["heldout_items_accuracy"] >= heldout_floor, (name, row)
        assert row["accuracy"] > row["baseline"]
        if name.startswith(("instructed_audio_edit", "in_context_audio_edit")):
            # the paper's audio measures: the edit lands nearer the target than the unchanged query does
            audio = row["audio_metrics"]
            assert audio["kl"] < audio["kl_copy_query"] and audio["fd"] < audio["fd_copy_query"], (name, audio)
            assert audio["lsd_render_floor"] < audio["lsd"], (name, audio)  # two renders of one sound agree more
        if name == "subject_driven_image":
            # DreamBench's measures on the mini world, against what an exact render of the asked picture scores
            for split in ("subject_metrics", "heldout_subject_metrics"):
                m = row[split]
                for measure, share in SUBJECT_SHARES.items():
                    assert m[measure] >= share * m[f"{measure}_render_floor"], (split, measure, m)


def test_a_row_run_alone_scores_the_cases_of_the_full_run(mini, small_evaluation) -> None:
    # the audio measures are means over the row's cases: other cases or seeds would move them
    alone = evaluate(mini, cases=10, tasks=["instructed_audio_edit"], seed=1, progress=False)
    row, full = alone["tasks"]["instructed_audio_edit"], small_evaluation["tasks"]["instructed_audio_edit"]
    assert row["attribute_accuracy"] == full["attribute_accuracy"]
    assert row["audio_metrics"] == pytest.approx(full["audio_metrics"], rel=1e-4)


def test_in_context_edit_beats_copying_the_query(mini) -> None:
    from codi2_sdk.mini.tasks import score_answer

    sampler = TaskSampler(__import__("numpy").random.default_rng(3))
    case = sampler.sample("in_context_image_edit", shots=2)
    conv = Conversation(backend=mini)
    for example in case.examples:
        conv.add_example(inputs=example.inputs, outputs=example.outputs)
    answer = conv.send(*case.messages[0].parts, config={"seed": 0})
    assert probe_picture(answer.images[0].to_pil()) != case.query
    assert score_answer(case, answer)[0]


@pytest.mark.parametrize(
    "script",
    [
        "few_shot_image_edit.py",
        "few_shot_audio_edit.py",
        "few_shot_video_edit.py",
        "multi_round.py",
        "agent_tools.py",
        "subject_driven.py",
    ],
)
def test_examples_run_offline_and_write_their_outputs(script: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = list((tmp_path / "out").rglob("*.*"))
    assert any(p.suffix in (".png", ".wav", ".mp4") for p in outputs)


@pytest.mark.parametrize(
    ("script", "flags", "says"),
    [
        (  # an edit of another attribute, shown by the user's own pairs
            "few_shot_image_edit.py",
            [
                *("--example", "a large red square on the left", "a small red square on the left"),
                *("--example", "a large yellow circle on the right", "a small yellow circle on the right"),
            ],
            "answer: a small green triangle in the center (right; expected a small green triangle in the center)",
        ),
        (
            "few_shot_audio_edit.py",
            ["--shots", "1", "--query", "three square beeps at sol"],
            "answer: three sawtooth beeps at sol (right;",
        ),
        ("subject_driven.py", ["--mark", "spot", "--size", "large", "--position", "left"], "subject kept: yes"),
    ],
)
def test_examples_take_their_settings_as_flags(script: str, flags: list[str], says: str, tmp_path: Path) -> None:
    run = [sys.executable, str(ROOT / "examples" / script), *flags, "--out", "mine", "--seed", "0"]
    done = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert says in done.stdout, done.stdout
    assert any(p.suffix in (".png", ".wav") for p in (tmp_path / "mine").iterdir())
    refused = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--query" if "edit" in script else "--reference", "a blob"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "error: cannot" in refused.stderr  # argparse's refusal, before any model loads


def test_an_example_runs_against_a_server(mini, tmp_path: Path) -> None:
    from server_fixtures import running_server

    with running_server(mini, api_key="sesame") as url:
        run = [sys.executable, str(ROOT / "examples" / "few_shot_video_edit.py"), "--url", url, "--api-key", "sesame"]
        done = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        wrong_key = subprocess.run([*run[:-1], "open sesame"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "answer: a small green triangle moving to the left (right;" in done.stdout
    assert (tmp_path / "out" / "few_shot_video_edit" / "answer.mp4").is_file()
    gone = subprocess.run(run, capture_output=True, text=True, timeout=600)  # the server has stopped
    for refused, says in ((wrong_key, "401"), (gone, "Connection refused")):  # each in one line, no traceback
        assert refused.returncode == 1 and refused.stderr.startswith("few_shot_video_edit.py: error: ")
        assert says in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.parametrize("modality", ["text", "image", "audio"])
def test_output_modality_is_kept_over_many_seeds(mini, modality: str) -> None:
    """``"text"`` means no medium in the answer, ever; ``"image"``/``"audio"`` at least one of that kind,
    whatever the turn asks and however freely the model samples."""
    rng = np.random.default_rng(0)
    picture = Image.from_pil(render_picture(Picture("circle", "red", "small", "left"), rng))
    turns = [
        (picture, "what is this?"),
        ("draw a large blue square on the right.",),
        (picture, "what does it sound like?"),
    ]
    for seed in range(6):
        for turn in turns:
            config = {"seed": seed, "output_modality": modality, "text": {"temperature": 1.2, "max_new_tokens": 12}}
            answer = Conversation(backend=mini).send(*turn, config=config)
            kinds = [p.type for p in answer.parts]
            if modality == "text":
                assert not set(kinds) - {"text"}, (seed, turn[-1], kinds)
            else:
                assert modality in kinds, (seed, turn[-1], kinds)


def test_loading_the_model_prints_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from codi2_sdk import Conversation; Conversation().backend"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (done.stdout, done.stderr) == ("", "")


def test_words_outside_the_vocabulary_are_refused_with_the_nearest_known_words(mini) -> None:
    from codi2_sdk import InvalidRequestError

    conv = Conversation(backend=mini)
    with pytest.raises(InvalidRequestError) as refused:
        conv.send(Image.from_pil(render_picture(Picture("circle", "red", "small", "left"))), "descirbe this please?")
    said = str(refused.value)
    assert "'descirbe' (nearest: " in said and "'please'" in said and "'this'" not in said
    assert '"what is this?"' in said and "capabilities.vocabulary" in said
    assert conv.messages == []  # nothing was added to the conversation
    caps = mini.capabilities
    assert caps.vocabulary is not None and {"what", "circle", "beeps", "?"} <= set(caps.vocabulary)
    assert "what is this?" in caps.prompt_examples
    with pytest.raises(InvalidRequestError, match=r"'purple' \(nearest: .*"):
        conv.send("draw a small purple circle on the left.")
    hostile = "x" * 100_000 + " " + " ".join(f"w{i}" for i in range(5_000))  # refused in a few lines, not 100 kB
    with pytest.raises(InvalidRequestError) as refused:
        conv.send(hostile)
    said = str(refused.value)
    assert "'xxxxxxxx" in said and "(100,000 characters)" in said and "and 4,993 more" in said
    assert len(said) < 2_000
    answer = conv.send(Image.from_pil(render_picture(Picture("circle", "red", "small", "left"))), "what is this?")
    assert answer.text.startswith("a small red circle")


def test_best_of_n_keeps_the_sample_nearest_the_written_feature(mini) -> None:
    """``candidates`` draws that many samples from the seed and keeps the one the model's own encoder reads
    nearest the LLM's feature; codi2-mini draws 4 clips by default, 1 picture and 1 sound."""
    defaults = mini.capabilities.defaults
    assert (defaults.image.candidates, defaults.audio.candidates, defaults.video.candidates) == (1, 1, 4)
    conv = Conversation(backend=mini)
    asked = Picture("square", "blue", "large", "right")
    for candidates in (1, 3):
        answer = conv.send(
            "draw a large blue square on the right.", config={"seed": 5, "image": {"candidates": candidates}}
        )
        drawn = answer.images[0]
        assert drawn.provenance.candidates == candidates
        assert probe_picture(drawn.to_pil()) == asked

    model = mini.model
    rng = np.random.default_rng(1)
    samples = [Image.from_pil(render_picture(p, rng)) for p in (asked, Picture("circle", "red", "small", "left"))]
    for i, sample in enumerate(samples):
        assert model.nearest_sample("image", model.encode("image", [sample])[0, 0], samples) == i


def test_best_of_n_needs_an_encoder_to_rank_with() -> None:
    from model_fixtures import tiny_model

    from codi2_sdk import InvalidRequestError
    from codi2_sdk.backends.local import LocalBackend

    model = tiny_model()
    del model.encoders["audio"]
    conv = Conversation(backend=LocalBackend(model))
    with pytest.raises(InvalidRequestError, match=r"audio\.candidates=2 needs an encoder for audio"):
        conv.send("make a sound", config={"audio": {"candidates": 2}})
    assert conv.messages == []


def test_the_mini_decoders_sample_with_dpm_solver_when_asked() -> None:
    from codi2_sdk import Conversation

    talk = {"seed": 0, "output_modality": "image"}
    default = Conversation(config=talk).send("draw a large red circle on the left.")
    fast = Conversation(config={**talk, "image": {"scheduler": "dpm_solver", "steps": 12}}).send(
        "draw a large red circle on the left."
    )
    assert fast.images[0].provenance.scheduler == "dpm_solver" and fast.images[0].provenance.steps == 12
    assert fast.images[0].data != default.images[0].data


def test_a_users_photo_is_read_as_it_is_shown(mini, tmp_path: Path) -> None:
    """A phone stores a portrait photo sideways with an EXIF orientation tag, and a logo's background is often
    transparent: the model reads both as a viewer shows them (upright; transparency over a white page)."""
    import PIL.Image

    shown = render_picture(Picture("circle", "red", "small", "left"))
    sideways = shown.transpose(PIL.Image.Transpose.ROTATE_90)  # what the camera wrote ...
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # ... and its tag: "turn 90 degrees clockwise to show"
    sideways.save(tmp_path / "portrait.jpg", quality=95, exif=exif)
    pixels = np.asarray(shown.convert("RGBA")).copy()
    pixels[(pixels[..., :3] == 255).all(axis=-1)] = 0  # the white page made transparent black
    PIL.Image.fromarray(pixels).save(tmp_path / "logo.png")

    for name in ("portrait.jpg", "logo.png"):
        photo = Image.open(tmp_path / name)
        assert (photo.width, photo.height) == shown.size and photo.to_pil().size == shown.size
        answer = Conversation(backend=mini).send(photo, "what is this?")
        assert answer.text.startswith("a small red circle on the left"), (name, answer.text)
