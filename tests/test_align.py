"""Aligning a full-scale-class model (tiny twin): the manifest, the decoder stage (caption MSE, optional diffusion
loss), the LLM stage (the paper's loss, modality phases), and both under a real 2-process ``accelerate launch``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from codi2_sdk import InvalidMediaError, InvalidRequestError, Video
from codi2_sdk.model import CoDi2Model
from codi2_sdk.testing import fake_audio
from codi2_sdk.testing.twins import full_scale_twin
from codi2_sdk.train.align import PAPER_LOSS, align_decoders, align_llm, load_manifest


def write_manifest(root: Path) -> Path:
    """Captioned clips and videos, and conversations with pictures, as files beside a JSONL manifest."""
    rng = np.random.default_rng(0)
    lines = []
    for i, caption in enumerate(["a low beep", "a high beep", "two beeps"]):
        fake_audio(seconds=0.5, frequency=300.0 * (i + 1)).save(root / f"clip{i}.wav")
        lines.append({"caption": caption, "audio": f"clip{i}.wav"})
        frames = rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
        Video.from_frames(frames, fps=4).save(root / f"video{i}.mp4")
        lines.append({"caption": f"a {caption} moving", "video": f"video{i}.mp4"})
    for i, colour in enumerate(["red", "blue"]):
        PIL.Image.new("RGB", (32, 32), colour).save(root / f"{colour}.png")
        lines.append(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "show a circle"}]},
                    {"role": "assistant", "content": [{"type": "image", "path": f"{colour}.png"}]},
                ]
            }
        )
        lines.append(
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "path": f"{colour}.png"},
                            {"type": "text", "text": "what is this?"},
                        ],
                    },
                    {
                        "role": "assistant",
                        "content": [{"type": "text", "text": "a red circle ." if i == 0 else "a circle ."}],
                    },
                ],
                "examples": [
                    {"inputs": [{"type": "text", "text": "show"}], "outputs": [{"type": "image", "path": "red.png"}]}
                ],
            }
        )
    manifest = root / "train.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return manifest


def test_manifest_reads_captions_and_conversations_and_names_bad_lines(tmp_path: Path) -> None:
    manifest = load_manifest(write_manifest(tmp_path))
    assert sorted({c.modality for c in manifest.captions}) == ["audio", "video"] and len(manifest.captions) == 6
    assert len(manifest.conversations) == 4 and manifest.conversations[1].examples
    assert manifest.conversations[0].answer.parts[0].type == "image"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"caption": "x", "audio": "clip0.wav"}\n{"messages": [{"role": "user"}]}\n')
    with pytest.raises(InvalidRequestError, match=r"bad\.jsonl, line 2"):
        load_manifest(bad)


def test_a_manifest_opens_its_media_only_when_a_batch_draws_them(tmp_path: Path) -> None:
    """Each line is checked when the manifest is read, but its media are opened only when training draws the record:
    every process of a run holds a few bytes a record, not the data set's pictures (millions of them, in the
    recipe), and several manifests read as one, each with its media beside it."""
    import tracemalloc

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    manifest = load_manifest([write_manifest(tmp_path / "a"), write_manifest(tmp_path / "b")])
    assert (len(manifest.captions), len(manifest.conversations)) == (12, 8)
    (tmp_path / "b" / "clip0.wav").unlink()  # gone after reading: missed only when drawn, by its file and line
    assert manifest.captions[0].caption == "a low beep" and manifest.captions[-1].modality == "video"
    with pytest.raises(InvalidMediaError, match=r"train\.jsonl, line 1: .*clip0\.wav"):
        manifest.captions[6]
    assert [c.modality for c in manifest.captions[:2]] == ["audio", "video"]

    noise = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    PIL.Image.fromarray(noise).save(tmp_path / "noise.png")  # about 200 kB that do not compress
    ask = {"role": "user", "content": [{"type": "text", "text": "draw"}]}
    answer = {"role": "assistant", "content": [{"type": "image", "path": "noise.png"}]}
    (tmp_path / "big.jsonl").write_text((json.dumps({"messages": [ask, answer]}) + "\n") * 500)  # 100 MB of pictures
    tracemalloc.start()
    big = load_manifest(tmp_path / "big.jsonl")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(big.conversations) == 500 and peak < 2_000_000, peak
    assert big.conversations[499].answer.images[0].data == (tmp_path / "noise.png").read_bytes()


def test_the_command_refuses_missing_or_unfit_manifests_in_one_line_before_loading_a_model(tmp_path: Path, capsys):
    from codi2_sdk.train.align import main

    common = ["--model", str(tmp_path / "not-loaded"), "--out", str(tmp_path / "out")]
    captions = tmp_path / "captions.jsonl"
    captions.write_text('{"caption": "a beep", "audio": "beep.wav"}\n')
    chats = tmp_path / "chats.jsonl"
    chats.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                    {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
                ]
            }
        )
    )
    for manifests, stage, said in (
        ([tmp_path / "nowhere.jsonl"], "llm", "no manifest at"),
        ([captions], "llm", r"hold no conversations for the llm stage \(captioned media: 1, conversations: 0\)"),
        ([captions, "--eval-manifest", chats], "decoders", "--eval-manifest: the manifests hold no captioned media"),
        ([captions, "--eval-manifest", tmp_path / "held.jsonl"], "decoders", "no manifest at .*held.jsonl"),
        ([captions, "--eval-every", "0"], "decoders", "--eval-every: 0 is out of range: it must be at least 1"),
        ([captions, "--keep-best", tmp_path / "best"], "decoders", "--keep-best needs --eval-manifest"),
        ([captions, "--eval-manifest", captions, "--keep-best", tmp_path / "out"], "decoders", "a folder of its own"),
        ([captions, "--eval-manifest", captions, "--keep-best", tmp_path], "decoders", "holds no kept model"),
    ):
        with pytest.raises(SystemExit) as stopped:
            main([*common, "--stage", stage, "--manifest", *map(str, manifests)])
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert re.search(said, err) and "Traceback" not in err


def test_decoder_stage_lowers_the_caption_loss_and_trains_only_projectors(tmp_path: Path) -> None:
    model = full_scale_twin(seed=0)
    data = load_manifest(write_manifest(tmp_path)).captions
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    logs = align_decoders(model, data, steps=30, batch_size=3, lr=3e-3, progress=False, log_every=1)
    first = [e.terms["alignment_loss"] for e in logs[:2]]
    last = [e.terms["alignment_loss"] for e in logs[-2:]]
    assert sum(last) < 0.5 * sum(first)  # one audio and one video step in each pair
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and all(".to_prompt." in n or ".to_generated." in n for n in moved)
    assert any(n.startswith("decoders.audio.") for n in moved) and any(n.startswith("decoders.video.") for n in moved)

    with_diffusion = align_decoders(
        model, data, steps=2, batch_size=2, diffusion_weight=1.0, progress=False, log_every=1
    )
    assert all(np.isfinite(e.terms["diffusion_loss"]) for e in with_diffusion)


def test_llm_stage_uses_the_papers_loss_and_lowers_it(tmp_path: Path) -> None:
    model = full_scale_twin(seed=0)
    data = load_manifest(write_manifest(tmp_path)).conversations
    logs = align_llm(model, data, steps=40, batch_size=2, lr=1e-2, progress=False, log_every=1)
    assert model.config.loss == PAPER_LOSS and model.has_lora and model.config.lora.r == 128  # type: ignore[union-attr]
    assert np.mean([e.loss for e in logs[-4:]]) < 0.5 * np.mean([e.loss for e in logs[:4]])
    trained = {n for n, p in model.llm.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trained) and any("trainable_tokens" in n for n in trained)


ROOT = Path(__file__).resolve().parents[1]
# accelerate's multi-process launcher is torchrun; ACCELERATE_USE_CPU puts the processes on CPUs (gloo).
CPU_LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1"]
CPU_LAUNCH += ["--mixed_precision", "no", "--dynamo_backend", "no"]


def run_both_stages(tmp_path: Path, launch: list[str], checkpoints: Path | None = None) -> tuple[Path, list[dict]]:
    """The decoder stage, then the LLM stage on its result, each as two CPU processes; returns the final folder and
    the logged steps."""
    model_dir = full_scale_twin(seed=0).save_pretrained(tmp_path / "twin")
    (tmp_path / "more").mkdir()
    manifests = [str(write_manifest(tmp_path)), str(write_manifest(tmp_path / "more"))]  # read as one
    held_out = held_out_manifest(tmp_path / "train.jsonl")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    for stage in ("decoders", "llm"):
        out = tmp_path / f"aligned-{stage}"
        command = [*launch, "--model", str(model_dir), "--manifest", *manifests, "--stage", stage, "--steps", "2"]
        command += ["--batch-size", "1", "--gradient-accumulation-steps", "2"]  # processes synchronise at the 2nd
        command += ["--out", str(out), "--log", str(tmp_path / "log.jsonl"), "--eval-manifest", str(held_out)]
        command += ["--checkpoint-dir", str(checkpoints / stage)] if checkpoints is not None else []
        command += ["--keep-best", str(tmp_path / "best")] if stage == "llm" else []
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        model_dir = out
    return model_dir, [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]


def held_out_manifest(manifest: Path) -> Path:
    """Some of ``manifest``'s lines: 3 clips, 2 videos and 3 conversations, so that two processes share them unevenly."""
    lines = manifest.read_text().splitlines()
    held_out = manifest.with_name("held_out.jsonl")
    held_out.write_text("\n".join(lines[i] for i in (0, 1, 2, 3, 4, 6, 7, 8)) + "\n")
    return held_out


