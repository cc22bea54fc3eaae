"""Shared by the benchmarks: load a model and serve it on a free loopback port in a thread."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import uvicorn

from codi2_sdk.backends.base import Backend
from codi2_sdk.server import ServerSettings, create_app


@contextmanager
def serve(backend: Backend | Callable[[], Backend] | None = None, **settings: object) -> Iterator[str]:
    """Serve ``backend`` (or what a loader returns, loaded in the server's loader thread; by default the model
    that ``settings`` name, loaded as ``codi2 serve`` loads it) on 127.0.0.1 at a free port; yields the base URL
    once the model is ready."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server_settings = ServerSettings(**settings)
    app = create_app(backend or server_settings.load_backend, server_settings)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started or app.state.model.backend is None:
        if app.state.model.load_error is not None:
            raise RuntimeError(f"the model did not load: {app.state.model.load_error}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
