"""A real uvicorn server on a free loopback port, run in a thread for the length of a test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from codi2_sdk.server import ServerSettings, create_app


@contextmanager
def running_server(backend, wrap=None, **settings) -> Iterator[str]:
    """Serve ``backend`` on 127.0.0.1 at a free port (its app wrapped by ``wrap``, an ASGI middleware, if given);
    yields the base URL."""
    app = create_app(backend, ServerSettings(**settings))
    app = wrap(app) if wrap is not None else app
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
