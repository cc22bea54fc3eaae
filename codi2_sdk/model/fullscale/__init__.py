"""The paper's decoders read from the public checkpoints' folders (SD-2.1 unCLIP, AudioLDM2, Zeroscope), and
:func:`assemble`, which builds a full-scale CoDi-2 from them, ImageBind (:mod:`codi2_sdk.model.imagebind`) and a
Llama folder. Decoder kinds are registered here."""

from ..parts import register_decoder
from .assembly import FULL_SCALE_LORA, assemble
from .audioldm2 import AudioLDM2Decoder
from .unclip import UnCLIPImageDecoder
from .zeroscope import ZeroscopeVideoDecoder

__all__ = ["FULL_SCALE_LORA", "AudioLDM2Decoder", "UnCLIPImageDecoder", "ZeroscopeVideoDecoder", "assemble"]

for _decoder in (UnCLIPImageDecoder, AudioLDM2Decoder, ZeroscopeVideoDecoder):
    register_decoder(_decoder)
