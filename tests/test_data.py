"""Training manifests from the public data sets' layouts, built from small shards this test writes itself: every
layout streams its records, copies checked media, skips and counts bad records, and the result loads as a manifest."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codi2_sdk import Audio, Video
from codi2_sdk.train.align import load_manifest
from codi2_sdk.train.data import (
    audio_captions_from_csv,
    audio_captions_from_wavcaps,
    conversations_from_captions,
    image_captions_from_parquet,
    image_captions_from_webdataset,
    image_edits_from_parquet,
    in_context_edits,
    main,
    video_captions_from_webvid,
)


def picture(colour: str, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    PIL.Image.new("RGB", (24, 24), colour).save(buffer, format=fmt)
    return buffer.getvalue()


def test_webdataset_shards_as_img2dataset_writes_them(tmp_path: Path) -> None:
    import webdataset as wds

    samples = [
        {"__key__": "000", "png": picture("red"), "txt": b"a red square"},
        {"__key__": "001", "jpg": picture("blue", "JPEG"), "json": json.dumps({"caption": "a blue square"}).encode()},
        {"__key__": "002", "jpg": b"\xff\xd8 not a jpeg at all", "txt": b"a broken picture"},
        {"__key__": "003", "png": picture("green"), "txt": b"   "},
        {"__key__": "004", "txt": b"a caption without a picture"},
        {"__key__": "005", "webp": picture("yellow", "WEBP"), "txt": b"a yellow square"},
    ]
    shards = []
    for index, chunk in enumerate((samples[:3], samples[3:])):
        shards.append(tmp_path / f"shard-{index:05d}.tar")
        with wds.TarWriter(str(shards[-1])) as sink:
            for sample in chunk:
                sink.write(sample)
    report = image_captions_from_webdataset(shards, tmp_path / "out")
    assert report.written == 3
    assert dict(report.skipped) == {"unreadable medium (InvalidMediaError)": 1, "no caption": 1, "no picture": 1}
    captions = load_manifest(report.manifest).captions
    assert [c.caption for c in captions] == ["a red square", "a blue square", "a yellow square"]
    assert [c.part.mime_type for c in captions] == ["image/png", "image/jpeg", "image/webp"]
    assert np.asarray(captions[0].part.to_pil())[0, 0].tolist() == [255, 0, 0]


def test_a_parquet_table_of_file_names_and_captions(tmp_path: Path) -> None:
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "a.png").write_bytes(picture("red"))
    (tmp_path / "pictures" / "b.png").write_bytes(picture("blue"))
    table = pa.table({"file_name": ["a.png", "b.png", "gone.png"], "caption": ["red", "blue", "lost"]})
    pq.write_table(table, tmp_path / "captions.parquet")
    report = image_captions_from_parquet(tmp_path / "captions.parquet", tmp_path / "pictures", tmp_path / "out")
    assert report.written == 2 and dict(report.skipped) == {"missing file": 1}
    assert [c.caption for c in load_manifest(report.manifest).captions] == ["red", "blue"]


def tone(frequency: float) -> Audio:
    t = np.arange(8000) / 16000
    return Audio.from_array(0.3 * np.sin(2 * np.pi * frequency * t), sample_rate=16000)


def test_audiocaps_csv_and_wavcaps_json(tmp_path: Path) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    tone(440).save(clips / "yt_abc.wav")
    tone(880).save(clips / "91139.flac")
    (clips / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    rows = [
        {"audiocap_id": "91138", "youtube_id": "yt_abc", "start_time": "30", "caption": "a tone at a"},
        {"audiocap_id": "91139", "youtube_id": "yt_missing", "start_time": "0", "caption": "a tone at a above"},
        {"audiocap_id": "91140", "youtube_id": "yt_nowhere", "start_time": "0", "caption": "never downloaded"},
        {"audiocap_id": "91141", "youtube_id": "yt_abc", "start_time": "0", "caption": ""},
    ]
    with open(tmp_path / "train.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report = audio_captions_from_csv(tmp_path / "train.csv", clips, tmp_path / "audiocaps")
    assert report.written == 2 and dict(report.skipped) == {"missing file": 1, "no caption": 1}
    captions = load_manifest(report.manifest).captions
    assert [c.caption for c in captions] == ["a tone at a", "a tone at a above"]
    assert [c.part.mime_type for c in captions] == ["audio/wav", "audio/flac"]

    metadata = {"data": [{"id": "yt_abc.wav", "caption": "a tone"}, {"id": "broken", "caption": "a corrupt clip"}]}
    (tmp_path / "wavcaps.json").write_text(json.dumps(metadata))
    report = audio_captions_from_wavcaps(tmp_path / "wavcaps.json", clips, tmp_path / "wavcaps")
    assert report.written == 1 and dict(report.skipped) == {"unreadable medium (InvalidMediaError)": 1}


def test_webvid_csv_and_its_page_folders(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3), dtype=np.uint8)
    (tmp_path / "clips" / "000001_000050").mkdir(parents=True)
    Video.from_frames(frames, fps=4).save(tmp_path / "clips" / "000001_000050" / "1066.mp4")
    (tmp_path / "clips" / "000001_000050" / "1067.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 cut short")
    with open(tmp_path / "results.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["videoid", "contentUrl", "duration", "page_dir", "name"])
        writer.writerow(["1066", "https://example.invalid/1066", "PT00H00M10S", "000001_000050", "waves at dusk"])
        writer.writerow(["1067", "https://example.invalid/1067", "PT00H00M10S", "000001_000050", "a broken clip"])
    report = video_captions_from_webvid(tmp_path / "results.csv", tmp_path / "clips", tmp_path / "out")
    assert report.written == 1 and dict(report.skipped) == {"unreadable medium (InvalidMediaError)": 1}
    (clip,) = load_manifest(report.manifest).captions
    assert clip.caption == "waves at dusk" and clip.part.to_frames().shape == (4, 16, 16, 3)


def edit_table(path: Path, rows: list[tuple[str, str, str]], columns: tuple[str, str, str], struct: bool) -> Path:
    def cell(colour: str) -> object:
        data = b"\x89PNG broken" if colour == "broken" else picture(colour)
        return {"bytes": data, "path": None} if struct else data

    before, text, after = columns
    table = pa.table(
        {before: [cell(b) for b, _, _ in rows], text: [t for _, t, _ in rows], after: [cell(a) for _, _, a in rows]}
    )
    pq.write_table(table, path)
    return path


def test_instructed_edits_and_the_papers_in_context_construction(tmp_path: Path) -> None:
    rows = [
        ("red", "make it blue", "blue"),
        ("green", "Make it  blue", "blue"),
        ("yellow", "make it blue ", "blue"),
        ("white", "make it blue", "blue"),
        ("black", "make it blue", "broken"),
        ("red", "make it green", "green"),
    ]
    table = edit_table(tmp_path / "ip2p.parquet", rows, ("original_image", "edit_prompt", "edited_image"), struct=True)
    edits = image_edits_from_parquet([table], tmp_path / "edits", layout="instructpix2pix")
    assert edits.written == 5 and dict(edits.skipped) == {"unreadable medium (InvalidMediaError)": 1}
    first = load_manifest(edits.manifest).conversations[0]
    assert [p.type for p in first.messages[0].parts] == ["image", "text"] and first.answer.images

    magicbrush = edit_table(
        tmp_path / "mb.parquet", rows[:1], ("source_img", "instruction", "target_img"), struct=False
    )
    assert image_edits_from_parquet([magicbrush], tmp_path / "mb", layout="magicbrush").written == 1

    report = in_context_edits(edits.manifest, tmp_path / "in-context", shots=2, per_group=3)
    assert report.written == 3 and dict(report.skipped) == {"fewer than 3 edits share the instruction": 1}
    for example in load_manifest(report.manifest).conversations:
        assert len(example.examples) == 2 and example.messages[0].text == ""  # the edit is shown, never said
        for pair in example.examples:
            assert np.asarray(pair.outputs[0].to_pil())[0, 0].tolist() == [0, 0, 255]  # every example ends blue
        assert np.asarray(example.answer.images[0].to_pil())[0, 0].tolist() == [0, 0, 255]
    assert not list((tmp_path / "in-context" / "media").iterdir())  # the edits' own pictures, never copied
    with edits.manifest.open("a") as manifest:
        manifest.write('{"messages": []}\n["not", "a", "record"]\n')
    again = in_context_edits(edits.manifest, tmp_path / "in-context" / "again.jsonl", shots=2, per_group=1)
    assert again.written == 1 and again.skipped["not an edit record"] == 2


def test_builds_never_overwrite_a_manifest_and_a_stopped_one_looks_unfinished(tmp_path: Path) -> None:
    """Several builds into one folder (each its own .jsonl) keep each other's manifests and media, read back as one;
    a second build onto an existing manifest is refused; a build that stops halfway leaves ``NAME.partial``."""
    from codi2_sdk import InvalidRequestError

    (tmp_path / "pictures").mkdir()
    for colour in ("red", "blue"):
        (tmp_path / "pictures" / f"{colour}.png").write_bytes(picture(colour))
    table = tmp_path / "captions.parquet"
    pq.write_table(pa.table({"file_name": ["red.png", "blue.png"], "caption": ["red", "blue"]}), table)
    data = tmp_path / "data"
    first = image_captions_from_parquet(table, tmp_path / "pictures", data)
    second = image_captions_from_parquet(table, tmp_path / "pictures", data / "more.jsonl")
    with pytest.raises(InvalidRequestError, match=r"train\.jsonl exists and is kept"):
        image_captions_from_parquet(table, tmp_path / "pictures", data)
    assert (first.manifest.name, second.manifest.name) == ("train.jsonl", "more.jsonl")
    both = load_manifest([first.manifest, second.manifest]).captions
    assert [c.caption for c in both] == ["red", "blue", "red", "blue"] and len(list((data / "media").iterdir())) == 4
    assert sorted(p.name for p in data.iterdir()) == ["media", "more.jsonl", "train.jsonl"]

    from codi2_sdk.train.data import ManifestWriter

    with pytest.raises(RuntimeError, match="the disk is full"), ManifestWriter(tmp_path / "stopped") as writer:
        writer.write({"caption": "red", "image": "red.png"})
        raise RuntimeError("the disk is full")  # or Ctrl-C, halfway through
    assert sorted(p.name for p in (tmp_path / "stopped").iterdir()) == ["media", "train.jsonl.partial"]


def test_a_table_cannot_make_a_build_copy_files_from_outside_its_folder(tmp_path: Path) -> None:
    """A downloaded table is data, not instructions: names that climb out of the media folder are skipped."""
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "red.png").write_bytes(picture("red"))
    (tmp_path / "private.png").write_bytes(picture("green"))
    names = ["red.png", "../private.png", str(tmp_path / "private.png"), "sub/../red.png"]
    pq.write_table(pa.table({"file_name": names, "caption": ["a"] * 4}), tmp_path / "t.parquet")
    report = image_captions_from_parquet(tmp_path / "t.parquet", tmp_path / "pictures", tmp_path / "out")
    assert report.written == 2 and dict(report.skipped) == {"a path outside the media folder": 2}
    with (tmp_path / "webvid.csv").open("w", newline="") as file:
        csv.writer(file).writerows([["videoid", "name", "page_dir"], ["private", "a clip", ".."]])
    clips = video_captions_from_webvid(tmp_path / "webvid.csv", tmp_path / "pictures", tmp_path / "clips")
    assert dict(clips.skipped) == {"a path outside the media folder": 1}


def test_the_command_line_builds_and_reports(tmp_path: Path, capsys) -> None:
    rows = [("red", "make it blue", "blue")] * 3
    table = edit_table(tmp_path / "ip2p.parquet", rows, ("original_image", "edit_prompt", "edited_image"), struct=True)
    out = tmp_path / "edits"
    assert (
        main(["edits", "--tables", str(tmp_path / "*.parquet"), "--layout", "instructpix2pix", "--out", str(out)]) == 0
    )
    assert "3 records written; skipped: none" in capsys.readouterr().out
    assert main(["image-parquet", "--table", str(table), "--images", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "no column" in capsys.readouterr().err
    assert main(["webdataset", "--shards", str(tmp_path / "cc3m" / "*.tar"), "--out", str(tmp_path / "w")]) == 2
    assert f"no shard at {tmp_path / 'cc3m' / '*.tar'}" in capsys.readouterr().err  # a glob that matched nothing
    with pytest.raises(SystemExit):
        main(["nonsense"])


def test_captions_become_the_llm_stages_conversations(tmp_path: Path) -> None:
    (tmp_path / "pictures").mkdir()
    (tmp_path / "pictures" / "a.png").write_bytes(picture("red"))
    pq.write_table(pa.table({"file_name": ["a.png"], "caption": ["a red square"]}), tmp_path / "captions.parquet")
    captions = image_captions_from_parquet(tmp_path / "captions.parquet", tmp_path / "pictures", tmp_path / "captions")
    with (tmp_path / "captions" / "train.jsonl").open("a") as manifest:
        manifest.write('{"caption": "", "image": "nowhere.png"}\nnot json\n[1, 2]\n')
    report = conversations_from_captions(captions.manifest, tmp_path / "llm")
    assert report.written == 2 and dict(report.skipped) == {"not a captioned medium": 3}
    draw, describe = load_manifest(report.manifest).conversations
    assert draw.messages[0].text == "draw: a red square" and draw.answer.images
    assert describe.messages[0].images and describe.answer.text == "a red square"
