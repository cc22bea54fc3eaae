"""The shape of codi2-mini: a CoDi2Config at small scale, the same architecture as the full model."""

from __future__ import annotations

from typing import Any

from ..config import AudioConfig, GenerationConfig, ImageConfig, TextConfig
from ..model.config import CoDi2Config, DecoderSpec, EncoderSpec, LoraSpec
from .world import IMAGE_SIZE, SAMPLE_RATE

__all__ = ["MEL", "mini_config"]

WIDTH = 128
"""Width of the aligned feature space (encoders' output, decoders' conditioning)."""

MEL: dict[str, Any] = {
    "sample_rate": SAMPLE_RATE,
    "n_fft": 1024,
    "hop_length": 256,
    "n_mels": 64,
    "frames": 64,
    "f_max": 4000.0,
}
"""The log-mel front-end shared by the audio encoder and decoder: 64 x 64 for about one second."""


def _latent_decoder(in_channels: int, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "cond_dim": WIDTH,
        "vae": {
            "in_channels": in_channels,
            "out_channels": in_channels,
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
            "block_out_channels": [16, 32, 64, 64],
            "latent_channels": 16,
            "layers_per_block": 1,
            "norm_num_groups": 8,
            "mid_block_add_attention": False,
            "sample_size": IMAGE_SIZE,
        },
        "unet": {
            "sample_size": 8,
            "in_channels": 16,
            "out_channels": 16,
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "block_out_channels": [64, 128],
            "layers_per_block": 1,
            "norm_num_groups": 16,
            "attention_head_dim": 32,
            "cross_attention_dim": WIDTH,
            "class_embed_type": "projection",
            "projection_class_embeddings_input_dim": WIDTH,
        },
        "scheduler": {
            "num_train_timesteps": 1000,
            "beta_schedule": "squaredcos_cap_v2",
            "prediction_type": "v_prediction",
            "timestep_spacing": "trailing",
            "clip_sample": False,
            "set_alpha_to_one": False,
        },
        **extra,
    }


def mini_config() -> CoDi2Config:
    """codi2-mini's configuration (before training fills in the feature norms)."""
    return CoDi2Config(
        name="codi2-mini",
        llm={
            "hidden_size": 256,
            "intermediate_size": 512,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "max_position_embeddings": 512,
        },
        encoders={
            "image": EncoderSpec(
                kind="cnn_image", args={"image_size": IMAGE_SIZE, "width": WIDTH, "channels": [32, 64, 128], "grid": 2}
            ),
            "audio": EncoderSpec(kind="cnn_audio", args={**MEL, "width": WIDTH, "channels": [32, 64, 128], "grid": 2}),
        },
        decoders={
            "image": DecoderSpec(kind="latent_image", args=_latent_decoder(3, {})),
            "audio": DecoderSpec(kind="latent_audio", args=_latent_decoder(1, {**MEL, "griffin_lim_iters": 32})),
        },
        lora=None,
        defaults=GenerationConfig(
            text=TextConfig(max_new_tokens=64),
            image=ImageConfig(steps=25, guidance_scale=3.0),
            audio=AudioConfig(steps=25, guidance_scale=3.0),
        ),
    )


LORA = LoraSpec(r=8, alpha=16, dropout=0.0)
"""The adapter the LoRA stage trains."""
