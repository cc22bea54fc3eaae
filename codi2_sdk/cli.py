"""The ``codi2`` command.

codi2 eval --cases 20 [--json] [--tasks text_to_image,...] [--model codi2-mini | --url http://...]
codi2 serve [--model codi2-mini] [--host 127.0.0.1] [--port 8000] [--api-key KEY] [--max-queue 8] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

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

    from .tools.mcp_server import build_mcp_server, run_stdio
    from .tools.store import MediaStore

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


def _serve(args: argparse.Namespace) -> int:
    from .server import ServerSettings, run

    overrides = {
        key: value
        for key, value in {
            "model": args.model,
            "host": args.host,
            "port": args.port,
            "api_key": args.api_key,
            "max_queue": args.max_queue,
            "max_body_bytes": args.max_body_mb * 1024 * 1024 if args.max_body_mb else None,
            "threads": args.threads,
            "processes_per_machine": args.processes_per_machine,
            "cache_mb": args.cache_mb,
            "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms,
            "ui": False if args.no_ui else None,
        }.items()
        if value is not None
    }
    if args.replicas and args.replicas > 1:
        from .server.ray import serve_on_ray

        overrides.setdefault("processes_per_machine", args.replicas)
        settings = ServerSettings(**overrides)
        serve_on_ray(settings, replicas=args.replicas, threads_per_replica=settings.torch_threads())
        return 0
    run(ServerSettings(**overrides))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``codi2`` command; returns the exit status."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="codi2", description="CoDi-2 models from the command line.")
    parser.add_argument("--version", action="version", version=f"codi2-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("eval", help="score a model on the codi2-mini world's tasks")
    ev.add_argument("--cases", type=int, default=20, help="cases per task and split (trained / held-out items)")
    ev.add_argument("--tasks", help="comma-separated task names (default: all)")
    ev.add_argument("--shots", default="1,2,3", help="example counts for the in-context tasks")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--json", action="store_true", help="print the full result as JSON")
    ev.add_argument("--model", default="codi2-mini", help="checkpoint name or folder (local)")
    ev.add_argument("--url", help="evaluate a model behind a codi2 server instead")
    ev.add_argument("--api-key", help="the server's API key")
    ev.add_argument("--threads", type=int, help="torch CPU threads")
    ev.set_defaults(run=_eval)

    dm = sub.add_parser("demo", help="show what codi2-mini does: a page of conversations with pictures and sounds")
    dm.add_argument("--out", default="codi2-demo", help="folder for index.html and the media (default codi2-demo)")
    dm.add_argument("--seed", type=int, default=0)
    dm.set_defaults(run=_demo)

    ch = sub.add_parser("chat", help="chat in the terminal: /image PATH, /audio PATH, /example IN OUT, /save, /undo")
    ch.add_argument("--model", default="codi2-mini", help="checkpoint name or folder (local)")
    ch.add_argument("--url", help="chat with a model behind a codi2 server instead")
    ch.add_argument("--api-key", help="the server's API key")
    ch.add_argument("--out", default="codi2-chat", help="folder for the pictures and clips the model makes")
    ch.add_argument("--seed", type=int, help="a seed for reproducible answers")
    ch.set_defaults(run=_chat)

    mc = sub.add_parser("mcp", help="the agent tools as an MCP server (stdio by default)")
    mc.add_argument("--model", default="codi2-mini", help="checkpoint name or folder (local)")
    mc.add_argument("--url", help="use a model behind a codi2 server instead")
    mc.add_argument("--api-key", help="the server's API key")
    mc.add_argument("--media-dir", help="also write every medium the tools make into this folder")
    mc.add_argument(
        "--allowed-root", action="append", help="a folder whose files the tools may read by path (repeatable)"
    )
    mc.add_argument("--http", action="store_true", help="serve streamable HTTP at /mcp instead of stdio")
    mc.add_argument("--host", default="127.0.0.1")
    mc.add_argument("--port", type=int, default=8765)
    mc.set_defaults(run=_mcp)

    ui = sub.add_parser("ui", help="the web chat page (Gradio), on the in-process model or a server's")
    ui.add_argument("--model", default="codi2-mini", help="checkpoint name or folder (local)")
    ui.add_argument("--url", help="chat with a model behind a codi2 server instead")
    ui.add_argument("--api-key", help="the server's API key (with --url)")
    ui.add_argument("--page-key", help="ask visitors of the page for this key")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=int, default=7860)
    ui.set_defaults(run=_ui)

    sv = sub.add_parser("serve", help="serve a model over HTTP (and the chat page at /ui)")
    sv.add_argument("--model", help="checkpoint name or folder (default codi2-mini)")
    sv.add_argument("--host", help="bind address (default 127.0.0.1: this machine only)")
    sv.add_argument("--port", type=int, help="port (default 8000)")
    sv.add_argument("--api-key", help="require this bearer key (or set CODI2_API_KEY)")
    sv.add_argument("--max-queue", type=int, help="requests admitted at once; more get 429 (default 8)")
    sv.add_argument("--max-body-mb", type=int, help="largest request body in MiB (default 64)")
    sv.add_argument("--threads", type=int, help="torch CPU threads (default: OMP_NUM_THREADS, else CPUs / processes)")
    sv.add_argument("--processes-per-machine", type=int, help="model processes sharing this machine's CPUs (default 1)")
    sv.add_argument("--cache-mb", type=float, help="memory for recent prompts' KV caches (default 256; 0: off)")
    sv.add_argument(
        "--max-batch-size",
        type=int,
        help="batch the LLM and diffusion steps of up to N concurrent requests (default 1: off)",
    )
    sv.add_argument(
        "--max-wait-ms", type=float, help="with batching, the longest a step waits for a busy reader (default 10)"
    )
    sv.add_argument(
        "--replicas", type=int, help="serve N model replicas on Ray Serve behind its HTTP proxy (needs codi2-sdk[ray])"
    )
    sv.add_argument("--no-ui", action="store_true", help="do not serve the chat page at /ui")
    sv.set_defaults(run=_serve)

    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
