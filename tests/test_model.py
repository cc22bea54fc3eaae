"""The CoDi-2 network with tiny random components: shapes, feedback, loss, checkpoints, LocalBackend."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from codi2_sdk import (
    Audio,
    Conversation,
    Done,
    GenerationRequest,
    Image,
    InvalidRequestError,
    MediaDone,
    ModelError,
    ModelNotFoundError,
    Progress,
    TextDelta,
    assistant,
    user,
)
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model import CoDi2Config, CoDi2Model, TrainingExample
from codi2_sdk.model.generation import prefill
from codi2_sdk.model.imagebind.image import CLIPImageEncoder, ImageBindImageEncoder
from codi2_sdk.model.media_io import LogMel, griffin_lim, image_to_tensor

IMAGE_TURN = {"seed": 3, "output_modality": "image", "text": {"max_new_tokens": 6}}


def test_encoders_give_pooled_token_first(tiny_model: CoDi2Model, image: Image, audio: Audio) -> None:
    image_features = tiny_model.encode("image", [image, image])
    assert image_features.shape == (2, 5, 32)  # 1 pooled + 2x2 grid tokens, width 32
    assert tiny_model.encode("audio", [audio]).shape == (1, 5, 32)


def test_clip_encoder_returns_all_tokens_through_the_projection(image: Image) -> None:
    encoder = CLIPImageEncoder.from_config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=24,
    ).eval()
    with torch.no_grad():
        tokens = encoder(encoder.preprocess([image]))
        reference = encoder.model(pixel_values=encoder.preprocess([image])).image_embeds
    assert tokens.shape == (1, 17, 24) and encoder.tokens_per_item == 17
    assert torch.allclose(tokens[:, 0], reference, atol=1e-5)  # token 0 is CLIP's own image embedding


def test_imagebind_encoder_crops_instead_of_stretching_and_gives_unit_pooled_features() -> None:
    encoder = ImageBindImageEncoder.from_config(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        projection_dim=24,
    ).eval()
    wide = PIL.Image.new("RGB", (96, 48), "blue")
    wide.paste(PIL.Image.new("RGB", (64, 48), "red"), (16, 0))  # red in the middle, blue at both ends
    square = Image.from_pil(PIL.Image.new("RGB", (32, 32), "red"))
    assert torch.allclose(encoder.preprocess([Image.from_pil(wide)]), encoder.preprocess([square]), atol=1e-5)
    with torch.no_grad():
        tokens = encoder(encoder.preprocess([square, Image.from_pil(wide.rotate(90, expand=True))]))
        raw = CLIPImageEncoder.forward(encoder, encoder.preprocess([square]))
    assert tokens.shape == (2, 17, 24)
    assert torch.allclose(tokens[:, 0].norm(dim=-1), torch.ones(2), atol=1e-5)  # ImageBind's unit embedding
    assert torch.allclose(tokens[0], raw[0] / raw[0, 0].norm(), atol=1e-5)  # every token on the pooled one's scale


def test_prompt_places_media_in_slots_between_tags(tiny_model: CoDi2Model, image: Image) -> None:
    builder = tiny_model.prompts
    prompt = builder.build([], [user("draw <image> it", image)])
    tokens = tiny_model.tokenizer.convert_ids_to_tokens(prompt.ids)
    assert tokens[:2] == ["<s>", "<|user|>"]
    assert tokens.count("<image>") == 1  # typed tag stays text: no injection
    slot = prompt.media[0]
    assert tokens[slot.position - 1] == "<image>" and tokens[slot.position + slot.count] == "</image>"
    assert slot.count == 5 and tokens[-2:] == ["<|end|>", "<|assistant|>"]
    answer = builder.build([], [user("draw")], answer=assistant(image))
    assert answer.media[0].count == 1 and answer.media[0].target


def test_batch_embedding_pads_and_keeps_features(tiny_model: CoDi2Model, image: Image) -> None:
    short = tiny_model.prompts.build([], [user("a", image)])
    long = tiny_model.prompts.build([], [user("draw a red circle and a blue square", image)])
    batch = tiny_model.embed([short, long], padding_side="left")
    assert batch.embeds.shape[:2] == (2, len(long))
    assert batch.attention_mask[0].sum() == len(short)
    alone = tiny_model.embed([short]).embeds[0]
    assert torch.allclose(batch.embeds[0, len(long) - len(short) :], alone, atol=1e-6)


def test_fed_back_feature_changes_the_following_logits(tiny_model: CoDi2Model) -> None:
    request = GenerationRequest(messages=[user("draw a red circle")])
    outcomes = []
    for scale in (1.0, -1.0):
        state = prefill(tiny_model, request)
        state.feed_token(tiny_model.prompts.start_ids["image"], keep_hidden=True)
        feature = tiny_model.restore_scale("image", tiny_model.predict_feature("image", state.hidden)) * scale
        state.feed_one(tiny_model.feature_to_input("image", feature)[None, None])
        state.feed_token(tiny_model.prompts.close_ids["image"])
        outcomes.append(state.logits)
    assert not torch.allclose(outcomes[0], outcomes[1])


def test_training_steps_lower_the_loss(image: Image, audio: Audio) -> None:
    from model_fixtures import tiny_model

    model = tiny_model(seed=1).train()
    batch = [
        TrainingExample(messages=[user("draw a red square")], answer=assistant("here is it", image)),
        TrainingExample(messages=[user("make it sound", image)], answer=assistant(audio, "beep")),
    ]
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=3e-3)
    first = model(batch)
    assert first.feature_loss > 0 and first.text_loss > 0
    for _ in range(25):
        optimizer.zero_grad()
        out = model(batch)
        out.loss.backward()
        optimizer.step()
    assert out.loss.item() < 0.5 * first.loss.item()
    assert all(not p.requires_grad for p in model.encoders.parameters())


def test_lora_trains_only_the_adapter_and_round_trips(tmp_path: Path) -> None:
    from model_fixtures import tiny_model

    model = tiny_model(seed=2)
    model.add_lora()
    names = [n for n, p in model.llm.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    for name, param in model.llm.named_parameters():  # make the adapter do something
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    path = model.save_pretrained(tmp_path / "lora")
    assert (path / "adapter" / "adapter_config.json").exists()
    # every file of the checkpoint, weights included, is as readable as its config (safetensors 0.8 alone leaves
    # its files 0o600, so another user or a container's user could not serve the model)
    modes = {f.relative_to(path).as_posix(): f.stat().st_mode & 0o777 for f in path.rglob("*") if f.is_file()}
    assert {"projectors.safetensors", "adapter/adapter_model.safetensors"} <= set(modes)
    assert set(modes.values()) == {modes["codi2.json"]}, modes
    request = GenerationRequest(messages=[user("draw")], config=IMAGE_TURN)
    original = LocalBackend(model).generate(request)
    reloaded = LocalBackend.from_pretrained(path).generate(request)
    assert original == reloaded


def test_save_and_load_give_identical_outputs(tiny_model: CoDi2Model, tiny_checkpoint: Path, image: Image) -> None:
    request = GenerationRequest(messages=[user("draw a red circle", image)], config=IMAGE_TURN)
    before = LocalBackend(tiny_model).generate(request)
    after = LocalBackend.from_pretrained(tiny_checkpoint).generate(request)
    assert before.images and before.images[0].data == after.images[0].data
    assert before == after


def test_conversation_gets_image_and_audio_parts(tiny_model: CoDi2Model) -> None:
    conv = Conversation(backend=LocalBackend(tiny_model))
    picture = conv.send("draw a red circle", config=IMAGE_TURN)
    assert isinstance(picture.parts[0], Image)
    assert picture.images[0].provenance is not None and picture.images[0].provenance.seed == 3
    sound = conv.send("make it sound", config={"seed": 3, "output_modality": "audio", "text": {"max_new_tokens": 4}})
    assert isinstance(sound.parts[0], Audio) and sound.audios[0].sample_rate == 8000
    assert len(conv.history) == 4


def test_same_seed_same_bytes_other_seed_other_bytes(tiny_model: CoDi2Model) -> None:
    backend = LocalBackend(tiny_model)
    make = lambda seed: backend.generate(  # noqa: E731
        GenerationRequest(messages=[user("draw")], config={**IMAGE_TURN, "seed": seed})
    )
    assert make(5).images[0].data == make(5).images[0].data
    assert make(5).images[0].data != make(6).images[0].data


def test_sampling_is_seeded(tiny_model: CoDi2Model) -> None:
    backend = LocalBackend(tiny_model)
    config = {"seed": 11, "text": {"temperature": 1.5, "top_p": 0.9, "max_new_tokens": 12}, "output_modality": "text"}
    request = GenerationRequest(messages=[user("describe the sound")], config=config)
    assert backend.generate(request) == backend.generate(request)


def test_stream_reports_text_progress_and_media_in_order(tiny_model: CoDi2Model) -> None:
    backend = LocalBackend(tiny_model)
    request = GenerationRequest(messages=[user("draw")], config=IMAGE_TURN)
    events = list(backend.stream(request))
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.step for p in progress] == [1, 2, 3, 4] and progress[0].total == 4
    media = [e for e in events if isinstance(e, MediaDone)]
    assert events.index(media[0]) > events.index(progress[-1])
    assert isinstance(events[-1], Done) and events[-1].message == backend.generate(request)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text.replace(" ", "") == events[-1].message.text.replace(" ", "")


def test_closing_a_stream_releases_the_model(tiny_model: CoDi2Model) -> None:
    backend = LocalBackend(tiny_model)
    request = GenerationRequest(messages=[user("draw")], config={**IMAGE_TURN, "image": {"steps": 50}})
    stream = backend.stream(request)
    for event in stream:
        if isinstance(event, Progress) and event.step == 2:
            break
    stream.close()
    assert not backend._lock.locked()
    assert backend.generate(GenerationRequest(messages=[user("draw")], config=IMAGE_TURN)).images


async def test_async_generation_runs_off_the_loop(tiny_model: CoDi2Model) -> None:
    backend = LocalBackend(tiny_model)
    request = GenerationRequest(messages=[user("draw")], config=IMAGE_TURN)
    assert await backend.agenerate(request) == backend.generate(request)
    events = [e async for e in backend.astream(request)]
    assert isinstance(events[-1], Done)


def test_capabilities_and_bad_requests(tiny_model: CoDi2Model) -> None:
    backend = LocalBackend(tiny_model)
    caps = backend.capabilities
    assert caps.input_modalities == ["text", "audio", "image"] and caps.defaults.image.steps == 4
    long_text = " ".join(["red"] * 600)
    with pytest.raises(InvalidRequestError, match="attends to at most"):
        backend.generate(GenerationRequest(messages=[user(long_text)]))


def test_missing_or_corrupt_checkpoint_parts_are_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="no checkpoint folder"):
        CoDi2Model.from_pretrained(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    shutil.rmtree(broken / "decoders" / "audio")
    with pytest.raises(ModelNotFoundError, match="'decoders/audio'"):
        CoDi2Model.from_pretrained(broken)
    shutil.copytree(tiny_checkpoint / "decoders" / "audio", broken / "decoders" / "audio")
    (broken / "projectors.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match=r"'projectors\.safetensors'"):
        CoDi2Model.from_pretrained(broken)
    (broken / "codi2.json").write_text("{")
    with pytest.raises(ModelError, match=r"'codi2\.json'"):
        CoDi2Model.from_pretrained(broken)


def test_mismatched_projectors_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    other = CoDi2Model.from_config(CoDi2Config.tiny().model_copy(update={"projector_hidden": 16}), words=["x"])
    other_path = other.save_pretrained(tmp_path / "other")
    mixed = tmp_path / "mixed"
    shutil.copytree(tiny_checkpoint, mixed)
    shutil.copy(other_path / "projectors.safetensors", mixed / "projectors.safetensors")
    with pytest.raises(ModelError, match="does not fit"):
        CoDi2Model.from_pretrained(mixed)


def test_griffin_lim_recovers_a_tone() -> None:
    logmel = LogMel(sample_rate=16000, n_fft=1024, hop_length=256, n_mels=64, frames=64)
    t = torch.arange(logmel.num_samples) / 16000
    wave = 0.5 * torch.sin(2 * torch.pi * 440 * t)[None]
    rebuilt = griffin_lim(logmel(wave), logmel, iterations=30, generator=torch.Generator().manual_seed(0))
    spectrum = torch.fft.rfft(rebuilt[0]).abs()
    peak_hz = spectrum.argmax().item() * 16000 / rebuilt.shape[-1]
    assert abs(peak_hz - 440) < 20


def test_whitened_regression_space_round_trips(tmp_path: Path, image: Image) -> None:
    from model_fixtures import tiny_model

    from codi2_sdk.model import FeatureWhitening

    features = torch.randn(200, 8) * torch.tensor([5.0, 1, 1, 1, 1, 1, 1, 0.05])
    whitening = FeatureWhitening.fit(features, eps=1e-6)
    whitened = whitening.whiten(features)
    assert torch.allclose(whitened.std(0), torch.ones(8), atol=0.05)  # every direction weighs alike
    assert torch.allclose(whitening.unwhiten(whitened), features, atol=1e-3)
    damped = FeatureWhitening.fit(features, eps=0.02).whiten(features).std(0)
    assert damped[-1] < 0.5 < damped[1]  # directions far below eps x the largest variance stay small

    model = tiny_model(seed=5)
    noise = torch.Generator().manual_seed(0)
    renders = [
        Image.from_pil(
            PIL.Image.fromarray(torch.randint(0, 256, (32, 32, 3), generator=noise, dtype=torch.uint8).numpy())
        )
        for _ in range(60)
    ]
    model.fit_whitening("image", renders)
    with pytest.raises(ValueError, match="do not vary"):
        model.fit_whitening("image", [image] * 5)
    unit = model.regression_target("image", model.encode("image", [image])[0, 0])
    assert torch.allclose(unit.norm(), torch.tensor(1.0))
    request = GenerationRequest(messages=[user("draw")], config=IMAGE_TURN)
    before = LocalBackend(model).generate(request)
    loaded = LocalBackend.from_pretrained(model.save_pretrained(tmp_path / "white"))
    for name in ("mean", "matrix", "inverse", "norm"):
        assert torch.equal(getattr(loaded.model.whitening["image"], name), getattr(model.whitening["image"], name))
    after = loaded.generate(request)
    # An in-memory model and its reloaded copy can differ by float32 rounding (1e-8 in the features), which
    # the diffusion can amplify into other pixels; two loads of one checkpoint give the same bytes.
    assert [p.type for p in after.parts] == [p.type for p in before.parts]
    again = LocalBackend.from_pretrained(tmp_path / "white").generate(request)
    assert again == after


def test_decoder_diffusion_loss_trains_the_unet(tiny_model: CoDi2Model, image: Image) -> None:
    from codi2_sdk.model.parts import build_kind

    spec = tiny_model.config.decoders["image"]
    decoder = build_kind("decoder", spec.kind, spec.args)
    with torch.no_grad():
        latents = decoder.encode_latents(image_to_tensor([image] * 4, 32))
    cond = torch.randn(4, decoder.cond_dim)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([100, 300, 600, 900])
    optimizer = torch.optim.AdamW(decoder.unet.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(decoder.diffusion_loss(latents, cond, noise, t))
    for _ in range(15):
        optimizer.zero_grad()
        decoder.diffusion_loss(latents, cond, noise, t).backward()
        optimizer.step()
    with torch.no_grad():
        assert float(decoder.diffusion_loss(latents, cond, noise, t)) < 0.8 * first


def test_resampling_removes_what_the_new_rate_cannot_hold() -> None:
    from codi2_sdk.testing import fake_audio

    high = fake_audio(seconds=1.0, frequency=12_000.0, sample_rate=44_100)  # above 8 kHz: no place at 16 kHz
    low = fake_audio(seconds=1.0, frequency=3_000.0, sample_rate=44_100)
    from codi2_sdk.model.media_io import audio_to_tensor

    waves = audio_to_tensor([high, low], 16_000, 16_000).numpy()
    assert np.abs(waves[0][500:-500]).max() < 0.01  # filtered out (past the onset), not folded to a 4 kHz alias
    spectrum = np.abs(np.fft.rfft(waves[1]))
    assert abs(int(spectrum.argmax()) - 3_000) <= 1 and np.abs(waves[1]).max() > 0.45  # the 3 kHz tone kept


def test_a_texture_branch_joins_a_trained_image_encoder_without_changing_its_features(tmp_path: Path) -> None:
    from codi2_sdk.model.mini.encoders import CNNImageEncoder
    from codi2_sdk.model.parts import load_kind

    torch.manual_seed(0)
    plain = CNNImageEncoder(image_size=32, width=16, channels=(8, 16), grid=2)
    detailed = CNNImageEncoder(image_size=32, width=16, channels=(8, 16), grid=2, detail_channels=4)
    detailed.load_state_dict(plain.state_dict(), strict=False)
    pixels = torch.rand(3, 3, 32, 32) * 2 - 1
    assert torch.equal(detailed(pixels), plain(pixels))  # the branch starts at zero
    torch.nn.init.normal_(detailed.detail_proj[-1].weight)
    changed = detailed(pixels)
    assert not torch.equal(changed[:, 0], plain(pixels)[:, 0]) and torch.equal(changed[:, 1:], plain(pixels)[:, 1:])
    detailed.save_pretrained(tmp_path / "image")
    assert torch.equal(load_kind("encoder", "cnn_image", tmp_path / "image")(pixels), changed)


def test_an_installed_package_adds_a_decoder_kind_by_entry_point(tmp_path) -> None:
    """A new kind is one registration: a package that declares it under the ``codi2_sdk.decoders`` entry-point group
    makes checkpoints naming it load, in a process that never imports the package itself."""
    import json
    import os
    import subprocess
    import sys
    import textwrap

    from model_fixtures import tiny_model

    site = tmp_path / "site"  # an installed distribution, as pip leaves it: its module and its dist-info
    (site / "codi2_sepia-0.1.dist-info").mkdir(parents=True)
    (site / "codi2_sepia-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: codi2-sepia\nVersion: 0.1\n"
    )
    (site / "codi2_sepia-0.1.dist-info" / "entry_points.txt").write_text(
        "[codi2_sdk.decoders]\nsepia_image = codi2_sepia:SepiaImageDecoder\n"
    )
    (site / "codi2_sepia.py").write_text(
        textwrap.dedent(
            '''
            from codi2_sdk.model.mini.decoders import ImageDecoder

            class SepiaImageDecoder(ImageDecoder):
                """A plugin's decoder kind (here the mini latent decoder under a name of its own)."""

                kind = "sepia_image"
            '''
        )
    )
    folder = tiny_model(seed=1).save_pretrained(tmp_path / "checkpoint")
    config = json.loads((folder / "codi2.json").read_text())
    config["decoders"]["image"]["kind"] = "sepia_image"
    (folder / "codi2.json").write_text(json.dumps(config))
    script = (
        "import sys\n"
        "from codi2_sdk import Conversation, LocalBackend\n"
        "backend = LocalBackend.from_pretrained(sys.argv[1])\n"
        "answer = Conversation(backend).send('draw', config={'seed': 0, 'output_modality': 'image', "
        "'text': {'max_new_tokens': 3}, 'image': {'steps': 2}})\n"
        "print(type(backend.model.decoders['image']).__module__, 'codi2_sepia' in sys.modules, answer.images[0].width)\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    run = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    module, imported, width = run.stdout.split()
    assert module == "codi2_sepia" and imported == "True" and int(width) > 0
    bare = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=300)
    assert bare.returncode == 1 and "unknown decoder kind 'sepia_image'" in bare.stderr  # without the package
    assert "entry-point group 'codi2_sdk.decoders'" in bare.stderr
