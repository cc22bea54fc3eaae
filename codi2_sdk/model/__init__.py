"""The CoDi-2 network in torch: encoders, projectors, LLM (+LoRA), output heads, diffusion decoders.

Importing this package imports torch, transformers and diffusers; ``import codi2_sdk`` does not. The layout
(see docs/model.md):

- the core, at this level: :mod:`.modeling` (:class:`CoDi2Model`), :mod:`.generation`, :mod:`.prompt` (the
  template and special tokens), :mod:`.config`, :mod:`.parts` (the encoder and decoder protocols, base classes
  and registry of kinds) and :mod:`.media_io` (tensors to media and back);
- :mod:`.mini`: codi2-mini's CNN encoders and latent decoders;
- :mod:`.imagebind`: ImageBind's towers, the full-scale encoders;
- :mod:`.fullscale`: the paper's decoders (unCLIP, AudioLDM2, Zeroscope) and :func:`assemble`;
- :mod:`.runtime`: step batching and caches, which the core consults and which know nothing of it.

Importing this package registers every family's kinds.
"""

from . import (
    _libraries,  # noqa: F401  (first: it quiets optional libraries' import-time notices, refuses too old a transformers)
    fullscale,
    imagebind,
    mini,
)
from .architecture import CoDi2Config, DecoderSpec, EncoderSpec, LoraSpec, LossWeights
from .fullscale import FULL_SCALE_LORA, AudioLDM2Decoder, UnCLIPImageDecoder, ZeroscopeVideoDecoder, assemble
from .generation import generate_events
from .imagebind import ImageBindAudioEncoder, ImageBindVideoEncoder, load_imagebind_audio, load_imagebind_video
from .modeling import CoDi2Model, CoDi2Output, FeatureWhitening, Projector, TrainingExample

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
    "UnCLIPImageDecoder",
    "ZeroscopeVideoDecoder",
    "assemble",
    "fullscale",
    "generate_events",
    "imagebind",
    "load_imagebind_audio",
    "load_imagebind_video",
    "mini",
]
