"""The base of the SDK's public pydantic models: a value they refuse raises the SDK's own error."""

from __future__ import annotations

import contextvars
import difflib
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from typing_extensions import Self

from .errors import invalid_request

__all__ = ["SDKModel", "without_unknown_fields"]

_depth: contextvars.ContextVar[int] = contextvars.ContextVar("codi2_validation_depth", default=0)


def _outermost(model: type[BaseModel], validate: Callable[[], Any]) -> Any:
    """Run ``validate``; the outermost model turns pydantic's error into the SDK's (nested ones pass it up, so
    the paths name the whole way down)."""
    token = _depth.set(_depth.get() + 1)
    try:
        return validate()
    except ValidationError as exc:
        if _depth.get() > 1:
            raise
        hints = {
            tuple(e["loc"]): _unknown_field_hint(model, tuple(e["loc"]))
            for e in exc.errors()[:5]
            if e["type"] == "extra_forbidden"
        }
        raise invalid_request(exc, model.__name__, hints) from None
    finally:
        _depth.reset(token)


def _models_in(annotation: Any) -> set[type[BaseModel]]:
    """The pydantic models an annotation holds (``X``, ``X | None``, ``list[X]``, a union of parts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {annotation}
    return {model for arg in typing.get_args(annotation) for model in _models_in(arg)}


def _tagged(models: set[type[BaseModel]], tag: object) -> set[type[BaseModel]]:
    """The members of a discriminated union (parts, events) whose ``type`` is ``tag``."""
    return {m for m in models if getattr(m.model_fields.get("type"), "default", None) == tag}


def _unknown_field_hint(model: type[BaseModel], location: tuple[int | str, ...]) -> str:
    """What to say of a field that is not at ``location``: "unknown field", and the field meant where one is plain
    (a close spelling, or a field of a nested section: ``max_new_tokens`` -> ``text.max_new_tokens``)."""
    *path, key = location
    holders = {model}
    for step in path:
        if isinstance(step, int):  # an index into a list
            continue
        tagged = _tagged(holders, step)
        if len(holders) > 1 and tagged:  # a discriminated union's tag names the member
            holders = tagged
            continue
        field = holders.pop().model_fields.get(step) if len(holders) == 1 else None
        holders = _models_in(field.annotation) if field is not None else set()
    if len(holders) != 1 or not isinstance(key, str):
        return "unknown field"
    fields = holders.pop().model_fields
    prefix = "".join(f"{step}." for step in path)
    meant = [
        f"{prefix}{name}.{key}"
        for name, field in fields.items()
        if any(key in m.model_fields for m in _models_in(field.annotation))
    ] or [
        prefix + name
        for name in [*(n for n in fields if n.startswith(key)), *difflib.get_close_matches(key, fields, n=1)][:1]
    ]
    return f"unknown field; did you mean {' or '.join(meant)}?" if meant else "unknown field"


def without_unknown_fields(annotation: Any, value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` (parsed JSON) with the object keys that the models ``annotation`` holds do not know taken out,
    and their paths: how a client reads what a newer server sends (a field added to the capabilities, a part, an
    event) instead of failing on it. Values of unknown *types* (a new kind of part) are left for validation to
    refuse, since dropping them would drop content."""
    dropped: list[str] = []
    if isinstance(value, list):
        kept = []
        for index, item in enumerate(value):
            item, lost = without_unknown_fields(annotation, item, f"{path}.{index}" if path else str(index))
            kept.append(item)
            dropped += lost
        return kept, dropped
    if typing.get_origin(annotation) in (dict, Mapping) and isinstance(value, dict):  # free keys, typed values
        value_type = typing.get_args(annotation)[-1]
        kept_values = {}
        for key, item in value.items():
            kept_values[key], lost = without_unknown_fields(value_type, item, f"{path}.{key}" if path else key)
            dropped += lost
        return kept_values, dropped
    models = _models_in(annotation)
    if len(models) > 1 and isinstance(value, dict):  # a discriminated union: its tag names the member
        models = _tagged(models, value.get("type"))
    if len(models) != 1 or not isinstance(value, dict):
        return value, dropped
    fields = models.pop().model_fields
    kept_fields = {}
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            dropped.append(where)
            continue
        kept_fields[key], lost = without_unknown_fields(fields[key].annotation, item, where)
        dropped += lost
    return kept_fields, dropped


class SDKModel(BaseModel):
    """A pydantic model whose refusals are :class:`~codi2_sdk.errors.InvalidRequestError` (naming each field's
    path, with pydantic's details in ``.errors``), so that every error the SDK raises derives from
    :class:`~codi2_sdk.errors.Codi2Error`. Media that cannot be used still raise ``InvalidMediaError``.

    Validation schemas are built on a model's first use, not at import (``import codi2_sdk`` stays light).
    """

    model_config = ConfigDict(defer_build=True)

    def __init__(self, /, **data: Any) -> None:
        _outermost(type(self), lambda: super(SDKModel, self).__init__(**data))

    @classmethod
    def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Self:
        return _outermost(cls, lambda: super(SDKModel, cls).model_validate(obj, *args, **kwargs))  # type: ignore[no-any-return]

    @classmethod
    def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> Self:
        return _outermost(cls, lambda: super(SDKModel, cls).model_validate_json(json_data, *args, **kwargs))  # type: ignore[no-any-return]