def assert_held_out_logged(records: list[dict], model_dir: Path, held_out: Path) -> None:
    """Each stage logged its held-out losses after its last step only (per medium for the decoders), and the LLM
    stage's is the held-out conversations' mean loss for the saved model, as one process reckons it."""
    assert [sorted(r["held_out"]) for r in records] == [
        [],
        ["alignment_loss", "loss", "loss_audio", "loss_video"],
        [],
        ["feature_loss", "loss", "text_loss"],
    ]
    aligned = CoDi2Model.from_pretrained(model_dir)
    with torch.no_grad():
        losses = [float(aligned([conversation]).loss) for conversation in load_manifest(held_out).conversations]
    assert len(losses) == 3 and records[-1]["held_out"]["loss"] == pytest.approx(np.mean(losses), rel=1e-4)
    # --keep-best kept the model of its one evaluation: the final one
    kept = json.loads((model_dir.parent / "best" / "held_out.json").read_text())
    assert kept == {"step": 2, "held_out": records[-1]["held_out"]}
    best = CoDi2Model.from_pretrained(model_dir.parent / "best")
    assert torch.equal(best.out_head["image"][0].weight, aligned.out_head["image"][0].weight)


def assert_aligned(model_dir: Path, tmp_path: Path) -> None:
    """The saved model loads, and both stages moved what they train (and nothing frozen)."""
    aligned = CoDi2Model.from_pretrained(model_dir)
    original = CoDi2Model.from_pretrained(tmp_path / "twin")
    assert not torch.equal(
        aligned.decoders["audio"].to_prompt.out.weight, original.decoders["audio"].to_prompt.out.weight
    )
    assert not torch.equal(aligned.out_head["image"][0].weight, original.out_head["image"][0].weight)
    assert torch.equal(aligned.decoders["audio"].unet.conv_in.weight, original.decoders["audio"].unet.conv_in.weight)
    assert aligned.has_lora and aligned.config.loss == PAPER_LOSS


