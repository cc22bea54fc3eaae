"""Training manifests from the public data sets' own published layouts.

Each builder streams its source (a shard, a CSV, a parquet file) record by record, checks every medium as the SDK
checks any input (:mod:`codi2_sdk.content`), copies it beside the manifest under ``media/`` and writes one JSONL
line in the format :func:`~codi2_sdk.train.align.load_manifest` reads. A record that cannot be used (a corrupt or
missing medium, no caption, an empty instruction) is skipped and counted by reason, never fatal; the counts come
back in a :class:`BuildReport` and are printed by the command line. A build never overwrites a manifest, and one
that stops halfway is left as ``NAME.partial`` (:class:`ManifestWriter`).

Layouts read:

- **image-caption**, webdataset shards (LAION, CC3M as ``img2dataset`` writes them: ``KEY.jpg`` or ``.png`` /
  ``.webp`` beside ``KEY.txt`` or ``KEY.json`` with a ``caption``): :func:`image_captions_from_webdataset`;
  a parquet table of file names and captions beside a folder of pictures: :func:`image_captions_from_parquet`;
- **audio-caption**, AudioCaps' CSV (``audiocap_id, youtube_id, start_time, caption``) with a folder of clips
  named by YouTube id or AudioCaps id, or WavCaps' JSON (``{"data": [{"id", "caption", ...}]}``):
  :func:`audio_captions_from_csv`, :func:`audio_captions_from_wavcaps`;
- **video-caption**, WebVid's CSV (``videoid, name, page_dir, ...``) with clips at ``PAGE_DIR/VIDEOID.mp4``:
  :func:`video_captions_from_webvid`;
- **instructed image edits**, InstructPix2Pix's parquet (``original_image``, ``edit_prompt``, ``edited_image``) or
  MagicBrush's (``source_img``, ``instruction``, ``target_img``), pictures as bytes in the table:
  :func:`image_edits_from_parquet`;
- **captions as conversations** for the LLM stage: each captioned medium asked for and described:
  :func:`conversations_from_captions`;
- **in-context edits**, the paper's construction: edits that share one instruction grouped, each conversation
  showing ``shots`` of them as example pairs and asking for the same edit on another picture:
  :func:`in_context_edits`.

Every builder is also a subcommand: ``python -m codi2_sdk.train.data webdataset --shards 'cc3m/*.tar' --out
data/cc3m`` (``--help`` lists them); docs/training.md gives the recipe that uses them.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._args import whole_number
from ..content import Audio, Image, Video
from ..errors import Codi2Error, InvalidRequestError

__all__ = [
    "BuildReport",
    "ManifestWriter",
    "audio_captions_from_csv",
    "audio_captions_from_wavcaps",
    "conversations_from_captions",
    "image_captions_from_parquet",
    "image_captions_from_webdataset",
    "image_edits_from_parquet",
    "in_context_edits",
    "main",
    "video_captions_from_webvid",
]

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
"""The picture entries of a webdataset sample, in the order they are looked for."""


@dataclass
class BuildReport:
    """What a builder wrote and what it skipped, by reason."""

    manifest: Path
    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def __str__(self) -> str:
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common()) or "none"
        return f"{self.manifest}: {self.written} records written; skipped: {reasons}"


class _Skip(Exception):
    """A record that cannot be used; its message is the reason it is counted under."""


class ManifestWriter:
    """Writes a JSONL manifest and the media it names under ``media/`` beside it, one record at a time.

    ``out`` is a folder (the manifest is its ``train.jsonl``) or a ``.jsonl`` file's path, for several manifests in
    one folder (their media names start with the manifest's name, so they never collide). An existing manifest is
    never overwritten. The lines go to ``NAME.partial`` until the build ends, then take the manifest's name: a build
    that stops halfway (an error, Ctrl-C) leaves no manifest that looks whole. Use as a context manager; :attr:`report`
    counts what was written and skipped, and a progress bar shows them on a terminal.

    Raises:
        InvalidRequestError: the manifest exists already.
    """

    def __init__(self, out: str | Path, name: str = "train.jsonl") -> None:
        out = Path(out)
        self.root, name = (out.parent, out.name) if out.suffix == ".jsonl" else (out, name)
        manifest = self.root / name
        if manifest.exists():
            raise InvalidRequestError(
                f"{manifest} exists and is kept: build into another folder, or give --out a new .jsonl name there"
            )
        (self.root / "media").mkdir(parents=True, exist_ok=True)
        self.report = BuildReport(manifest)
        self._partial = manifest.with_name(manifest.name + ".partial")
        self._file: Any = None
        self._count = 0
        self._bar: Any = None

    def __enter__(self) -> ManifestWriter:
        from tqdm.auto import tqdm

        self._file = self._partial.open("w")
        self._bar = tqdm(desc=self.report.manifest.name, unit=" records", disable=None)  # None: off without a terminal
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        self._bar.close()
        self._file.close()
        if kind is None:
            self._partial.replace(self.report.manifest)
        elif not self.report.written:
            self._partial.unlink()  # nothing to keep from a build that failed at its start (a missing table)

    def medium(self, part: Image | Audio | Video, stem: str) -> str:
        """Copy a checked medium beside the manifest; returns its path relative to the manifest's folder."""
        self._count += 1
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in stem)[:80]
        relative = f"media/{self.report.manifest.stem}-{self._count:08d}-{safe}{part.suffix}"
        part.save(self.root / relative)
        return relative

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self.report.written += 1
        self._bar.update()

    def skip(self, reason: str) -> None:
        self.report.skipped[reason] += 1
        self._bar.set_postfix(skipped=self.report.skipped.total(), refresh=False)

    def add(self, make: Callable[[], dict[str, Any]]) -> None:
        """Write the record ``make()`` returns, or count it as skipped when it raises :class:`_Skip` or a media
        error (a corrupt, truncated or over-large file)."""
        try:
            record = make()
        except _Skip as skipped:
            self.skip(str(skipped))
        except (Codi2Error, OSError) as exc:
            self.skip(f"unreadable medium ({type(exc).__name__})")
        else:
            self.write(record)


