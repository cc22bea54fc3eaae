"""The SD-2.1-unCLIP image decoder (the paper's), with a tiny pipeline built in code from the real classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codi2_sdk.model.registry import load_kind
from codi2_sdk.model.unclip import UnCLIPImageDecoder


def tiny_unclip_pipeline():
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPImageProcessorPil, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    embed = 32
    vision = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            image_size=32,
            patch_size=8,
            projection_dim=embed,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=8,
        cross_attention_dim=24,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=2 * embed,  # image embedding + noise-level embedding
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=4,
        layers_per_block=1,
    )
    pipeline = StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        image_encoder=vision,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=embed),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=None,
        text_encoder=None,
        unet=unet,
        scheduler=DDIMScheduler(
            beta_schedule="scaled_linear", prediction_type="v_prediction", timestep_spacing="trailing"
        ),
        vae=vae,
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


@pytest.fixture(scope="module")
def decoder() -> UnCLIPImageDecoder:
    return UnCLIPImageDecoder(tiny_unclip_pipeline(), prompt_embeds=torch.randn(1, 4, 24))


def test_unclip_decodes_image_embeds_with_progress(decoder: UnCLIPImageDecoder) -> None:
    cond = torch.randn(1, decoder.cond_dim)
    run = decoder.iter_sample(cond, steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    steps = []
    while True:
        try:
            steps.append(next(run))
        except StopIteration as done:
            outputs = done.value
            break
    assert steps == [1, 2, 3] and outputs.shape == (1, 3, 16, 16) and outputs.min() >= -1
    image = decoder.to_media(outputs)[0]
    assert (image.width, image.height) == (16, 16)
    again = decoder.sample(cond, steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(outputs, again)


def test_unclip_decode_can_be_cancelled(decoder: UnCLIPImageDecoder) -> None:
    run = decoder.iter_sample(torch.randn(1, decoder.cond_dim), steps=50, guidance_scale=1.0)
    assert next(run) == 1
    run.close()  # stops the pipeline thread at its next step


def test_unclip_folder_round_trip(decoder: UnCLIPImageDecoder, tmp_path: Path) -> None:
    decoder.save_pretrained(tmp_path / "unclip")
    assert (tmp_path / "unclip" / "model_index.json").exists()
    loaded = load_kind("decoder", "unclip_image", tmp_path / "unclip")
    cond = torch.randn(1, decoder.cond_dim)
    a = decoder.sample(cond, steps=2, guidance_scale=1.0, generator=torch.Generator().manual_seed(1))
    b = loaded.sample(cond, steps=2, guidance_scale=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(a, b, atol=1e-5)
