"""The full-scale path as a GPU user runs it: in bfloat16 (CPUs run bf16 too), every pipeline component moving with
the model, both alignment stages, ``variant="fp16"`` folders, and the decoders run as CoDi-2's released code runs
them (each choice's source is cited in the code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from codi2_sdk import Audio, Conversation, Image, Video
from codi2_sdk.backends.local import LocalBackend
from codi2_sdk.model import assemble
from codi2_sdk.model.fullscale.pipelines import fit_tokens
from codi2_sdk.model.fullscale.unclip import (
    REFERENCE_NEGATIVE_PROMPT,
    REFERENCE_NOISE_LEVEL,
    UnCLIPImageDecoder,
    norm_pictures,
)
from codi2_sdk.testing.twins import (
    full_scale_twin,
    tiny_audioldm2_decoder,
    tiny_audioldm2_pipeline,
    tiny_unclip_pipeline,
    tiny_zeroscope_decoder,
    tiny_zeroscope_pipeline,
)

WRITES = {"image": Image, "audio": Audio, "video": Video}


@pytest.fixture(scope="module")
def bf16_twin():
    return full_scale_twin(seed=0).to(torch.bfloat16)


def test_every_pipeline_component_moves_and_casts_with_the_model(bf16_twin) -> None:
    for modality, decoder in bf16_twin.decoders.items():
        for name, component in decoder.pipeline.components.items():
            if isinstance(component, torch.nn.Module):
                dtypes = {p.dtype for p in component.parameters()} | {
                    b.dtype for b in component.buffers() if b.is_floating_point()
                }
                assert dtypes <= {torch.bfloat16}, (modality, name, dtypes)
    assert bf16_twin.decoders["audio"].pipeline.text_encoder_2.dtype == torch.bfloat16  # T5, used to align


def test_the_twin_in_bf16_reads_and_writes_every_medium_through_a_conversation(bf16_twin) -> None:
    backend = LocalBackend(bf16_twin)
    for modality, kind in WRITES.items():
        config = {"seed": 1, "output_modality": modality, "text": {"max_new_tokens": 3}}
        answer = Conversation(backend=backend).send("show a red circle.", config=config)
        assert isinstance(answer.parts[0], kind), (modality, answer.parts)
    frames = np.zeros((4, 32, 32, 3), np.uint8)
    frames[:, 8:24, 8:24] = 200
    media = [
        Image.from_pil(PIL.Image.fromarray(frames[0])),
        Audio.from_array(0.3 * np.sin(np.arange(24_000) / 5), sample_rate=16_000),
        Video.from_frames(frames, fps=4),
    ]
    answer = Conversation(backend=backend).send(
        *media, "what is this?", config={"seed": 0, "text": {"max_new_tokens": 3}}
    )
    assert answer.role == "assistant"


def test_both_alignment_stages_run_in_bf16(bf16_twin, tmp_path: Path) -> None:
    from test_align import write_manifest

    from codi2_sdk.train.align import align_decoders, align_llm, load_manifest

    model = full_scale_twin(seed=0).to(torch.bfloat16)
    manifest = load_manifest(write_manifest(tmp_path))
    decoders = align_decoders(
        model, manifest.captions, steps=4, batch_size=2, diffusion_weight=1.0, progress=False, log_every=1
    )
    llm = align_llm(model, manifest.conversations, steps=4, batch_size=2, progress=False, log_every=1)
    assert all(np.isfinite(e.loss) for e in decoders + llm)
    assert all(np.isfinite(e.terms["diffusion_loss"]) for e in decoders)


@pytest.fixture(scope="module")
def fp16_folders(tmp_path_factory) -> dict[str, Path]:
    """The public folders as published with ``fp16`` variant files only (``*.fp16.safetensors``)."""
    from test_assembly import llama_folder

    root = tmp_path_factory.mktemp("fp16")
    tiny_unclip_pipeline().save_pretrained(str(root / "unclip"), variant="fp16")
    tiny_audioldm2_pipeline().save_pretrained(str(root / "audioldm2"), variant="fp16")
    tiny_zeroscope_pipeline().save_pretrained(str(root / "zeroscope"), variant="fp16")
    assert not list((root / "unclip" / "unet").glob("diffusion_pytorch_model.safetensors"))
    return {"llm": llama_folder(root / "llama"), **{n: root / n for n in ("unclip", "audioldm2", "zeroscope")}}


def test_assemble_reads_fp16_variant_folders_into_bf16(fp16_folders) -> None:
    model = assemble(**fp16_folders, feature_dim=32, variant="fp16", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    backend = LocalBackend(model)
    for modality, kind in WRITES.items():
        config = {"seed": 0, "output_modality": modality, "text": {"max_new_tokens": 2}, modality: {"steps": 2}}
        if modality != "image":
            config[modality] |= {"duration": 0.064} if modality == "audio" else {"num_frames": 2, "size": 16}
        answer = Conversation(backend=backend).send("show a red circle .", config=config)
        assert isinstance(answer.parts[0], kind)


def test_the_decoders_default_to_the_references_choices(fp16_folders) -> None:
    unclip = UnCLIPImageDecoder(tiny_unclip_pipeline())
    reference, _ = unclip.pipeline.encode_prompt(REFERENCE_NEGATIVE_PROMPT, "cpu", 1, False)
    assert torch.equal(unclip.prompt_embeds, reference)  # CoDi-2's negative prompt, on both sides of guidance
    own = UnCLIPImageDecoder(tiny_unclip_pipeline(), prompt="")
    assert torch.equal(own.prompt_embeds, own.pipeline.encode_prompt("", "cpu", 1, False)[0])

    audio = tiny_audioldm2_decoder(cond_dim=32)
    empty, mask, generated = audio.pipeline.encode_prompt([""], "cpu", 1, False)
    assert torch.equal(audio.negative_prompt_embeds, fit_tokens(empty, 5))
    assert audio.negative_prompt_mask[0].tolist() == fit_tokens(mask[..., None].float(), 5)[0, :, 0].tolist()
    assert audio.negative_prompt_mask.sum() >= 1 and torch.equal(audio.negative_generated_embeds, generated)
    video = tiny_zeroscope_decoder(cond_dim=32)
    assert torch.equal(
        video.negative_prompt_embeds, fit_tokens(video.pipeline.encode_prompt([""], "cpu", 1, False)[0], 6)
    )

    model = assemble(llm=fp16_folders["llm"], unclip=fp16_folders["unclip"], variant="fp16", lora=None)
    assert model.config.defaults.image.noise_level == REFERENCE_NOISE_LEVEL == 500
    pipeline = model.decoders["image"].pipeline
    pixels = pipeline.feature_extractor(images=norm_pictures(), return_tensors="pt").pixel_values
    measured = float(pipeline.image_encoder(pixels).image_embeds.norm(dim=-1).mean())
    assert model.config.feature_norms["image"] == pytest.approx(measured, rel=1e-5)
    plain = assemble(
        llm=fp16_folders["llm"], unclip=fp16_folders["unclip"], variant="fp16", lora=None, reference_decoding=False
    )
    assert plain.config.defaults.image.noise_level == 0
    assert torch.equal(plain.decoders["image"].prompt_embeds, pipeline.encode_prompt("", "cpu", 1, False)[0])
