"""The SDK's exception tree.

Everything the SDK raises on purpose derives from :class:`Codi2Error`, so one ``except Codi2Error``
catches it all. The branches say whose fault it was::

    Codi2Error
    ├── InvalidMediaError        a medium that cannot be used (corrupt, wrong type)
    │   └── MediaTooLargeError   ... or over a size, pixel or duration limit
    ├── InvalidRequestError      a request the model cannot serve (bad arguments, unknown modality)
    │   └── MediaReferenceError  a media id or path that does not resolve (agent tools)
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
"""

from __future__ import annotations

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "Codi2Error",
    "ConversationFileError",
    "InternalServerError",
    "InvalidMediaError",
    "InvalidRequestError",
    "MediaReferenceError",
    "MediaTooLargeError",
    "ModelError",
    "ModelNotFoundError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServiceUnavailableError",
    "UnprocessableEntityError",
]


class Codi2Error(Exception):
    """Root of every error the SDK raises on purpose."""


class InvalidMediaError(Codi2Error):
    """A medium (image, audio) is corrupt, of the wrong type, or over a size or duration limit."""


class MediaTooLargeError(InvalidMediaError):
    """A medium is over a limit: bytes, pixels (checked before decoding) or duration."""


class InvalidRequestError(Codi2Error):
    """A request cannot be served as given: a wrong argument type, an unsupported modality, ..."""


class MediaReferenceError(InvalidRequestError):
    """A media reference (an id or a file path given to a tool) is unknown, missing, outside the allowed
    folders, or of the wrong kind."""


class ConversationFileError(Codi2Error):
    """A saved conversation file cannot be read: corrupt, truncated, or of an unknown schema version."""


class ModelError(Codi2Error):
    """The model failed while generating, or could not be loaded."""


class ModelNotFoundError(ModelError):
    """No model checkpoint exists at the given name or path, or a required part of it is missing."""


class APIError(Codi2Error):
    """A call to a CoDi-2 server failed."""


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
    """

    status_code: int = 0

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        if status_code is not None:
            self.status_code = status_code
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        code = f" {self.code}" if self.code else ""
        return f"HTTP {self.status_code}{code}: {self.message}"


class BadRequestError(APIStatusError):
    """400: the server refused the request or one of its media."""

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


class PayloadTooLargeError(APIStatusError):
    """413: the request body or one of its media is over the server's limit."""

    status_code = 413


class UnprocessableEntityError(APIStatusError):
    """422: the request body does not match the protocol's schema."""

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


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class that stands for an HTTP error status."""
    if status_code in _STATUS_ERRORS:
        return _STATUS_ERRORS[status_code]
    return InternalServerError if status_code >= 500 else APIStatusError
