#!/usr/bin/env python
"""Subject-driven generation: show the model pictures of an object it has never seen, then ask for
"this object" at a new size and place.

The default object's look (a blue diamond with a checker painted on it) is named by no word and was held out of
every training stage of codi2-mini; the model keeps it from the reference pictures alone, zero-shot, as CoDi-2 does
on DreamBench. Writes the pictures to --out and says whether the answer is right: the asked size and place and the
object's shape and colour read back with the mini world's probe, and the subject kept (its DINO- and CLIP-I-style
similarity to the references at least 0.9 of what an exact render of the asked picture scores). Exits 1 if not.

    python examples/subject_driven.py
    python examples/subject_driven.py --mark ring --size large --position left
    python examples/subject_driven.py --reference "a large red circle on the right" --mark spot --position center

References are named as the mini world's samples are ("a <small|large> <colour> <shape> <on the left|in the
center|on the right>"), all of one shape and colour; --mark paints the subject's look on each.
"""

import argparse
import functools
import sys
from pathlib import Path

from codi2_sdk import Codi2Error, Conversation, InvalidRequestError, LocalBackend, RemoteBackend, samples
from codi2_sdk.metrics import subject_similarity
from codi2_sdk.mini.evaluate import mini_image_features
from codi2_sdk.mini.probes import probe_picture
from codi2_sdk.mini.tasks import parse_picture
from codi2_sdk.mini.world import MARKS, POSITIONS, SIZES, Picture

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--reference", action="append", help="a picture of the subject (repeat it; default: two)")
parser.add_argument("--mark", default="checker", choices=MARKS, help="the subject's look (default checker)")
parser.add_argument("--size", default="large", choices=list(SIZES), help="the size asked for (default large)")
parser.add_argument("--position", default="right", choices=list(POSITIONS), help="the place asked (default right)")
parser.add_argument("--seed", type=int, default=0, help="the answer's seed (default 0)")
parser.add_argument(
    "--model", default="codi2-mini", help="checkpoint: shipped name, folder, or repo id in the HF cache"
)
parser.add_argument("--url", help="a codi2 server's address, instead of --model in this process")
parser.add_argument("--api-key", help="the server's key (with --url)")
parser.add_argument("--out", type=Path, default=Path("out/subject_driven"), help="where the pictures go")


def main(args: argparse.Namespace) -> int:
    descriptions = args.reference or ["a small blue diamond on the left", "a large blue diamond in the center"]

    try:
        references = [samples.picture(d, mark=args.mark, seed=i) for i, d in enumerate(descriptions, 1)]
    except InvalidRequestError as exc:
        parser.error(str(exc))  # a description the mini world cannot draw
    looks = {(item.shape, item.colour) for item in map(parse_picture, descriptions) if item is not None}
    if len(looks) != 1:
        parser.error("the references must show one object: the same shape and colour in each")
    (shape, colour), where = looks.pop(), "in the center" if args.position == "center" else f"on the {args.position}"

    backend = RemoteBackend(args.url, api_key=args.api_key) if args.url else LocalBackend.from_pretrained(args.model)
    conv = Conversation(backend)
    answer = conv.send(*references, f"draw this object {args.size} {where}.", config={"seed": args.seed})

    args.out.mkdir(parents=True, exist_ok=True)
    for i, picture in enumerate(references, 1):
        picture.save(args.out / f"reference{i}.png")
    drawn = answer.images[0]
    drawn.save(args.out / "answer.png")

    expected = Picture(shape, colour, args.size, args.position)
    seen = probe_picture(drawn.to_pil())
    exact = samples.picture(expected.describe(), mark=args.mark, seed=len(references) + 1)  # what a right answer is
    kept = {}
    for name, kind in (("DINO-style", "texture"), ("CLIP-I-style", "pooled")):
        embed = functools.partial(mini_image_features, kind=kind)
        score, floor = (subject_similarity(embed, [p], [references]) for p in (drawn, exact))
        kept[name] = score / floor
        print(
            f"{name} similarity to the references: {score:.3f} (an exact render: {floor:.3f}; ratio {score / floor:.2f})"
        )
    print(
        f"answer: {seen.describe() if seen else 'nothing drawn'} ({'right' if seen == expected else 'wrong'}; asked for "
        f"{expected.describe()}, with its {args.mark})"
    )
    kept_look = all(ratio >= 0.9 for ratio in kept.values())
    print(f"subject kept: {'yes' if kept_look else 'no'} (each similarity ratio at least 0.9)")
    print(f"files in {args.out}/")
    right = seen == expected and kept_look
    return 0 if right else 1  # a wrong answer fails the run (the tests run every example)


if __name__ == "__main__":
    try:
        sys.exit(main(parser.parse_args()))
    except Codi2Error as exc:  # a server that is down, a checkpoint that is not there: one line, not a traceback
        sys.exit(f"{parser.prog}: error: {exc}")