def _caption(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value or "")
    text = text.strip()
    if not text:
        raise _Skip("no caption")
    return text


# -- image-caption -------------------------------------------------------------------------------------


def image_captions_from_webdataset(shards: Sequence[str | Path], out: str | Path) -> BuildReport:
    """Captioned pictures from webdataset ``.tar`` shards (``KEY.jpg`` + ``KEY.txt`` or ``KEY.json``), streamed
    one sample at a time with the ``webdataset`` library."""
    import webdataset as wds

    urls = [str(s) for s in shards]
    missing = [u for u in urls if ":" not in u.split("/")[0] and not Path(u).is_file()]  # not a URL nor "pipe:"
    if missing or not urls:
        raise InvalidRequestError(f"no shard at {', '.join(missing[:3])}" if missing else "no shards given")
    with ManifestWriter(out) as writer:
        for sample in wds.WebDataset(urls, shardshuffle=False, handler=wds.warn_and_continue, empty_check=False):

            def make(sample: dict[str, Any] = sample) -> dict[str, Any]:
                data = next((sample[k] for k in IMAGE_KEYS if k in sample), None)
                if data is None:
                    raise _Skip("no picture")
                caption = sample.get("txt")
                if caption is None and "json" in sample:
                    caption = json.loads(sample["json"]).get("caption")
                text = _caption(caption)
                return {"caption": text, "image": writer.medium(Image.from_bytes(data), sample["__key__"])}

            writer.add(make)
    return writer.report


