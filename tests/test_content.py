"""Content parts: construction, validation, accessors and JSON."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import soundfile
import torch

from codi2_sdk import Audio, Image, InvalidMediaError, MediaTooLargeError, Message, Provenance, Text, user


def test_image_open_reads_type_size_and_pixels(png_path: Path) -> None:
    img = Image.open(png_path)
    assert img.mime_type == "image/png"
    assert (img.width, img.height) == (48, 32)
    assert img.data == png_path.read_bytes()
    pixels = img.to_numpy()
    assert pixels.shape == (32, 48, 3)
    assert tuple(pixels[16, 20]) == (200, 30, 30)


def test_image_from_pil_and_from_bytes_agree() -> None:
    pil = PIL.Image.new("RGB", (8, 8), "blue")
    a = Image.from_pil(pil)
    b = Image.from_bytes(a.data, mime_type="image/png")
    assert a == b and a.sha256 == b.sha256
    assert len(a.sha256) == 64


def test_image_from_numpy_round_trips_and_refuses_what_is_no_picture() -> None:
    import numpy as np

    rgb = np.zeros((6, 10, 3), dtype=np.uint8)
    rgb[:, 5:] = (255, 0, 0)
    picture = Image.from_numpy(rgb)
    assert picture.mime_type == "image/png" and (picture.width, picture.height) == (10, 6)
    assert np.array_equal(picture.to_numpy(), rgb)
    grey = Image.from_numpy(np.linspace(0.0, 1.0, 60).reshape(6, 10))  # floats in [0, 1]
    assert grey.to_numpy().shape == (6, 10) and grey.to_numpy()[0, 0] == 0 and grey.to_numpy()[-1, -1] == 255
    assert Image.from_numpy(np.zeros((4, 4, 4), dtype=np.uint8)).to_pil().mode == "RGBA"
    # integers are pixel values whatever their type (an int64 array of 0-255 is not "floats over 1": not all white)
    assert np.array_equal(Image.from_numpy(rgb.astype(np.int64)).to_numpy(), rgb)
    assert Image.from_numpy(np.eye(4, dtype=bool)).to_numpy().max() == 255
    with pytest.raises(InvalidMediaError, match="integers must be 0 to 255"):
        Image.from_numpy(rgb.astype(np.int16) * 2)
    for bad in (np.zeros(5), np.zeros((4, 4, 2)), np.zeros((0, 4)), "pixels"):
        with pytest.raises(InvalidMediaError, match="image pixels must be"):
            Image.from_numpy(bad)
    with pytest.raises(MediaTooLargeError, match="5000x5000 pixels"):
        Image.from_numpy(np.broadcast_to(np.uint8(0), (5000, 5000)))  # refused from its shape, nothing allocated


def test_image_declared_type_must_match_bytes(png_path: Path) -> None:
    with pytest.raises(InvalidMediaError, match="declared type image/jpeg"):
        Image.from_bytes(png_path.read_bytes(), mime_type="image/jpeg")


def test_image_mime_aliases_are_accepted() -> None:
    data = Image.from_pil(PIL.Image.new("RGB", (8, 8)), format="JPEG").data
    assert Image.from_bytes(data, mime_type="image/jpg").mime_type == "image/jpeg"


@pytest.mark.parametrize("data", [b"", b"junk", b"\x89PNG\r\n\x1a\n" + b"\0" * 20])
def test_corrupt_image_raises_invalid_media(data: bytes) -> None:
    with pytest.raises(InvalidMediaError):
        Image(data=data)


def test_truncated_image_raises_invalid_media(png_path: Path) -> None:
    data = png_path.read_bytes()
    with pytest.raises(InvalidMediaError, match="corrupt or truncated"):
        Image.from_bytes(data[: len(data) // 2])


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size, followed by a tiny compressed stream."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding() -> None:
    with pytest.raises(InvalidMediaError, match="refused before decoding"):
        Image.from_bytes(_png_header_only(100_000, 100_000))
    with pytest.raises(InvalidMediaError, match="over the limit"):
        Image.from_bytes(_png_header_only(5000, 5000))


def test_image_save_keeps_bytes_or_converts(image: Image, tmp_path: Path) -> None:
    same = image.save(tmp_path / "copy.png")
    assert same.read_bytes() == image.data
    jpeg = Image.open(image.save(tmp_path / "copy.jpg"))
    assert jpeg.mime_type == "image/jpeg" and (jpeg.width, jpeg.height) == (image.width, image.height)


def test_audio_from_array_round_trips() -> None:
    t = np.arange(16000) / 16000
    samples = 0.5 * np.sin(2 * np.pi * 220 * t)
    clip = Audio.from_array(samples, sample_rate=16000)
    assert clip.mime_type == "audio/wav" and clip.sample_rate == 16000
    assert clip.duration == pytest.approx(1.0)
    back = clip.to_numpy()
    assert back.dtype == np.float32 and back.shape == (16000,)
    assert np.max(np.abs(back - samples)) < 1e-3
    # integer PCM, as WAV files hold it (scipy.io.wavfile gives int16), is scaled from its type's range
    for pcm, tolerance in (
        ((samples * 32767).astype(np.int16), 1e-3),
        ((samples * 2**31).astype(np.int32), 1e-3),
        ((samples * 127 + 128).astype(np.uint8), 2e-2),
    ):
        assert np.max(np.abs(Audio.from_array(pcm, sample_rate=16000).to_numpy() - samples)) < tolerance, pcm.dtype


def test_audio_open_and_stereo(tmp_path: Path) -> None:
    path = tmp_path / "stereo.flac"
    soundfile.write(path, np.zeros((4000, 2)), 8000, format="FLAC")
    clip = Audio.open(path)
    assert (clip.mime_type, clip.sample_rate, clip.channels) == ("audio/flac", 8000, 2)
    assert clip.to_numpy().shape == (4000, 2)


def test_audio_declared_sample_rate_must_match(audio: Audio) -> None:
    with pytest.raises(InvalidMediaError, match="sample rate 44100"):
        Audio.from_bytes(audio.data, sample_rate=44100)
    assert Audio.from_bytes(audio.data, mime_type="audio/x-wav", sample_rate=16000) == audio


@pytest.mark.parametrize("data", [b"", b"RIFF\0\0\0\0WAVEjunk", b"not audio at all"])
def test_corrupt_audio_raises_invalid_media(data: bytes) -> None:
    with pytest.raises(InvalidMediaError) as refused:
        Audio(data=data)
    assert "BytesIO" not in str(refused.value) and " at 0x" not in str(refused.value)  # the reason, not a handle


def test_audio_limits() -> None:
    with pytest.raises(InvalidMediaError, match="outside"):
        Audio.from_array(np.zeros(100), sample_rate=500)
    with pytest.raises(InvalidMediaError, match="NaN"):
        Audio.from_array(np.array([0.0, np.nan]), sample_rate=16000)
    with pytest.raises(InvalidMediaError, match="shape"):
        Audio.from_array(np.zeros((2, 2, 2)), sample_rate=16000)
    # an 11-minute clip, made small by a low rate and 8-bit samples, is still refused for its duration
    buf = io.BytesIO()
    soundfile.write(buf, np.zeros(1000 * 660, dtype=np.float32), 1000, format="WAV", subtype="PCM_U8")
    with pytest.raises(InvalidMediaError, match="over the limit of 600 s"):
        Audio.from_bytes(buf.getvalue())


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Image.open(tmp_path / "nope.png")


def test_parts_are_base64_in_json_and_bytes_in_memory(image: Image, audio: Audio) -> None:
    msg = user("look", image, audio)
    as_json = msg.model_dump_json()
    assert '"type":"image"' in as_json and image.data not in as_json.encode()
    back = Message.model_validate_json(as_json)
    assert back == msg
    assert back.images[0].data == image.data and back.audios[0].data == audio.data
    assert isinstance(msg.model_dump()["parts"][1]["data"], bytes)


def test_bad_base64_is_a_validation_error() -> None:
    with pytest.raises(ValueError, match="base64"):
        Message.model_validate_json('{"role": "user", "parts": [{"type": "image", "data": "!!!"}]}')


def test_provenance_is_typed_and_serialised(image: Image) -> None:
    made = Image.from_bytes(image.data, provenance=Provenance(model="codi2-mini", seed=3, steps=25))
    assert made.provenance is not None and made.provenance.seed == 3
    assert Image.model_validate_json(made.model_dump_json()).provenance == made.provenance


def test_parts_are_immutable() -> None:
    text = Text("a")
    with pytest.raises(ValueError):
        text.text = "b"  # type: ignore[misc]


def test_hours_of_audio_are_refused_before_any_conversion() -> None:
    two_hours = np.broadcast_to(np.float64(0.1), (2 * 3600 * 48_000,))  # a view: no memory behind it
    with pytest.raises(MediaTooLargeError, match="over the limit"):
        Audio.from_array(two_hours, sample_rate=48_000)
    many_channels = np.broadcast_to(np.float64(0.1), (100, 64))
    with pytest.raises(InvalidMediaError, match="channels"):
        Audio.from_array(many_channels, sample_rate=16_000)
    with pytest.raises(InvalidMediaError, match="sample_rate must be an int"):
        Audio.from_array([0.1, 0.2], sample_rate="16000")  # type: ignore[arg-type]


def test_a_wav_whose_header_claims_more_than_it_holds_is_refused_naming_the_mismatch() -> None:
    import struct

    clip = Audio.from_array(np.sin(np.arange(8000) / 10) * 0.5, sample_rate=8000)
    data = bytearray(clip.data)
    data_chunk = data.index(b"data")
    struct.pack_into("<I", data, data_chunk + 4, 10 * 60 * 8000 * 2)  # claims ten minutes
    for lying in (bytes(data), bytes(data[: len(data) // 2])):
        with pytest.raises(InvalidMediaError, match=r"promises 9,600,000 bytes of samples, but the file holds"):
            Audio.from_bytes(lying)
    with pytest.raises(InvalidMediaError, match="promises 16,000 bytes"):
        Audio.from_bytes(clip.data[: len(clip.data) // 2])  # an honest header over a cut file
    assert Audio.from_bytes(clip.data).duration == 1.0


def test_open_media_picks_the_part_by_suffix(tmp_path: Path) -> None:
    from codi2_sdk import InvalidRequestError, Video, samples
    from codi2_sdk.content import open_media
    from codi2_sdk.mini.clips import Clip, probe_clip

    picture, sound = samples.picture("a small red circle on the left"), samples.sound("two sine beeps at mi")
    clip = samples.clip("a large blue square moving to the right")
    for part, name in ((picture, "p.png"), (sound, "s.wav"), (clip, "c.mp4")):
        part.save(tmp_path / name)
        assert open_media(tmp_path / name) == part
    assert isinstance(clip, Video) and probe_clip(clip.to_frames()) == Clip("square", "blue", "large", "rightward")
    clip.save(tmp_path / "moving.gif")  # an animated GIF is a video; a still one a picture
    picture.save(tmp_path / "still.gif")
    moving, still = open_media(tmp_path / "moving.gif"), open_media(tmp_path / "still.gif")
    assert isinstance(moving, Video) and moving.mime_type == "image/gif" and moving.frames == clip.frames
    assert probe_clip(moving.to_frames()) == Clip("square", "blue", "large", "rightward")
    assert isinstance(still, Image) and still.mime_type == "image/gif"
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidMediaError, match="not a picture, sound or video"):
        open_media(tmp_path / "notes.txt")
    with pytest.raises(InvalidRequestError, match="cannot show"):
        samples.clip("a blue square")


def test_sample_pictures_of_a_subject_carry_its_mark() -> None:
    from codi2_sdk import InvalidRequestError, samples
    from codi2_sdk.mini.probes import probe_picture
    from codi2_sdk.mini.world import Picture

    plain = samples.picture("a large green diamond on the right", seed=3)
    marked = samples.picture("a large green diamond on the right", mark="checker", seed=3)
    assert (
        probe_picture(marked.to_pil()) == probe_picture(plain.to_pil()) == Picture("diamond", "green", "large", "right")
    )
    assert marked != plain
    with pytest.raises(InvalidRequestError, match="unknown mark 'plaid': one of hstripes"):
        samples.picture("a large green diamond on the right", mark="plaid")


def test_media_the_sdk_encodes_itself_are_what_their_bytes_say_without_a_second_decode() -> None:
    """A model's outputs skip the decode that checks a user's bytes; what they claim must be what a check finds."""
    import numpy as np
    import PIL.Image

    from codi2_sdk import Audio, Image, Video

    rng = np.random.default_rng(0)
    for width, height in ((64, 64), (33, 17)):
        picture = PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        made, checked = Image._encoded_here(picture), Image.from_pil(picture)
        assert made == checked and (made.width, made.height) == (checked.width, checked.height) == (width, height)
    for rate, frames in ((16_000, 8_000), (22_050, 1)):
        wave = rng.uniform(-1.2, 1.2, frames).astype(np.float32)
        made, checked = Audio._encoded_here(wave, sample_rate=rate), Audio.from_array(wave, sample_rate=rate)
        assert made == checked and (made.duration, made.channels) == (checked.duration, checked.channels)
        assert Audio.from_bytes(made.data) == made
    for fps, (count, height, width) in ((4.0, (8, 32, 32)), (29.97, (3, 17, 33)), (7.5, (1, 16, 16))):
        clip = rng.integers(0, 256, (count, height, width, 3), dtype=np.uint8)
        made, checked = Video._encoded_here(clip, fps=fps), Video.from_frames(clip, fps=fps)
        assert made.data == checked.data
        facts = ("fps", "width", "height", "frames", "mime_type")
        assert [getattr(made, f) for f in facts] == [getattr(checked, f) for f in facts], (fps, count, height, width)


def test_sixteen_bit_grey_keeps_its_tones_on_the_way_to_the_model(tmp_path: Path) -> None:
    from codi2_sdk.model.media_io import image_to_tensor

    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    PIL.Image.fromarray(ramp).save(tmp_path / "scan.png")  # a 16-bit grey PNG, as scanners and microscopes write
    image = Image.open(tmp_path / "scan.png")
    seen = image_to_tensor([image], 64, height=8)[0]  # what an encoder reads, in [-1, 1]
    expected = torch.from_numpy(ramp / 65535.0 * 2 - 1).float()
    assert torch.allclose(seen[0], expected, atol=0.02) and torch.equal(seen[0], seen[2])  # not clipped to white


def test_every_format_is_saved_under_its_own_suffix_unchanged(tmp_path: Path) -> None:
    """``part.suffix`` names the format the bytes are in, so saving under it (as the agent store and ``codi2 chat``
    do) writes the file a user gave, byte for byte, and reads back as the same part."""
    from codi2_sdk import Video, samples
    from codi2_sdk.agents import MediaStore
    from codi2_sdk.content import open_media

    picture, sound = samples.picture("a small red circle on the left"), samples.sound("two sine beeps at mi")
    clip = samples.clip("a large blue square moving to the right")
    for name, part in (("p.jpg", picture), ("p.webp", picture), ("p.bmp", picture), ("c.gif", clip)):
        part.save(tmp_path / name)
    sound.save(tmp_path / "s.flac")
    sound.save(tmp_path / "s.ogg")
    files = sorted(tmp_path.iterdir())
    store = MediaStore(tmp_path / "store")
    for path in files:
        part = open_media(path)
        assert part.suffix == path.suffix
        ref = store.put(part)
        kept = tmp_path / "store" / f"{ref}{path.suffix}"
        assert kept.read_bytes() == path.read_bytes() and open_media(kept) == part
    assert [picture.suffix, sound.suffix, clip.suffix] == [".png", ".wav", ".mp4"]
    assert isinstance(open_media(tmp_path / "store" / "video_1.gif"), Video)


def test_a_pipe_or_device_is_refused_instead_of_read_forever(tmp_path: Path) -> None:
    """A named pipe blocks a reader until some writer comes, and ``/dev/zero`` never ends: neither may stall a
    caller (an agent tool opening files by path, an app loading what a user named) or fill its memory."""
    import os
    import threading

    from codi2_sdk import Conversation, ConversationFileError

    pipe = tmp_path / "beeps.wav"
    os.mkfifo(pipe)
    outcomes: list[BaseException | None] = []

    def read_them() -> None:
        for read in (Audio.open, Conversation.load):
            try:
                read(pipe)
                outcomes.append(None)
            except (InvalidMediaError, ConversationFileError) as exc:
                outcomes.append(exc)

    reader = threading.Thread(target=read_them, daemon=True)
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # the old behaviour: let the blocked reader end before failing
        os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
    assert not reader.is_alive() and len(outcomes) == 2, "reading a pipe blocked"
    assert all("not a regular file (a device, pipe or socket)" in str(exc) for exc in outcomes)
    if os.path.exists("/dev/zero"):
        with pytest.raises(InvalidMediaError, match="not a regular file"):
            Image.open("/dev/zero")
    for read in (Image.open, Conversation.load):  # a folder is open()'s own error, naming the folder
        with pytest.raises(IsADirectoryError) as folder:
            read(tmp_path)
        assert folder.value.filename == str(tmp_path)
