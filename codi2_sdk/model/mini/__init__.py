"""codi2-mini's own parts: small CNN encoders and latent diffusion decoders, registered here by kind."""

from ..parts import register_decoder, register_encoder
from .decoders import AudioDecoder, ImageDecoder, LatentDiffusionDecoder, LatentDiffusionPipeline, VideoDecoder
from .encoders import CNNAudioEncoder, CNNImageEncoder

__all__ = [
    "AudioDecoder",
    "CNNAudioEncoder",
    "CNNImageEncoder",
    "ImageDecoder",
    "LatentDiffusionDecoder",
    "LatentDiffusionPipeline",
    "VideoDecoder",
]

for _encoder in (CNNImageEncoder, CNNAudioEncoder):
    register_encoder(_encoder)
for _decoder in (ImageDecoder, AudioDecoder, VideoDecoder):
    register_decoder(_decoder)
