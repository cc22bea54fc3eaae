"""The base of the SDK's public pydantic models: a value they refuse raises the SDK's own error."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from typing_extensions import Self

from .errors import invalid_request

__all__ = ["SDKModel"]

_depth: contextvars.ContextVar[int] = contextvars.ContextVar("codi2_validation_depth", default=0)


def _outermost(name: str, validate: Callable[[], Any]) -> Any:
    """Run ``validate``; the outermost model turns pydantic's error into the SDK's (nested ones pass it up, so
    the paths name the whole way down)."""
    token = _depth.set(_depth.get() + 1)
    try:
        return validate()
    except ValidationError as exc:
        if _depth.get() > 1:
            raise
        raise invalid_request(exc, name) from None
    finally:
        _depth.reset(token)


class SDKModel(BaseModel):
    """A pydantic model whose refusals are :class:`~codi2_sdk.errors.InvalidRequestError` (naming each field's
    path, with pydantic's details in ``.errors``), so that every error the SDK raises derives from
    :class:`~codi2_sdk.errors.Codi2Error`. Media that cannot be used still raise ``InvalidMediaError``.

    Validation schemas are built on a model's first use, not at import (``import codi2_sdk`` stays light).
    """

    model_config = ConfigDict(defer_build=True)

    def __init__(self, /, **data: Any) -> None:
        _outermost(type(self).__name__, lambda: super(SDKModel, self).__init__(**data))

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        return _outermost(cls.__name__, lambda: super(SDKModel, cls).model_validate(obj, *args, **kwargs))  # type: ignore[no-any-return]

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        return _outermost(cls.__name__, lambda: super(SDKModel, cls).model_validate_json(json_data, *args, **kwargs))  # type: ignore[no-any-return]
