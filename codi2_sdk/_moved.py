"""Old import paths of renamed modules, kept for one release: importing one gives the module under its new name
(the same object) with a DeprecationWarning that names the new path.

Renamed when the package's names were made to say what each part is: the agent tools (``codi2_sdk.tools`` ->
:mod:`codi2_sdk.agents`, apart from the repository's ``tools/`` scripts), the content converters
(``codi2_sdk.integrations`` -> :mod:`codi2_sdk.formats`), the paper's metrics (``codi2_sdk.evaluation`` ->
:mod:`codi2_sdk.metrics`), the exchange types (``codi2_sdk.types`` -> :mod:`codi2_sdk.events`), and the model's
modules, split by scale (see docs/model.md). Modules that were split in two (``model.encoders``,
``model.decoders``) have no alias: their names are in :mod:`codi2_sdk.model` and the new modules.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED"]

_M = "codi2_sdk.model"
MOVED: dict[str, str] = {
    "codi2_sdk.tools": "codi2_sdk.agents",
    "codi2_sdk.tools.langchain": "codi2_sdk.agents.langchain_tools",
    "codi2_sdk.tools.chat_model": "codi2_sdk.agents.chat_model",
    "codi2_sdk.tools.mcp_server": "codi2_sdk.agents.mcp_server",
    "codi2_sdk.tools.store": "codi2_sdk.agents.store",
    "codi2_sdk.integrations": "codi2_sdk.formats",
    "codi2_sdk.integrations.langchain": "codi2_sdk.formats.langchain_blocks",
    "codi2_sdk.integrations.mcp": "codi2_sdk.formats.mcp_content",
    "codi2_sdk.integrations.openai": "codi2_sdk.formats.openai_parts",
    "codi2_sdk.evaluation": "codi2_sdk.metrics",
    "codi2_sdk.evaluation.audio": "codi2_sdk.metrics.audio",
    "codi2_sdk.evaluation.image": "codi2_sdk.metrics.image",
    "codi2_sdk.evaluation.dreambench": "codi2_sdk.metrics.dreambench",
    "codi2_sdk.types": "codi2_sdk.events",
    "codi2_sdk.mini.config": "codi2_sdk.mini.architecture",
    f"{_M}.config": f"{_M}.architecture",
    f"{_M}.registry": f"{_M}.parts",
    f"{_M}.tokenizer": f"{_M}.prompt",
    f"{_M}.whitening": f"{_M}.modeling",
    f"{_M}.audio_features": f"{_M}.media_io",
    f"{_M}.batching": f"{_M}.runtime.batching",
    f"{_M}.prefix_cache": f"{_M}.runtime.prefix_cache",
    f"{_M}.unclip": f"{_M}.fullscale.unclip",
    f"{_M}.audioldm2": f"{_M}.fullscale.audioldm2",
    f"{_M}.zeroscope": f"{_M}.fullscale.zeroscope",
    f"{_M}.pipelines": f"{_M}.fullscale.pipelines",
    f"{_M}.assembly": f"{_M}.fullscale.assembly",
    f"{_M}.imagebind_audio": f"{_M}.imagebind.audio",
    f"{_M}.imagebind_video": f"{_M}.imagebind.video",
    f"{_M}.twins": "codi2_sdk.testing.twins",
}
"""Old module name -> new module name."""


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} was renamed {self.new}; the old name goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.new)  # registered under the old name too, as the same module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the module under its new name is already executed."""


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        return importlib.util.spec_from_loader(fullname, _MovedLoader(new)) if new is not None else None


if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedFinder())  # before the path finder, which would load a second copy
