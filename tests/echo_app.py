"""A server app over a backend that says how many images it got (run by tests in its own process)."""

from codi2_sdk import Capabilities
from codi2_sdk.server import create_app
from codi2_sdk.testing import FunctionBackend

app = create_app(
    FunctionBackend(lambda r: f"{len(r.messages[-1].images)} images", capabilities=Capabilities(model="echo"))
)