def test_accelerate_launch_runs_both_stages_data_parallel_on_two_cpu_processes(tmp_path: Path) -> None:
    config = ["--config_file", str(ROOT / "examples" / "accelerate" / "ddp.yaml")]
    model_dir, records = run_both_stages(tmp_path, [*CPU_LAUNCH, *config, "-m", "codi2_sdk.train.align"])
    assert [(r["stage"], r["step"]) for r in records] == [("decoders", 1), ("decoders", 2), ("llm", 1), ("llm", 2)]
    assert {(r["processes"], r["distributed"]) for r in records} == {(2, "MULTI_CPU")}
    assert_aligned(model_dir, tmp_path)
    assert_held_out_logged(records, model_dir, tmp_path / "held_out.jsonl")


def test_both_stages_shard_with_fsdp2_on_two_cpu_processes_save_whole_and_resume(tmp_path: Path) -> None:
    """FSDP2 through accelerate (``tests/fsdp_on_cpu.py`` lifts accelerate's GPU-only gate for FSDP; the rest is
    accelerate's own FSDP2 path): parameters sharded as DTensors, the model gathered whole to save, and a run given
    the same checkpoint folder resumes from its last step."""
    launch = [*CPU_LAUNCH, "--multi_gpu", str(ROOT / "tests" / "fsdp_on_cpu.py")]
    model_dir, records = run_both_stages(tmp_path, launch, checkpoints=tmp_path / "runs")
    assert {(r["processes"], r["distributed"]) for r in records} == {(2, "FSDP")}
    assert_aligned(model_dir, tmp_path)
    assert_held_out_logged(records, model_dir, tmp_path / "held_out.jsonl")
    assert list((tmp_path / "runs" / "llm" / "state.accelerate").glob("pytorch_model_fsdp_0/*.distcp"))

    more = [*launch, "--model", str(tmp_path / "aligned-decoders"), "--manifest", str(tmp_path / "train.jsonl")]
    more += ["--stage", "llm", "--steps", "3", "--batch-size", "2", "--out", str(tmp_path / "resumed")]
    more += ["--checkpoint-dir", str(tmp_path / "runs" / "llm"), "--log", str(tmp_path / "resumed.jsonl")]
    more += ["--eval-manifest", str(tmp_path / "held_out.jsonl"), "--keep-best", str(tmp_path / "best")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true"}
    done = subprocess.run(more, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = [json.loads(line) for line in (tmp_path / "resumed.jsonl").read_text().splitlines()]
    assert [r["step"] for r in resumed] == [3]  # steps 1 and 2 came from the checkpoint
    # the model kept at step 2 is replaced only if step 3's held-out loss is lower
    losses = {2: records[-1]["held_out"]["loss"], 3: resumed[-1]["held_out"]["loss"]}
    kept = json.loads((tmp_path / "best" / "held_out.json").read_text())
    assert kept["step"] == min(losses, key=losses.__getitem__) and kept["held_out"]["loss"] == min(losses.values())
    assert "holds a model of held-out loss" in done.stderr and not list(tmp_path.glob("best.*"))


def test_keep_best_keeps_the_step_of_lowest_held_out_loss_and_mends_an_interrupted_save(tmp_path: Path) -> None:
    """One process, no launcher: evaluated after each of 4 steps, the model kept is the one of the lowest held-out
    loss logged; what a save that stopped halfway left (``DIR.partial``, ``DIR.old``) is cleared, not kept."""
    model_dir = full_scale_twin(seed=0).save_pretrained(tmp_path / "twin")
    manifest = write_manifest(tmp_path)
    for leftover in ("best.partial", "best.old"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "half-written.safetensors").write_bytes(b"\0" * 10)
    command = [sys.executable, "-m", "codi2_sdk.train.align", "--model", str(model_dir), "--stage", "llm"]
    command += ["--manifest", str(manifest), "--eval-manifest", str(held_out_manifest(manifest)), "--eval-every", "1"]
    command += ["--steps", "4", "--batch-size", "2", "--lr", "5e-3", "--out", str(tmp_path / "out")]
    command += ["--keep-best", str(tmp_path / "best"), "--log", str(tmp_path / "log.jsonl")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    losses = {
        r["step"]: r["held_out"]["loss"] for r in map(json.loads, (tmp_path / "log.jsonl").read_text().splitlines())
    }
    assert sorted(losses) == [1, 2, 3, 4]
    kept = json.loads((tmp_path / "best" / "held_out.json").read_text())
    assert kept["step"] == min(losses, key=losses.__getitem__) and kept["held_out"]["loss"] == min(losses.values())
    assert sorted(p.name for p in tmp_path.glob("best*")) == ["best"]
    assert CoDi2Model.from_pretrained(tmp_path / "best").has_lora

    (tmp_path / "best" / "held_out.json").write_text("{not json")
    command[command.index("--out") + 1] = str(tmp_path / "out2")
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "held_out.json is not one a training run wrote" in refused.stderr


def test_the_shipped_accelerate_configs_load_as_accelerate_configs() -> None:
    """DeepSpeed's CPU accelerator needs Intel's extension for PyTorch, which these machines lack: its configs are
    checked as configs here, and run on GPUs."""
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {}
    for path in sorted((ROOT / "examples" / "accelerate").glob("*.yaml")):
        config = load_config_from_file(str(path))
        kinds[path.stem] = str(config.distributed_type.value)
    assert kinds == {
        "ddp": "MULTI_GPU",
        "deepspeed_zero2": "DEEPSPEED",
        "deepspeed_zero3": "DEEPSPEED",
        "fsdp": "FSDP",
    }
    fsdp = load_config_from_file(str(ROOT / "examples" / "accelerate" / "fsdp.yaml"))
    assert fsdp.fsdp_config["fsdp_version"] == 2 and fsdp.mixed_precision == "bf16"
    zero3 = load_config_from_file(str(ROOT / "examples" / "accelerate" / "deepspeed_zero3.yaml"))
    assert zero3.deepspeed_config["zero_stage"] == 3 and zero3.deepspeed_config["zero3_save_16bit_model"]
