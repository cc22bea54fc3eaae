"""CoDi2Config: what a CoDi-2 checkpoint is made of, serialised as ``codi2.json``.

The config names each component's sub-folder (or, for the LLM, a hub id already in the local cache)
and keeps the construction arguments of every component, so :meth:`CoDi2Model.from_config
<codi2_sdk.model.modeling.CoDi2Model.from_config>` can build a random-initialised model of the same
shape (how tests and training start).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..config import AudioConfig, GenerationConfig, ImageConfig
from ..content import MediaModality

__all__ = [
    "CoDi2Config",
    "DIFFUSION_SCHEDULE",
    "DecoderSpec",
    "EncoderSpec",
    "LoraSpec",
    "LossWeights",
    "latent_decoder_args",
]


FORMAT_VERSION: Literal[1] = 1


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class EncoderSpec(_Spec):
    """One input encoder: its kind and the keyword arguments that build it."""

    kind: str
    """A registered encoder kind (:data:`~codi2_sdk.model.parts.ENCODER_KINDS`), e.g. ``"cnn_image"``."""
    args: dict[str, Any] = {}


class DecoderSpec(_Spec):
    """One diffusion decoder: its kind and the arguments of its parts (diffusers configs)."""

    kind: str
    """A registered decoder kind (:data:`~codi2_sdk.model.parts.DECODER_KINDS`), e.g. ``"latent_image"``."""
    args: dict[str, Any] = {}


class LoraSpec(_Spec):
    """A peft LoRA on the LLM's attention projections."""

    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    trainable_tokens: list[int] = []
    """Rows of the input embeddings trained beside the adapter (the media tags added to a pretrained LLM)."""


class LossWeights(_Spec):
    """Weights of the training loss terms."""

    text: float = 1.0
    """Cross-entropy on answer tokens."""
    cosine: float = 1.0
    """1 - cosine similarity between predicted and target media features."""
    mse: float = 1.0
    """Mean squared error between predicted and target (unit-norm) media features."""


class CoDi2Config(_Spec):
    """Configuration of a CoDi-2 model; the content of a checkpoint's ``codi2.json``."""

    format_version: Literal[1] = FORMAT_VERSION
    name: str = "codi2"
    llm: dict[str, Any] = {}
    """``LlamaConfig`` arguments for a model built from scratch; ignored when loading ``llm_path``."""
    llm_path: str = "llm"
    """Sub-folder of the checkpoint holding the LLM, or a hub id found in the local cache."""
    encoders: dict[MediaModality, EncoderSpec] = {}
    decoders: dict[MediaModality, DecoderSpec] = {}
    feature_norms: dict[MediaModality, float] = {}
    """Mean L2 norm of each encoder's pooled feature: predicted unit-norm features are scaled back to it."""
    projector_hidden: int | None = None
    """Hidden width of the projector MLPs; ``None`` for the LLM's width."""
    lora: LoraSpec | None = None
    loss: LossWeights = LossWeights()
    defaults: GenerationConfig = GenerationConfig()
    """Generation settings used where a request leaves a field at ``None``."""
    prefill_block: int = Field(64, ge=1)
    """Prompts are prefilled in blocks of this many tokens at fixed positions; a cached prefix is reused up to
    a block boundary (smaller blocks reuse more of short prompts, larger ones prefill long prompts faster)."""
    closed_vocabulary: bool = False
    """The model understands only its tokenizer's words (codi2-mini): text with other words is refused, naming
    the nearest known ones, instead of being read as unknown tokens."""
    prompt_examples: list[str] = []
    """Prompts of the kinds the model was trained on: shown to a caller whose text it cannot read."""

    @property
    def modalities(self) -> list[MediaModality]:
        """Media the model reads (has an encoder for)."""
        return sorted(self.encoders)

    @classmethod
    def tiny(cls, *, image_size: int = 32, sample_rate: int = 8000) -> CoDi2Config:
        """A tiny random-init configuration (a 2-layer Llama, small encoders and decoders) for tests."""
        width = 32
        return cls(
            name="codi2-tiny",
            llm={
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 512,
            },
            encoders={
                "image": EncoderSpec(
                    kind="cnn_image", args={"image_size": image_size, "width": width, "channels": [8, 16], "grid": 2}
                ),
                "audio": EncoderSpec(
                    kind="cnn_audio",
                    args={
                        "sample_rate": sample_rate,
                        "n_fft": 256,
                        "hop_length": 128,
                        "n_mels": 16,
                        "frames": 16,
                        "width": width,
                        "channels": [8, 16],
                        "grid": 2,
                    },
                ),
            },
            decoders={
                "image": DecoderSpec(
                    kind="latent_image",
                    args=_tiny_latent_args(width, sample_size=image_size, in_channels=3),
                ),
                "audio": DecoderSpec(
                    kind="latent_audio",
                    args={
                        **_tiny_latent_args(width, sample_size=16, in_channels=1),
                        "sample_rate": sample_rate,
                        "n_fft": 256,
                        "hop_length": 128,
                        "n_mels": 16,
                        "frames": 16,
                        "griffin_lim_iters": 8,
                    },
                ),
            },
            feature_norms={"image": 1.0, "audio": 1.0},
            defaults=GenerationConfig(
                image=ImageConfig(steps=4, guidance_scale=2.0), audio=AudioConfig(steps=4, guidance_scale=2.0)
            ),
        )


