"""The SDK's exception tree.

Everything the SDK raises on purpose derives from :class:`Codi2Error`, so one ``except Codi2Error``
catches it all. The branches say whose fault it was::

    Codi2Error
    ├── InvalidMediaError        a medium that cannot be used (corrupt, wrong type)
    │   └── MediaTooLargeError   ... or over a size, pixel or duration limit
    ├── InvalidRequestError      a request the model cannot serve (bad arguments, unknown modality)
    │   └── MediaReferenceError  a media id or path that does not resolve (agent tools)
    ├── MissingDependencyError   an optional library is not installed (also an ImportError)
    ├── ConversationFileError    a saved conversation that cannot be loaded
    ├── ModelError               the model failed, or could not be loaded
    │   └── ModelNotFoundError   no checkpoint where one was asked for
    └── APIError                 talking to a CoDi-2 server failed
        ├── APIConnectionError   the server could not be reached
        │   └── APITimeoutError  ... or did not answer in time
        └── APIStatusError       the server answered with an error status
            ├── BadRequestError, AuthenticationError, PermissionDeniedError, NotFoundError,
            ├── PayloadTooLargeError, UnprocessableEntityError, RateLimitError,
            └── InternalServerError, ServiceUnavailableError

One failure is caught by one ``except`` wherever the model runs: a remote error is also an instance of the
class the in-process path raises (``BadRequestError``, ``PayloadTooLargeError`` and
``UnprocessableEntityError`` are :class:`InvalidRequestError`; ``RemoteInvalidMediaError`` is an
:class:`InvalidMediaError`, ``RemoteMediaTooLargeError`` a :class:`MediaTooLargeError`, ``RemoteModelError`` a
:class:`ModelError`), streamed or not. :data:`ERROR_CODES` is the one table of code, HTTP status and
exception that the server and the client share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import ValidationError

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "Codi2Error",
    "ConversationFileError",
    "ERROR_CODES",
    "ErrorCode",
    "InternalServerError",
    "InvalidMediaError",
    "InvalidRequestError",
    "MediaReferenceError",
    "MediaTooLargeError",
    "MissingDependencyError",
    "ModelError",
    "ModelNotFoundError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RemoteInvalidMediaError",
    "RemoteMediaTooLargeError",
    "RemoteModelError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
]


class Codi2Error(Exception):
    """Root of every error the SDK raises on purpose."""


class InvalidMediaError(Codi2Error):
    """A medium (image, audio) is corrupt, of the wrong type, or over a size or duration limit."""


class MediaTooLargeError(InvalidMediaError):
    """A medium is over a limit: bytes, pixels (checked before decoding) or duration."""


class InvalidRequestError(Codi2Error, ValueError):
    """A request cannot be served as given: a wrong argument type, an out-of-range setting, an unsupported
    modality, ... (also a ``ValueError``, as pydantic's validation errors are)."""


class MediaReferenceError(InvalidRequestError):
    """A media reference (an id or a file path given to a tool) is unknown, missing, outside the allowed
    folders, or of the wrong kind."""


class MissingDependencyError(Codi2Error, ImportError):
    """An optional library a feature needs is not installed (the message says which extra to install)."""


class ConversationFileError(Codi2Error):
    """A saved conversation file cannot be read: corrupt, truncated, or of an unknown schema version."""


class ModelError(Codi2Error):
    """The model failed while generating, or could not be loaded."""


class ModelNotFoundError(ModelError):
    """No model checkpoint exists at the given name or path, or a required part of it is missing."""


class APIError(Codi2Error):
    """A call to a CoDi-2 server failed.

    Attributes:
        request_id: the id the server gave the request (its ``x-request-id`` header, the one its log lines
            print), where the server answered; ``None`` when no answer came.
    """

    request_id: str | None = None


class APIConnectionError(APIError):
    """The server could not be reached, or the connection broke mid-answer."""


class APITimeoutError(APIConnectionError):
    """The server did not answer within the client's timeout."""


class APIStatusError(APIError):
    """The server answered with an error status.

    Attributes:
        status_code: the HTTP status.
        code: the server's stable error code (for example ``"invalid_media"``), if it sent one.
        message: the server's human-readable message.
        retry_after: seconds the server asked the client to wait, if it said.
        request_id: the server's id of the request (quote it when reporting a problem).
        body: the error answer's body, parsed from JSON where it is JSON, else its text; ``None`` for an error
            that arrived inside a stream.
    """

    status_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        body: object | None = None,
    ) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.request_id = request_id
        self.body = body

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"HTTP {self.status_code}{code}: {self.message}"


class BadRequestError(APIStatusError, InvalidRequestError):
    """400: the server refused the request (caught by ``except InvalidRequestError`` too)."""

    status_code = 400


class AuthenticationError(APIStatusError):
    """401: the API key is missing or wrong."""

    status_code = 401


class PermissionDeniedError(APIStatusError):
    """403: the key is valid but not allowed to do this."""

    status_code = 403


class NotFoundError(APIStatusError):
    """404: no such endpoint (often a wrong base URL)."""

    status_code = 404


class PayloadTooLargeError(APIStatusError, InvalidRequestError):
    """413: the request body is over the server's limit."""

    status_code = 413


class UnprocessableEntityError(APIStatusError, InvalidRequestError):
    """422: the request body does not match the protocol's schema (locally: a pydantic validation error,
    raised as :class:`InvalidRequestError`)."""

    status_code = 422


class RateLimitError(APIStatusError):
    """429: the server's queue is full; retry after ``retry_after`` seconds."""

    status_code = 429


class InternalServerError(APIStatusError):
    """500 or another 5xx: the server failed."""

    status_code = 500