def _parquet_rows(path: str | Path, columns: Sequence[str]) -> Iterator[dict[str, Any]]:
    """A parquet file's rows, read a batch at a time (never the whole table)."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(str(path))
    missing = sorted(set(columns) - set(table.schema_arrow.names))
    if missing:
        raise Codi2Error(f"{path}: no column {', '.join(missing)} (it has {', '.join(table.schema_arrow.names)})")
    for batch in table.iter_batches(batch_size=256, columns=list(columns)):
        yield from batch.to_pylist()


def image_captions_from_parquet(
    table: str | Path,
    images: str | Path,
    out: str | Path,
    *,
    file_column: str = "file_name",
    caption_column: str = "caption",
) -> BuildReport:
    """Captioned pictures from a parquet table of file names and captions beside a folder of pictures."""
    folder = Path(images)
    with ManifestWriter(out) as writer:
        for row in _parquet_rows(table, [file_column, caption_column]):

            def make(row: dict[str, Any] = row) -> dict[str, Any]:
                text = _caption(row[caption_column])
                path = _inside(folder, str(row[file_column]))
                if not path.is_file():
                    raise _Skip("missing file")
                return {"caption": text, "image": writer.medium(Image.open(path), path.stem)}

            writer.add(make)
    return writer.report


# -- audio-caption and video-caption -------------------------------------------------------------------------


def _inside(folder: Path, name: str) -> Path:
    """``folder / name`` where a table's ``name`` stays inside ``folder``; a name that climbs out of it (``../``,
    an absolute path) is skipped, so a downloaded table cannot make a build copy files from elsewhere. Checked on
    the names, not on resolved links: a folder of links to another disk is fine."""
    path = Path(os.path.normpath(folder / name))
    if os.path.isabs(name) or not path.is_relative_to(os.path.normpath(folder)):
        raise _Skip("a path outside the media folder")
    return path


def _first_file(folder: Path, stems: Iterable[str], suffixes: Sequence[str]) -> Path:
    for stem in stems:
        for suffix in suffixes:
            if (path := _inside(folder, f"{stem}{suffix}")).is_file():
                return path
    raise _Skip("missing file")


def audio_captions_from_csv(table: str | Path, clips: str | Path, out: str | Path) -> BuildReport:
    """Captioned clips from AudioCaps' CSV (``audiocap_id, youtube_id, start_time, caption``); a clip is
    ``CLIPS/YOUTUBE_ID.wav`` (or ``.flac``), or ``CLIPS/AUDIOCAP_ID.wav``, as the common download scripts name them."""
    folder = Path(clips)
    with ManifestWriter(out) as writer, open(table, newline="") as rows:
        for row in csv.DictReader(rows):

            def make(row: dict[str, str] = row) -> dict[str, Any]:
                text = _caption(row.get("caption"))
                stems = [s for s in (row.get("youtube_id"), row.get("audiocap_id")) if s]
                path = _first_file(folder, stems, (".wav", ".flac"))
                return {"caption": text, "audio": writer.medium(Audio.open(path), path.stem)}

            writer.add(make)
    return writer.report


def audio_captions_from_wavcaps(metadata: str | Path, clips: str | Path, out: str | Path) -> BuildReport:
    """Captioned clips from a WavCaps JSON file (``{"data": [{"id": ..., "caption": ...}]}``, one per source);
    a clip is ``CLIPS/ID.flac`` or ``.wav``."""
    folder = Path(clips)
    records = json.loads(Path(metadata).read_text()).get("data", [])
    with ManifestWriter(out) as writer:
        for item in records:

            def make(item: dict[str, Any] = item) -> dict[str, Any]:
                text = _caption(item.get("caption"))
                stem = str(item.get("id", "")).removesuffix(".wav").removesuffix(".flac")
                path = _first_file(folder, [stem], (".flac", ".wav"))
                return {"caption": text, "audio": writer.medium(Audio.open(path), path.stem)}

            writer.add(make)
    return writer.report


def video_captions_from_webvid(table: str | Path, clips: str | Path, out: str | Path) -> BuildReport:
    """Captioned clips from WebVid's CSV (``videoid, name, page_dir``); a clip is ``CLIPS/PAGE_DIR/VIDEOID.mp4``."""
    folder = Path(clips)
    with ManifestWriter(out) as writer, open(table, newline="") as rows:
        for row in csv.DictReader(rows):

            def make(row: dict[str, str] = row) -> dict[str, Any]:
                text = _caption(row.get("name"))
                page = _inside(folder, row.get("page_dir") or "")
                path = _first_file(page, [row.get("videoid") or ""], (".mp4", ".webm"))
                return {"caption": text, "video": writer.medium(Video.open(path), path.stem)}

            writer.add(make)
    return writer.report


# -- captions as conversations -----------------------------------------------------------------------------

ASK = {"image": ("draw", "a picture"), "audio": ("play", "a sound"), "video": ("show", "a clip")}
"""How a caption is asked for as each medium (``draw: a dog on a beach``) and how the medium is named when it is to
be described (``describe a picture``)."""


