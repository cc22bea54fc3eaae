"""``codi2 serve`` and ``python -m codi2_sdk.server``: the server's command-line options and how they start it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .._args import PORT, whole_number
from ..errors import Codi2Error, describe_error

__all__ = ["add_serve_arguments", "main", "serve"]


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``codi2 serve``; each overrides the matching :class:`~codi2_sdk.server.ServerSettings` field."""
    parser.add_argument(
        "--model", help="checkpoint: shipped name, folder, or repo id in the HF cache (default codi2-mini)"
    )
    parser.add_argument("--host", help="bind address (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=PORT, help="port (default 8000)")
    parser.add_argument("--api-key", help="require this bearer key (or set CODI2_API_KEY)")
    parser.add_argument("--max-queue", type=whole_number(1), help="requests admitted at once; more get 429 (default 8)")
    parser.add_argument("--max-body-mb", type=whole_number(1), help="largest request body in MiB (default 64)")
    parser.add_argument(
        "--threads", type=whole_number(1), help="torch CPU threads (default: OMP_NUM_THREADS, else CPUs / processes)"
    )
    parser.add_argument(
        "--processes-per-machine", type=whole_number(1), help="model processes sharing this machine's CPUs (default 1)"
    )
    parser.add_argument("--cache-mb", type=float, help="memory for recent prompts' KV caches (default 256; 0: off)")
    parser.add_argument(
        "--max-batch-size",
        type=whole_number(1),
        help="batch the LLM and diffusion steps of up to N concurrent requests (default 1: off)",
    )
    parser.add_argument(
        "--max-wait-ms", type=float, help="with batching, the longest a step waits for a busy reader (default 10)"
    )
    parser.add_argument(
        "--replicas",
        type=whole_number(1),
        help="serve N model replicas on Ray Serve behind its HTTP proxy (needs codi2-sdk[ray])",
    )
    parser.add_argument(
        "--compile", action="store_true", help="decode compiled over a static cache (the first request compiles)"
    )
    parser.add_argument(
        "--compile-decoders",
        action="store_true",
        help="the decoders' UNets through torch.compile (the first decode of each size compiles)",
    )
    parser.add_argument(
        "--channels-last", action="store_true", help="the decoders' convolutions channels-last (for GPUs)"
    )
    parser.add_argument(
        "--merge-lora", action="store_true", help="fold the checkpoint's LoRA into the LLM's weights (faster decoding)"
    )
    parser.add_argument("--no-ui", action="store_true", help="do not serve the chat page at /ui")


def serve(args: argparse.Namespace) -> int:
    """Start the server the parsed options describe (on Ray Serve with ``--replicas`` above 1)."""
    from ..model.modeling import resolve_checkpoint
    from . import ServerSettings, run

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
            "merge_lora": True if args.merge_lora else None,
            "compile": True if args.compile else None,
            "compile_decoders": True if args.compile_decoders else None,
            "channels_last": True if args.channels_last else None,
        }.items()
        if value is not None
    }
    on_ray = bool(args.replicas and args.replicas > 1)
    if on_ray:
        overrides.setdefault("processes_per_machine", args.replicas)
    settings = ServerSettings(**overrides)
    # The model loads after the server is up (its health route says how loading goes); a mistyped --model is
    # refused here instead, before anything starts.
    resolve_checkpoint(settings.model)
    if on_ray:
        from .ray import serve_on_ray

        serve_on_ray(settings, replicas=args.replicas, threads_per_replica=settings.torch_threads())
        return 0
    run(settings)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` as ``codi2 serve``'s options and serve."""
    parser = argparse.ArgumentParser(prog="python -m codi2_sdk.server", description="Serve a CoDi-2 model over HTTP.")
    add_serve_arguments(parser)
    try:
        return serve(parser.parse_args(argv))
    except (Codi2Error, OSError) as exc:
        parser.exit(1, f"{parser.prog}: error: {describe_error(exc)}\n")


if __name__ == "__main__":
    sys.exit(main())
