"""The Video part: frames in and out, JSON and the server protocol, refusals, and where video goes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from server_fixtures import running_server

from codi2_sdk import (
    Capabilities,
    Conversation,
    InvalidMediaError,
    InvalidRequestError,
    MediaTooLargeError,
    Message,
    RemoteBackend,
    Video,
    user,
)
from codi2_sdk.agents import MediaStore
from codi2_sdk.formats import from_langchain_blocks, to_langchain_blocks, to_mcp_content, to_openai_parts
from codi2_sdk.testing import FunctionBackend


def moving_square(frames: int = 8, side: int = 64) -> np.ndarray:
    """A white square moving left to right on black, the kind of clip codi2-mini's world will have."""
    clip = np.zeros((frames, side, side, 3), dtype=np.uint8)
    for t in range(frames):
        x = 4 + t * (side - 20) // max(frames - 1, 1)
        clip[t, 24:40, x : x + 16] = 255
    return clip


@pytest.fixture(scope="module")
def video() -> Video:
    return Video.from_frames(moving_square(), fps=4)


def test_frames_round_trip_through_h264(video: Video) -> None:
    assert video.mime_type == "video/mp4" and (video.width, video.height, video.frames) == (64, 64, 8)
    assert video.fps == 4 and video.duration == 2.0
    frames = video.to_frames()
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    assert np.abs(frames.astype(int) - moving_square()).mean() < 4  # lossy, but the same pictures
    floats = Video.from_frames(moving_square(4).astype(np.float32) / 255, fps=2)
    assert floats.frames == 4 and np.abs(floats.to_frames().astype(int) - moving_square(4)).mean() < 4
    whole = Video.from_frames(moving_square(4).astype(np.int64), fps=2)  # integers are pixel values, any dtype
    assert np.abs(whole.to_frames().astype(int) - moving_square(4)).mean() < 4
    odd = Video.from_frames(np.zeros((2, 15, 21, 3), np.uint8), fps=1)
    assert (odd.width, odd.height) == (22, 16)  # H.264 4:2:0 needs even sides: padded by one pixel


def test_json_and_files_round_trip(video: Video, tmp_path: Path) -> None:
    message = user("watch", video)
    again = Message.model_validate_json(message.model_dump_json())
    assert again == message and again.videos[0].data == video.data
    assert json.loads(message.model_dump_json())["parts"][1]["type"] == "video"
    assert Video.open(video.save(tmp_path / "clip.mp4")) == video
    gif = Video.open(video.save(tmp_path / "clip.gif"))
    assert gif.mime_type == "image/gif" and gif.frames == 8 and abs(gif.fps - 4) < 0.1


def test_animated_gif_and_webp_are_videos() -> None:
    pictures = [PIL.Image.fromarray(frame) for frame in moving_square(5)]
    for fmt, mime in (("GIF", "image/gif"), ("WEBP", "image/webp")):
        buffer = io.BytesIO()
        pictures[0].save(buffer, format=fmt, save_all=True, append_images=pictures[1:], duration=250, loop=0)
        clip = Video.from_bytes(buffer.getvalue())
        assert clip.mime_type == mime and clip.frames == 5 and abs(clip.fps - 4) < 0.1


