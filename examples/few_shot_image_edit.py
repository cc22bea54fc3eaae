#!/usr/bin/env python
"""Few-shot image editing: show the model before/after pairs of pictures, then give it a new picture.

The edit (by default "make it blue") is never said in words; the model infers it from the examples, as
CoDi-2 does. Writes the inputs and the answer to --out and says whether the answer is right: the change
the pairs show, applied to the query, read back with the mini world's probe. Exits 1 if it is wrong.

    python examples/few_shot_image_edit.py
    python examples/few_shot_image_edit.py --shots 3 --query "a small cyan circle on the right"
    python examples/few_shot_image_edit.py --example "a large red square on the left" "a small red square on the left" \\
        --example "a large yellow circle on the right" "a small yellow circle on the right"   # "make it small"

Pictures are named as the mini world's samples are: "a <small|large> <colour> <shape> <on the left|in the
center|on the right>".
"""

import argparse
import sys
from pathlib import Path

from codi2_sdk import Codi2Error, Conversation, InvalidRequestError, LocalBackend, RemoteBackend, samples
from codi2_sdk.mini.probes import probe_picture
from codi2_sdk.mini.tasks import edit_shown, parse_picture

PAIRS = [  # "make it blue", shown three times
    ("a large red square on the left", "a large blue square on the left"),
    ("a small yellow circle on the right", "a small blue circle on the right"),
    ("a large magenta diamond in the center", "a large blue diamond in the center"),
]

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--example", nargs=2, action="append", metavar=("BEFORE", "AFTER"), help="a pair (repeat it)")
parser.add_argument("--shots", type=int, default=2, choices=(1, 2, 3), help="how many default pairs (default 2)")
parser.add_argument("--query", default="a large green triangle in the center", help="the picture to edit")
parser.add_argument("--seed", type=int, default=0, help="the answer's seed (default 0)")
parser.add_argument("--temperature", type=float, default=0.0, help="0 decodes greedily (default)")
parser.add_argument(
    "--model", default="codi2-mini", help="checkpoint: shipped name, folder, or repo id in the HF cache"
)
parser.add_argument("--url", help="a codi2 server's address, instead of --model in this process")
parser.add_argument("--api-key", help="the server's key (with --url)")
parser.add_argument("--out", type=Path, default=Path("out/few_shot_image_edit"), help="where the pictures go")


def main(args: argparse.Namespace) -> int:
    pairs = args.example or PAIRS[: args.shots]

    try:
        shown = [(samples.picture(before, seed=1), samples.picture(after, seed=2)) for before, after in pairs]
        query = samples.picture(args.query, seed=3)
    except InvalidRequestError as exc:
        parser.error(str(exc))  # a description the mini world cannot draw

    backend = RemoteBackend(args.url, api_key=args.api_key) if args.url else LocalBackend.from_pretrained(args.model)
    conv = Conversation(backend)
    for before_picture, after_picture in shown:
        conv.add_example(inputs=before_picture, outputs=after_picture)
    config = {"seed": args.seed, "output_modality": "image", "text": {"temperature": args.temperature}}
    answer = conv.send(query, config=config)

    args.out.mkdir(parents=True, exist_ok=True)
    for i, (before_picture, after_picture) in enumerate(shown, 1):
        before_picture.save(args.out / f"example{i}_before.png")
        after_picture.save(args.out / f"example{i}_after.png")
    query.save(args.out / "query.png")
    edited = answer.images[0]
    edited.save(args.out / "answer.png")

    expected = edit_shown([(parse_picture(b), parse_picture(a)) for b, a in pairs], parse_picture(args.query))
    seen = probe_picture(edited.to_pil())
    print(f"query: {args.query}")
    said = seen.describe() if seen else "nothing drawn"
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