def conversations_from_captions(captions: str | Path, out: str | Path) -> BuildReport:
    """The LLM-side alignment data from a caption manifest: each captioned medium as two conversations, its caption
    asked for as the medium (``"draw: CAPTION"`` -> the picture) and the medium asked to be described (the picture,
    ``"describe a picture"`` -> the caption). The media stay where the caption manifest keeps them."""
    import os

    source = Path(captions)
    writer = ManifestWriter(out)
    with writer, source.open() as lines:
        for line in lines:

            def make(line: str = line) -> dict[str, Any]:
                try:
                    record = json.loads(line)
                except ValueError:
                    raise _Skip("not a captioned medium") from None
                modality = next((m for m in ASK if isinstance(record, dict) and m in record), None)
                if modality is None or not str(record.get("caption", "")).strip():
                    raise _Skip("not a captioned medium")
                path = os.path.relpath(source.parent / record[modality], writer.root)
                medium = {"type": modality, "path": path}
                verb, noun = ASK[modality]
                ask = {"role": "user", "content": [{"type": "text", "text": f"{verb}: {record['caption']}"}]}
                describe = {"role": "user", "content": [medium, {"type": "text", "text": f"describe {noun}"}]}
                writer.write({"messages": [ask, {"role": "assistant", "content": [medium]}]})
                return {
                    "messages": [
                        describe,
                        {"role": "assistant", "content": [{"type": "text", "text": record["caption"]}]},
                    ]
                }

            writer.add(make)
    return writer.report


# -- edits -------------------------------------------------------------------------------------------------

EDIT_LAYOUTS = {
    "instructpix2pix": ("original_image", "edit_prompt", "edited_image"),
    "magicbrush": ("source_img", "instruction", "target_img"),
}
"""Parquet columns (before, instruction, after) of the instructed-edit data sets, as published."""


def _picture(cell: Any) -> Image:
    """A picture stored in a parquet cell: bytes, or a Hugging Face image struct ``{"bytes", "path"}``."""
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if not data:
        raise _Skip("no picture")
    return Image.from_bytes(data)


def _edit_turn(before: str, instruction: str, after: str) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": [{"type": "image", "path": before}, {"type": "text", "text": instruction}]},
            {"role": "assistant", "content": [{"type": "image", "path": after}]},
        ]
    }


def image_edits_from_parquet(tables: Sequence[str | Path], out: str | Path, *, layout: str) -> BuildReport:
    """Instructed picture edits from InstructPix2Pix's or MagicBrush's parquet files (``layout``), as
    conversations: a picture and the instruction in, the edited picture out."""
    before_column, text_column, after_column = EDIT_LAYOUTS[layout]
    with ManifestWriter(out) as writer:
        for table in tables:
            for row in _parquet_rows(table, [before_column, text_column, after_column]):

                def make(row: dict[str, Any] = row) -> dict[str, Any]:
                    instruction = _caption(row[text_column])
                    before, after = _picture(row[before_column]), _picture(row[after_column])
                    return _edit_turn(writer.medium(before, "before"), instruction, writer.medium(after, "after"))

                writer.add(make)
    return writer.report


def _edit_pair(line: str, root: Path) -> tuple[str, Path, Path]:
    """An edits manifest line's instruction (case and spaces folded) and its two pictures' paths."""
    try:
        record = json.loads(line)
        user, answer = record["messages"][0]["content"], record["messages"][-1]["content"]
        instruction = " ".join(next(i["text"] for i in user if i["type"] == "text").lower().split())
        before = next(i["path"] for i in user if i["type"] == "image")
        return instruction, root / before, root / answer[0]["path"]
    except (KeyError, IndexError, TypeError, AttributeError, StopIteration, ValueError):
        raise _Skip("not an edit record") from None


def in_context_edits(
    edits: str | Path, out: str | Path, *, shots: int = 2, per_group: int = 4, seed: int = 0
) -> BuildReport:
    """The paper's in-context construction from an instructed-edit manifest (:func:`image_edits_from_parquet`'s
    output): edits that share one instruction (compared case- and space-insensitively) are grouped, and each
    conversation shows ``shots`` of a group's pairs as examples, then asks for the same edit on another of its
    pictures, with no instruction in words. Up to ``per_group`` conversations per group; groups with fewer than
    ``shots + 1`` pairs are skipped and counted. The pictures stay where the edits manifest keeps them (each is in
    several conversations: copies would multiply the data set's size)."""
    source = Path(edits)
    groups: dict[str, list[tuple[Path, Path]]] = {}
    rng = random.Random(seed)
    with ManifestWriter(out) as writer, source.open() as lines:
        for line in lines:
            try:
                instruction, before, after = _edit_pair(line, source.parent)
            except _Skip as skipped:
                writer.skip(str(skipped))
                continue
            groups.setdefault(instruction, []).append((before, after))
        for pairs in groups.values():
            if len(pairs) < shots + 1:
                writer.skip(f"fewer than {shots + 1} edits share the instruction")
                continue
            for _ in range(per_group):

                def make(pairs: list[tuple[Path, Path]] = pairs) -> dict[str, Any]:
                    chosen = [p for pair in rng.sample(pairs, shots + 1) for p in pair]
                    if not all(p.is_file() for p in chosen):
                        raise _Skip("missing file")
                    images = [{"type": "image", "path": os.path.relpath(p, writer.root)} for p in chosen]
                    examples = [
                        {"inputs": [b], "outputs": [a]} for b, a in zip(images[0:-2:2], images[1:-2:2], strict=True)
                    ]
                    return {
                        "examples": examples,
                        "messages": [
                            {"role": "user", "content": [images[-2]]},
                            {"role": "assistant", "content": [images[-1]]},
                        ],
                    }

                writer.add(make)
    return writer.report


