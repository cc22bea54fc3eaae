"""ImageBind-H's towers as CoDi-2's full-scale encoders, registered here by kind: pictures through its vision
tower (OpenCLIP ViT-H/14, the CLIP-H weights SD-2.1 unCLIP ships), audio through its audio tower, video through
its vision trunk's Conv3d stem, each read from the official checkpoint's key names."""

from ..parts import register_encoder
from .audio import ImageBindAudioEncoder, load_imagebind_audio
from .image import CLIPImageEncoder, ImageBindImageEncoder
from .video import ImageBindVideoEncoder, load_imagebind_video

__all__ = [
    "CLIPImageEncoder",
    "ImageBindAudioEncoder",
    "ImageBindImageEncoder",
    "ImageBindVideoEncoder",
    "load_imagebind_audio",
    "load_imagebind_video",
]

for _encoder in (CLIPImageEncoder, ImageBindImageEncoder, ImageBindAudioEncoder, ImageBindVideoEncoder):
    register_encoder(_encoder)