def test_corrupt_and_over_long_videos_are_refused(video: Video, monkeypatch) -> None:
    for junk in (b"", b"\x00" * 100, video.data[: len(video.data) // 3], b"RIFF....WAVEfmt "):
        with pytest.raises(InvalidMediaError) as refused:
            Video.from_bytes(junk)
        assert "[Errno" not in str(refused.value) and " at 0x" not in str(refused.value)
    with pytest.raises(InvalidMediaError, match="frames"):
        Video.from_frames(np.zeros((2, 8, 8)), fps=2)
    with pytest.raises(MediaTooLargeError, match="over the limit"):  # checked from the shape: a view, no memory
        Video.from_frames(np.broadcast_to(np.uint8(0), (100_000, 64, 64, 3)), fps=30)
    with pytest.raises(MediaTooLargeError, match="pixels a frame"):
        Video.from_frames(np.broadcast_to(np.uint8(0), (1, 4000, 4000, 3)), fps=30)
    with pytest.raises(InvalidMediaError, match="declared frame rate"):
        Video.from_bytes(video.data, fps=25)
    monkeypatch.setattr("codi2_sdk._media.MAX_VIDEO_FRAMES", 5)
    with pytest.raises(MediaTooLargeError, match="frames"):
        Video.from_bytes(video.data)


def test_video_through_the_server_protocol(video: Video) -> None:
    echo = FunctionBackend(lambda r: ["got", *r.messages[-1].videos], capabilities=Capabilities(model="echo"))
    with running_server(echo) as url:
        answer = Conversation(backend=RemoteBackend(url)).send(video, "what moves?")
        streamed = list(Conversation(backend=RemoteBackend(url)).stream(video))
    assert answer.videos == [video] and answer.videos[0].data == video.data
    assert streamed[-1].message.videos == [video]  # type: ignore[union-attr]


def test_a_model_that_cannot_read_video_says_so(tiny_model, video: Video) -> None:
    from codi2_sdk.backends.local import LocalBackend

    backend = LocalBackend(tiny_model)
    assert "video" not in backend.capabilities.input_modalities
    with pytest.raises(InvalidRequestError, match="cannot read video"):
        Conversation(backend=backend).send(video, "what is this?")


def test_video_in_the_store_and_the_converters(video: Video, tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media")
    ref = store.put(video)
    assert ref == "video_1" and (tmp_path / "media" / "video_1.mp4").exists() and store.get(ref) == video
    assert store.get(str(tmp_path / "media" / "video_1.mp4")) == video
    blocks = to_langchain_blocks([video])
    assert blocks[0]["type"] == "video" and from_langchain_blocks(blocks) == [video]
    with pytest.raises(InvalidMediaError, match="no video"):
        to_openai_parts([video])
    assert to_mcp_content([video])[0]["type"] == "resource"  # MCP has no video content either: it embeds the file


def test_frame_encoder_in_two_spans_keeps_which_way_a_clip_goes(video: Video, tmp_path: Path) -> None:
    import torch

    from codi2_sdk.model.parts import FrameVideoEncoder, build_kind, load_kind

    args = {"image_kind": "cnn_image", "frames": 8, "image_size": 64, "width": 16, "channels": [8, 16], "grid": 2}
    torch.manual_seed(0)
    two_spans = build_kind("encoder", "frames_video", {**args, "segments": 2}).eval()
    one_span = FrameVideoEncoder(two_spans.image_encoder, frames=8, segments=1)
    backwards = Video.from_frames(moving_square()[::-1], fps=4)
    with torch.no_grad():
        forth, back = (two_spans(two_spans.preprocess([v])) for v in (video, backwards))
        assert forth.shape == (1, two_spans.tokens_per_item, 32) and two_spans.width == 32
        codec = (forth[..., 16:] - back[..., :16]).abs().max()  # the end of one is the start of the other (H.264)
        direction = (forth - back).abs().max()
        assert direction > 10 * codec  # start and end are told apart
        averaged = [one_span(one_span.preprocess([v])) for v in (video, backwards)]
        # one span: the average forgets the direction (what is left is H.264's rounding of the middle frames)
        assert (averaged[0] - averaged[1]).abs().max() < direction / 100
    two_spans.save_pretrained(tmp_path)
    again = load_kind("encoder", "frames_video", tmp_path).eval()
    assert (again.frames, again.segments, again.width) == (8, 2, 32)
    with torch.no_grad():
        assert torch.equal(again(again.preprocess([video])), forth)


def test_latent_video_decoder_makes_clips_and_reloads(tmp_path: Path) -> None:
    import torch

    from codi2_sdk import VideoConfig
    from codi2_sdk.mini.architecture import mini_config
    from codi2_sdk.model.parts import build_kind, load_kind

    spec = mini_config().decoders["video"]
    args = {
        **spec.args,
        "vae": {**spec.args["vae"], "block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4},
        "unet": {**spec.args["unet"], "block_out_channels": [16, 16], "norm_num_groups": 8, "attention_head_dim": 8},
    }
    torch.manual_seed(0)
    decoder = build_kind("decoder", "latent_video", args).eval()
    cond = torch.randn(1, decoder.cond_dim)
    settings = VideoConfig(steps=2, guidance_scale=2.0)

    def decode(model) -> Video:
        run = model.iter_decode(cond, settings, generator=torch.Generator().manual_seed(3))
        while True:
            try:
                next(run)
            except StopIteration as done:
                return done.value[0]

    clip = decode(decoder)
    assert (clip.frames, clip.width, clip.height, clip.fps) == (8, 64, 64, 4.0)
    assert clip.provenance is not None and clip.provenance.steps == 2
    decoder.save_pretrained(tmp_path)
    assert decode(load_kind("decoder", "latent_video", tmp_path).eval()).data == clip.data
    wider = decoder.to_media(torch.zeros(1, 8, 3, 64, 64), settings=VideoConfig(size=32, fps=8.0))[0]
    assert (wider.width, wider.fps) == (32, 8.0)


def test_an_mp4_whose_header_promises_more_frames_than_it_holds_is_refused(tmp_path: Path) -> None:
    """A clip written with its index first (``faststart``, as web encoders write them) and cut after its 12th
    frame's data: every packet that is there decodes, and the header still promises 24 frames."""
    import av

    frames = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    path = tmp_path / "indexed.mp4"
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    data = path.read_bytes()
    assert Video.from_bytes(data).to_frames().shape[0] == 24
    with av.open(io.BytesIO(data)) as container:
        starts = sorted(p.pos for p in container.demux(container.streams.video[0]) if p.pos is not None and p.pos >= 0)
    with pytest.raises(InvalidMediaError, match="promises 24 frames, but only 12 can be decoded"):
        Video.from_bytes(data[: starts[12]])
