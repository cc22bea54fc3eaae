"""The CoDi-2 HTTP server: any Backend behind the JSON protocol of :mod:`codi2_sdk._protocol`.

Start it with ``codi2 serve`` (or ``python -m codi2_sdk.server``); embed it with :func:`create_app`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import create_app
    from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "run"]


def __getattr__(name: str) -> Any:
    # Imported when first used: the server's libraries (FastAPI, pydantic-settings) come with the server extra, and
    # the codi2 command reads its serve options from this package without them.
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServerSettings":
        from .settings import ServerSettings

        return ServerSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run(settings: ServerSettings | None = None) -> None:
    """Load the model named in ``settings`` (in the background) and serve it with uvicorn until stopped."""
    import torch
    import uvicorn

    from .app import create_app
    from .settings import ServerSettings

    settings = settings or ServerSettings()
    torch.set_num_threads(settings.torch_threads())
    app = create_app(settings.load_backend, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