class ServiceUnavailableError(APIStatusError):
    """503: the server is still loading its model, or shutting down."""

    status_code = 503


class RemoteInvalidMediaError(BadRequestError, InvalidMediaError):
    """400 ``invalid_media``: the server refused a medium, as :class:`InvalidMediaError` does locally."""


class RemoteMediaTooLargeError(PayloadTooLargeError, MediaTooLargeError):
    """413 ``media_too_large``: a medium is over a limit, as :class:`MediaTooLargeError` says locally."""


class RemoteModelError(InternalServerError, ModelError):
    """500 ``model_error``: the model failed on this request, as :class:`ModelError` does locally; not retried,
    since the same request fails the same way."""


@dataclass(frozen=True)
class ErrorCode:
    """One row of the error contract: a stable code, its HTTP status, and the exception classes."""

    code: str
    status: int
    raises: type[APIStatusError]
    """What a client raises for it (an instance of :attr:`local` too, when there is one)."""
    local: type[Codi2Error] | None = None
    """The in-process error that the server answers with this code."""
    retryable: bool = False
    """Whether a client should try the same request again."""


ERROR_CODES: dict[str, ErrorCode] = {
    row.code: row
    for row in (
        ErrorCode("invalid_media", 400, RemoteInvalidMediaError, InvalidMediaError),
        ErrorCode("invalid_request", 400, BadRequestError, InvalidRequestError),
        ErrorCode("unauthorized", 401, AuthenticationError),
        ErrorCode("not_found", 404, NotFoundError),
        ErrorCode("method_not_allowed", 405, APIStatusError),
        ErrorCode("body_too_large", 413, PayloadTooLargeError),
        ErrorCode("media_too_large", 413, RemoteMediaTooLargeError, MediaTooLargeError),
        ErrorCode("unsupported_media_type", 415, APIStatusError),
        ErrorCode("invalid_schema", 422, UnprocessableEntityError),
        ErrorCode("queue_full", 429, RateLimitError, retryable=True),
        ErrorCode("model_error", 500, RemoteModelError, ModelError),
        ErrorCode("internal_error", 500, InternalServerError, retryable=True),
        ErrorCode("loading", 503, ServiceUnavailableError, retryable=True),
    )
}
"""The one table of the error contract, read by the server (code and status of an error) and by the client
(the exception for a code, and whether to retry it)."""

_CODE_OF_LOCAL = {row.local: row.code for row in ERROR_CODES.values() if row.local is not None}

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        PayloadTooLargeError,
        UnprocessableEntityError,
        RateLimitError,
        InternalServerError,
        ServiceUnavailableError,
    )
}
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Statuses retried when the answer has no known code (a proxy's 502, say)."""


def error_code_of(exc: Codi2Error) -> str:
    """The code the server answers ``exc`` with: the row of its nearest class (``model_error`` for the rest)."""
    code = getattr(exc, "code", None)
    if isinstance(exc, APIStatusError) and code in ERROR_CODES:
        return str(code)
    return next((_CODE_OF_LOCAL[cls] for cls in type(exc).__mro__ if cls in _CODE_OF_LOCAL), "model_error")


def status_error(
    status_code: int,
    message: str,
    *,
    code: str | None = None,
    retry_after: float | None = None,
    request_id: str | None = None,
    body: object | None = None,
) -> APIStatusError:
    """The exception a client raises for an error answer: by its code where the code is known, else by status."""
    row = ERROR_CODES.get(code or "")
    if row is not None and row.status == status_code:
        cls = row.raises
    elif status_code in _STATUS_ERRORS:
        cls = _STATUS_ERRORS[status_code]
    else:
        cls = InternalServerError if status_code >= 500 else APIStatusError
    return cls(message, status_code=status_code, code=code, retry_after=retry_after, request_id=request_id, body=body)


def error_from_code(code: str, message: str, *, request_id: str | None = None) -> APIStatusError:
    """The exception for an error that arrives as a code alone (a stream's ``error`` event): the same class
    as an error answer with that code."""
    row = ERROR_CODES.get(code)
    return status_error(row.status if row is not None else 500, message, code=code, request_id=request_id)


def is_retryable(exc: BaseException) -> bool:
    """Whether a client should try again after ``exc``: a broken connection, or a retryable code or status."""
    if isinstance(exc, APIStatusError):
        row = ERROR_CODES.get(exc.code or "")
        return row.retryable if row is not None else exc.status_code in RETRYABLE_STATUSES
    return isinstance(exc, APIConnectionError)


def invalid_request(
    exc: ValidationError, what: str, hints: Mapping[tuple[int | str, ...], str] | None = None
) -> InvalidRequestError:
    """A pydantic validation error as an :class:`InvalidRequestError` naming each field's path (and, from
    ``hints``, messages to say instead of pydantic's for some paths)."""
    hints = hints or {}
    problems = "; ".join(_problem(e["loc"], hints.get(tuple(e["loc"]), e["msg"])) for e in exc.errors()[:5])
    more = f" (and {exc.error_count() - 5} more)" if exc.error_count() > 5 else ""
    error = InvalidRequestError(f"invalid {what}: {problems}{more}")
    error.errors = exc.errors(include_url=False)  # type: ignore[attr-defined]
    return error


def _problem(location: tuple[int | str, ...], message: str) -> str:
    # A validator's own ValueError reads "Value error, <what it said>": keep what it said.
    message = message.removeprefix("Value error, ")
    return f"{'.'.join(map(str, location))}: {message}" if location else message


def describe_error(exc: BaseException) -> str:
    """``exc`` as one line for a person at a terminal or a page: an OS error as ``PATH: reason`` (without its
    ``[Errno N]``), anything else as its message."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename is not None else exc.strerror
    return str(exc) or type(exc).__name__
