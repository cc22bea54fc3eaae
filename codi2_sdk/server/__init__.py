"""The CoDi-2 HTTP server: any Backend behind the JSON protocol of :mod:`codi2_sdk._protocol`.

Start it with ``codi2 serve`` (or ``python -m codi2_sdk.server``); embed it with :func:`create_app`.
"""

from .app import create_app
from .settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "run"]


def run(settings: ServerSettings | None = None) -> None:
    """Load the model named in ``settings`` (in the background) and serve it with uvicorn until stopped."""
    import torch
    import uvicorn

    settings = settings or ServerSettings()
    torch.set_num_threads(settings.torch_threads())
    app = create_app(settings.load_backend, settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
