"""The ``codi2`` command.

codi2 eval --cases 20 [--json] [--tasks text_to_image,...] [--model codi2-mini | --url http://...]
codi2 serve [--model codi2-mini] [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--max-queue 8] [--threads N]
codi2 finetune chats/*.json --eval held-out/*.json --out my-codi2 [--model codi2-mini] [--steps 300]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._args import PORT, whole_number
from .errors import Codi2Error, describe_error

if TYPE_CHECKING:
    from .backends.base import Backend

__all__ = ["main"]


def _backend(args: argparse.Namespace) -> Backend:
    """The model the command talks to: behind ``--url`` (with ``--api-key``), else ``--model`` in-process."""
    if args.url:
        from .backends.remote import RemoteBackend

        return RemoteBackend(args.url, api_key=args.api_key)
    from .backends.local import LocalBackend

    return LocalBackend.from_pretrained(args.model)


def _eval(args: argparse.Namespace) -> int:
    import torch

    from .mini.evaluate import evaluate
    from .mini.tasks import LORA_TASK, TASKS

    torch.set_num_threads(args.threads) if args.threads else None
    backend = _backend(args)
    tasks = args.tasks.split(",") if args.tasks else list(TASKS)
    unknown = set(tasks) - set(TASKS) - {LORA_TASK}
    if unknown:
        print(f"unknown tasks: {', '.join(sorted(unknown))}; known: {', '.join(TASKS)}, {LORA_TASK}", file=sys.stderr)
        return 2
    shots = tuple(int(s) for s in args.shots.split(","))
    result = evaluate(backend, cases=args.cases, tasks=tasks, shots=shots, seed=args.seed, progress=not args.json)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"model {result['model']}, {args.cases} cases per task and split, seed {args.seed}")
    print(f"{'task':34} {'accuracy':>9} {'held-out':>9} {'baseline':>9}")
    for name, row in result["tasks"].items():
        print(
            f"{name:34} {row['accuracy']:9.3f} {row['heldout_items_accuracy']:9.3f} "
            f"{row['baseline']:9.3f} ({row['baseline_kind']})"
        )
    audio = {name: row["audio_metrics"] for name, row in result["tasks"].items() if "audio_metrics" in row}
    if audio:
        print("\naudio edits (answer / second render of the target / unchanged query):")
        print(f"{'task':34} {'LSD':>20} {'KL':>20} {'FD':>26}")
        for name, m in audio.items():
            cells = [
                f"{m[k]:.2f} / {m[k + '_render_floor']:.2f} / {m[k + '_copy_query']:.2f}" for k in ("lsd", "kl", "fd")
            ]
            print(f"{name:34} {cells[0]:>20} {cells[1]:>20} {cells[2]:>26}")
    subjects = {name: row for name, row in result["tasks"].items() if "subject_metrics" in row}
    if subjects:
        print("\nsubject-driven (answer / render of the asked picture / first reference unchanged):")
        print(f"{'task':34} {'DINO-style':>20} {'CLIP-I-style':>20} {'CLIP-T-style':>20}")
        for name, row in subjects.items():
            for split in ("subject_metrics", "heldout_subject_metrics"):
                m = row.get(split)
                if m:
                    cells = [
                        f"{m[k]:.3f} / {m[k + '_render_floor']:.3f} / {m[k + '_copy_query']:.3f}"
                        for k in ("dino", "clip_i", "clip_t")
                    ]
                    label = name + (" (held-out)" if split.startswith("heldout") else "")
                    print(f"{label:34} {cells[0]:>20} {cells[1]:>20} {cells[2]:>20}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    index = run_demo(args.out, seed=args.seed)
    print(f"wrote {index} (open it in a browser)")
    return 0


def _chat(args: argparse.Namespace) -> int:
    from .chat import chat

    backend = _backend(args)
    chat(backend, out=args.out, seed=args.seed)
    return 0


def _mcp(args: argparse.Namespace) -> int:
    import asyncio

    from .agents.mcp_server import build_mcp_server, run_stdio
    from .agents.store import MediaStore

    backend = _backend(args)
    store = MediaStore(args.media_dir, allowed_roots=args.allowed_root or [])
    server = build_mcp_server(backend, store=store)
    if args.http:
        import uvicorn

        uvicorn.run(server.streamable_http_app(host=args.host), host=args.host, port=args.port, log_level="warning")
    else:
        asyncio.run(run_stdio(server))
    return 0


def _ui(args: argparse.Namespace) -> int:
    import uvicorn
    from fastapi import FastAPI

    from .ui import mount_ui

    app = mount_ui(FastAPI(), _backend(args), path="/", api_key=args.page_key)
    print(f"the chat page is at http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _add_eval(sub: Any) -> None:
    parser = sub.add_parser("eval", help="score a model on the codi2-mini world's tasks")
    parser.add_argument(
        "--cases", type=whole_number(1), default=20, help="cases per task and split (trained / held-out items)"
    )
    parser.add_argument("--tasks", help="comma-separated task names (default: all)")
    parser.add_argument("--shots", default="1,2,3", help="example counts for the in-context tasks")
    parser.add_argument("--seed", type=whole_number(0), default=0)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.add_argument(
        "--model",
        default="codi2-mini",
        help="checkpoint: shipped name, folder, or repo id in the local Hugging Face cache",
    )
    parser.add_argument("--url", help="evaluate a model behind a codi2 server instead")
    parser.add_argument("--api-key", help="the server's API key")
    parser.add_argument("--threads", type=whole_number(1), help="torch CPU threads")
    parser.set_defaults(run=_eval)


def _add_demo(sub: Any) -> None:
    parser = sub.add_parser("demo", help="show what codi2-mini does: a page of conversations with pictures and sounds")
    parser.add_argument("--out", default="codi2-demo", help="folder for index.html and the media (default codi2-demo)")
    parser.add_argument("--seed", type=whole_number(0), default=0)
    parser.set_defaults(run=_demo)


def _add_chat(sub: Any) -> None:
    parser = sub.add_parser(
        "chat", help="chat in the terminal: /image PATH, /audio PATH, /video PATH, /example IN OUT, /save, /undo"
    )
    parser.add_argument(
        "--model",
        default="codi2-mini",
        help="checkpoint: shipped name, folder, or repo id in the local Hugging Face cache",
    )
    parser.add_argument("--url", help="chat with a model behind a codi2 server instead")
    parser.add_argument("--api-key", help="the server's API key")
    parser.add_argument(
        "--out", default="codi2-chat", help="folder for the pictures, sounds and videos the model makes"
    )
    parser.add_argument("--seed", type=whole_number(0), help="a seed for reproducible answers")
    parser.set_defaults(run=_chat)


def _add_mcp(sub: Any) -> None:
    parser = sub.add_parser("mcp", help="the agent tools as an MCP server (stdio by default)")
    parser.add_argument(
        "--model",
        default="codi2-mini",
        help="checkpoint: shipped name, folder, or repo id in the local Hugging Face cache",
    )
    parser.add_argument("--url", help="use a model behind a codi2 server instead")
    parser.add_argument("--api-key", help="the server's API key")
    parser.add_argument("--media-dir", help="also write every medium the tools make into this folder")
    parser.add_argument(
        "--allowed-root", action="append", help="a folder whose files the tools may read by path (repeatable)"
    )
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp instead of stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=PORT, default=8765)
    parser.set_defaults(run=_mcp)


def _add_ui(sub: Any) -> None:
    parser = sub.add_parser("ui", help="the web chat page (Gradio), on the in-process model or a server's")
    parser.add_argument(
        "--model",
        default="codi2-mini",
        help="checkpoint: shipped name, folder, or repo id in the local Hugging Face cache",
    )
    parser.add_argument("--url", help="chat with a model behind a codi2 server instead")
    parser.add_argument("--api-key", help="the server's API key (with --url)")
    parser.add_argument("--page-key", help="ask visitors of the page for this key")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=PORT, default=7860)
    parser.set_defaults(run=_ui)


def _finetune(args: argparse.Namespace) -> int:
    from .train.command import finetune_command

    return finetune_command(args)


def _add_finetune(sub: Any) -> None:
    parser = sub.add_parser("finetune", help="adapt a model to saved conversations (a LoRA), with held-out loss")
    parser.add_argument("data", nargs="+", help="saved conversations (.json) or manifests (.jsonl) to learn from")
    parser.add_argument("--out", required=True, help="a new folder for the finetuned model")
    parser.add_argument(
        "--model",
        default="codi2-mini",
        help="checkpoint to start from: shipped name, folder, or repo id in the HF cache",
    )
    parser.add_argument("--eval", nargs="+", default=[], help="held-out conversations or manifests, not trained on")
    parser.add_argument("--eval-every", type=whole_number(1), default=50, help="steps between held-out evaluations")
    parser.add_argument(
        "--keep-best", metavar="DIR", help="also save the model of lowest held-out loss here as the run goes"
    )
    parser.add_argument("--steps", type=whole_number(1), default=300)
    parser.add_argument("--batch-size", type=whole_number(1), default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument(
        "--lora-rank", type=whole_number(1), default=8, help="the adapter's rank, for a model without one"
    )
    parser.add_argument("--checkpoint-dir", help="keep a resumable state here; a run given the same folder resumes")
    parser.add_argument("--seed", type=whole_number(0), default=0)
    parser.add_argument("--threads", type=whole_number(1), help="torch CPU threads")
    parser.set_defaults(run=_finetune)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``codi2`` command; returns the exit status."""
    from . import __version__
    from .server.command import add_serve_arguments, serve

    parser = argparse.ArgumentParser(prog="codi2", description="CoDi-2 models from the command line.")
    parser.add_argument("--version", action="version", version=f"codi2-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_eval, _add_demo, _add_chat, _add_mcp, _add_ui, _add_finetune):
        add(sub)
    serving = sub.add_parser("serve", help="serve a model over HTTP (and the chat page at /ui)")
    add_serve_arguments(serving)
    serving.set_defaults(run=serve)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (Codi2Error, OSError) as exc:  # the user's to mend (a path, a server, a flag): no traceback
        parser.exit(1, f"codi2 {args.command}: error: {describe_error(exc)}\n")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
