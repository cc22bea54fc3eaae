"""The CoDi-2 network in torch: encoders, projectors, LLM (+LoRA), output heads, diffusion decoders.

Importing this package imports torch, transformers and diffusers; ``import codi2_sdk`` does not.
"""

from .assembly import FULL_SCALE_LORA, assemble
from .audioldm2 import AudioLDM2Decoder  # importing a decoder module registers its kind
from .config import CoDi2Config, DecoderSpec, EncoderSpec, LoraSpec, LossWeights
from .generation import generate_events
from .imagebind_audio import ImageBindAudioEncoder, load_imagebind_audio
from .imagebind_video import ImageBindVideoEncoder, load_imagebind_video
from .modeling import CoDi2Model, CoDi2Output, FeatureWhitening, Projector, TrainingExample
from .unclip import UnCLIPImageDecoder
from .zeroscope import ZeroscopeVideoDecoder

__all__ = [
    "FULL_SCALE_LORA",
    "AudioLDM2Decoder",
    "CoDi2Config",
    "CoDi2Model",
    "CoDi2Output",
    "DecoderSpec",
    "EncoderSpec",
    "FeatureWhitening",
    "ImageBindAudioEncoder",
    "ImageBindVideoEncoder",
    "LoraSpec",
    "LossWeights",
    "Projector",
    "TrainingExample",
    "assemble",
    "UnCLIPImageDecoder",
    "ZeroscopeVideoDecoder",
    "generate_events",
    "load_imagebind_audio",
    "load_imagebind_video",
]