DIFFUSION_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "v_prediction",
    "timestep_spacing": "trailing",
    "clip_sample": False,
    "set_alpha_to_one": False,
}
"""DDIM with a cosine schedule, v-prediction and trailing spacing (good at few steps)."""


def latent_decoder_args(
    *,
    cond_dim: int,
    in_channels: int,
    sample_size: int,
    vae_channels: list[int],
    latent_channels: int,
    vae_groups: int,
    unet_channels: list[int],
    unet_groups: int,
    head_dim: int,
    mid_attention: bool = True,
) -> dict[str, Any]:
    """Arguments of a latent diffusion decoder: an AutoencoderKL, a UNet with one level per entry of
    ``unet_channels`` (cross-attention at every level but the first), conditioned on a ``cond_dim`` feature,
    and :data:`DIFFUSION_SCHEDULE`."""
    levels = len(vae_channels)
    attending = len(unet_channels) - 1
    return {
        "cond_dim": cond_dim,
        "vae": {
            "in_channels": in_channels,
            "out_channels": in_channels,
            "down_block_types": ["DownEncoderBlock2D"] * levels,
            "up_block_types": ["UpDecoderBlock2D"] * levels,
            "block_out_channels": vae_channels,
            "latent_channels": latent_channels,
            "layers_per_block": 1,
            "norm_num_groups": vae_groups,
            "mid_block_add_attention": mid_attention,
            "sample_size": sample_size,
        },
        "unet": {
            "sample_size": sample_size // 2 ** (levels - 1),
            "in_channels": latent_channels,
            "out_channels": latent_channels,
            "down_block_types": ["DownBlock2D"] + ["CrossAttnDownBlock2D"] * attending,
            "up_block_types": ["CrossAttnUpBlock2D"] * attending + ["UpBlock2D"],
            "block_out_channels": unet_channels,
            "layers_per_block": 1,
            "norm_num_groups": unet_groups,
            "attention_head_dim": head_dim,
            "cross_attention_dim": cond_dim,
            "class_embed_type": "projection",
            "projection_class_embeddings_input_dim": cond_dim,
        },
        "scheduler": dict(DIFFUSION_SCHEDULE),
    }


def _tiny_latent_args(cond_dim: int, *, sample_size: int, in_channels: int) -> dict[str, Any]:
    return latent_decoder_args(
        cond_dim=cond_dim,
        in_channels=in_channels,
        sample_size=sample_size,
        vae_channels=[8, 16],
        latent_channels=4,
        vae_groups=4,
        unet_channels=[16, 32],
        unet_groups=8,
        head_dim=8,
    )
