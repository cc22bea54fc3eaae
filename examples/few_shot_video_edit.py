#!/usr/bin/env python
"""Few-shot video editing: show the model before/after pairs of clips, then give it a new clip.

The edit (by default "make it green") is never said in words; the model infers it from the example clips, as
CoDi-2 infers an edit from example pairs. Writes the clips to --out and says whether the answer is right: the
change the pairs show, applied to the query, read back with the mini world's clip probe. Exits 1 if it is wrong.

    python examples/few_shot_video_edit.py
    python examples/few_shot_video_edit.py --query "a large red circle moving to the right"
    python examples/few_shot_video_edit.py --example "a large red square moving to the right" \\
        "a large red circle moving to the right" --example "a small yellow diamond moving to the left" \\
        "a small yellow circle moving to the left"   # "make it a circle"

Clips are named as the mini world's samples are: "a <size> <colour> <shape> moving to the <left|right>" or
"a <colour> <shape> <growing|shrinking>".
"""

import argparse
import sys
from pathlib import Path

from codi2_sdk import Codi2Error, Conversation, InvalidRequestError, LocalBackend, RemoteBackend, samples
from codi2_sdk.mini.clips import probe_clip
from codi2_sdk.mini.tasks import edit_shown, parse_clip

PAIRS = [  # "make it green", shown three times
    ("a large red square moving to the right", "a large green square moving to the right"),
    ("a yellow circle growing", "a green circle growing"),
    ("a small magenta diamond moving to the left", "a small green diamond moving to the left"),
]

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--example", nargs=2, action="append", metavar=("BEFORE", "AFTER"), help="a pair (repeat it)")
parser.add_argument("--shots", type=int, default=2, choices=(1, 2, 3), help="how many default pairs (default 2)")
parser.add_argument("--query", default="a small blue triangle moving to the left", help="the clip to edit")
parser.add_argument("--seed", type=int, default=0, help="the answer's seed (default 0)")
parser.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily (default)")
parser.add_argument(
    "--model", default="codi2-mini", help="checkpoint: shipped name, folder, or repo id in the HF cache"
)
parser.add_argument("--url", help="a codi2 server's address, instead of --model in this process")
parser.add_argument("--api-key", help="the server's key (with --url)")
parser.add_argument("--out", type=Path, default=Path("out/few_shot_video_edit"), help="where the clips go")


def main(args: argparse.Namespace) -> int:
    pairs = args.example or PAIRS[: args.shots]

    try:
        shown = [(samples.clip(before, seed=1), samples.clip(after, seed=2)) for before, after in pairs]
        query = samples.clip(args.query, seed=5)
    except InvalidRequestError as exc:
        parser.error(str(exc))  # a description the mini world cannot show

    backend = RemoteBackend(args.url, api_key=args.api_key) if args.url else LocalBackend.from_pretrained(args.model)
    conv = Conversation(backend)
    for before_clip, after_clip in shown:
        conv.add_example(inputs=before_clip, outputs=after_clip)
    config = {"seed": args.seed, "output_modality": "video", "text": {"temperature": args.temperature}}
    answer = conv.send(query, config=config)

    args.out.mkdir(parents=True, exist_ok=True)
    for i, (before_clip, after_clip) in enumerate(shown, 1):
        before_clip.save(args.out / f"example{i}_before.mp4")
        after_clip.save(args.out / f"example{i}_after.mp4")
    query.save(args.out / "query.mp4")
    edited = answer.videos[0]
    edited.save(args.out / "answer.mp4")

    expected = edit_shown([(parse_clip(b), parse_clip(a)) for b, a in pairs], parse_clip(args.query))
    seen = probe_clip(edited.to_frames())
    print(f"query: {args.query}")
    said = seen.describe() if seen else "nothing shown"
    if expected is None:
        print(f"answer: {said} (not checked: the pairs show no one edit)")
    else:
        print(f"answer: {said} ({'right' if seen == expected else 'wrong'}; expected {expected.describe()})")
    print(f"files in {args.out}/")
    return 0 if expected is None or seen == expected else 1  # a wrong answer fails the run (the tests run it)


if __name__ == "__main__":
    try:
        sys.exit(main(parser.parse_args()))
    except Codi2Error as exc:  # a server that is down, a checkpoint that is not there: one line, not a traceback
        sys.exit(f"{parser.prog}: error: {exc}")