# -- command line ----------------------------------------------------------------------------------------------


def _paths(patterns: Sequence[str]) -> list[str]:
    found = sorted({p for pattern in patterns for p in (glob.glob(pattern) or [pattern])})
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m codi2_sdk.train.data LAYOUT ...``: build one manifest and print what was written and skipped."""
    parser = argparse.ArgumentParser(prog="python -m codi2_sdk.train.data", description=__doc__.split("\n\n")[0])
    layouts = parser.add_subparsers(dest="layout", required=True)
    shards = layouts.add_parser("webdataset", help="image-caption webdataset shards (LAION, CC3M)")
    shards.add_argument("--shards", nargs="+", required=True, help="tar files or glob patterns")
    table = layouts.add_parser("image-parquet", help="a parquet table of file names and captions, and the pictures")
    table.add_argument("--table", required=True)
    table.add_argument("--images", required=True)
    table.add_argument("--file-column", default="file_name")
    table.add_argument("--caption-column", default="caption")
    audiocaps = layouts.add_parser("audiocaps", help="AudioCaps' CSV and its clips")
    audiocaps.add_argument("--csv", required=True)
    audiocaps.add_argument("--clips", required=True)
    wavcaps = layouts.add_parser("wavcaps", help="a WavCaps JSON file and its clips")
    wavcaps.add_argument("--json", required=True)
    wavcaps.add_argument("--clips", required=True)
    webvid = layouts.add_parser("webvid", help="WebVid's CSV and its clips")
    webvid.add_argument("--csv", required=True)
    webvid.add_argument("--clips", required=True)
    edits = layouts.add_parser("edits", help="InstructPix2Pix or MagicBrush parquet files")
    edits.add_argument("--tables", nargs="+", required=True)
    edits.add_argument("--layout", dest="layout_name", choices=sorted(EDIT_LAYOUTS), required=True)
    chats = layouts.add_parser("conversations", help="LLM-stage conversations from a caption manifest")
    chats.add_argument("--captions", required=True, help="a manifest one of the caption layouts wrote")
    in_context = layouts.add_parser("in-context", help="in-context edit conversations from an edits manifest")
    in_context.add_argument("--edits", required=True, help="the manifest the 'edits' layout wrote")
    in_context.add_argument("--shots", type=whole_number(1), default=2)
    in_context.add_argument("--per-group", type=whole_number(1), default=4)
    in_context.add_argument("--seed", type=whole_number(0), default=0)
    for sub in (shards, table, audiocaps, wavcaps, webvid, edits, chats, in_context):
        sub.add_argument(
            "--out", required=True, help="a folder (its train.jsonl and media/), or a new .jsonl file's path in one"
        )
    args = parser.parse_args(argv)
    try:
        if args.layout == "webdataset":
            report = image_captions_from_webdataset(_paths(args.shards), args.out)
        elif args.layout == "image-parquet":
            report = image_captions_from_parquet(
                args.table, args.images, args.out, file_column=args.file_column, caption_column=args.caption_column
            )
        elif args.layout == "audiocaps":
            report = audio_captions_from_csv(args.csv, args.clips, args.out)
        elif args.layout == "wavcaps":
            report = audio_captions_from_wavcaps(args.json, args.clips, args.out)
        elif args.layout == "webvid":
            report = video_captions_from_webvid(args.csv, args.clips, args.out)
        elif args.layout == "edits":
            report = image_edits_from_parquet(_paths(args.tables), args.out, layout=args.layout_name)
        elif args.layout == "conversations":
            report = conversations_from_captions(args.captions, args.out)
        else:
            report = in_context_edits(args.edits, args.out, shots=args.shots, per_group=args.per_group, seed=args.seed)
    except (Codi2Error, OSError) as exc:
        print(f"codi2 data: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
