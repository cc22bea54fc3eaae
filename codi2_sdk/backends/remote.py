"""RemoteBackend: a CoDi-2 model behind a codi2-sdk server, over HTTP (httpx + tenacity, no torch).

Retries: connection errors and timeouts, and the answers that :data:`~codi2_sdk.errors.ERROR_CODES` marks
retryable (``queue_full`` 429, ``internal_error`` 500, ``loading`` 503; for an answer without a known
code, 408, 429 and 5xx) are retried up to ``max_retries`` times with exponential backoff and jitter; a
``Retry-After`` header is honoured (up to ``max_retry_wait``). Other 4xx and ``model_error`` (the same
request would fail the same way) are not retried. A stream is retried only until it opens; once events flow, a broken
connection raises :class:`~codi2_sdk.errors.APIConnectionError`.

>>> from codi2_sdk import Conversation, RemoteBackend
>>> with RemoteBackend("http://127.0.0.1:8000", api_key="...") as backend:     # doctest: +SKIP
...     Conversation(backend=backend).send("Draw a red circle.")
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from httpx_sse import EventSource
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .._base import without_unknown_fields
from .._protocol import API_PREFIX, EVENT_ADAPTER, REQUEST_ID_HEADER
from ..errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    Codi2Error,
    InvalidRequestError,
    ModelError,
    error_from_code,
    is_retryable,
    status_error,
)
from ..events import Capabilities, Done, ErrorEvent, Event, GenerationRequest
from ..messages import Message
from .base import Backend

log = logging.getLogger(__name__)

__all__ = ["RemoteBackend"]

_backoff = wait_exponential_jitter(multiplier=0.5, max=8.0, jitter=0.5)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _request_id(response: httpx.Response) -> str | None:
    return response.headers.get(REQUEST_ID_HEADER)


def _status_error(response: httpx.Response, body: bytes) -> APIStatusError:
    text = body.decode("utf-8", "replace")
    code, message, parsed = None, text[:500] or response.reason_phrase, None
    try:
        parsed = json.loads(body)
        detail = parsed["error"]
        code, message = detail.get("code"), detail.get("message", message)
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return status_error(
        response.status_code,
        message,
        code=code,
        retry_after=_retry_after(response),
        request_id=_request_id(response),
        body=parsed if parsed is not None else text[:10_000],
    )


def _server_address(base_url: str) -> str:
    """The server's root from what a user may write: checked to be an http(s) address with a host (a missing
    scheme is the usual slip), with no trailing slash, and a trailing ``/v1`` (as OpenAI's clients take) dropped."""
    url = base_url.strip().rstrip("/")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidRequestError(f"base_url {base_url!r} is not a URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        hint = f" (did you mean 'http://{url}'?)" if "://" not in base_url else ""
        raise InvalidRequestError(
            f"base_url must be an http:// or https:// address with a host, not {base_url!r}{hint}"
        )
    return url.removesuffix(API_PREFIX)


class RemoteBackend(Backend):
    """Talks to a codi2-sdk server.

    Args:
        base_url: the server's address, e.g. ``"http://127.0.0.1:8000"`` (``".../v1"`` is taken too); by default
            ``$CODI2_BASE_URL``.
        api_key: sent as ``Authorization: Bearer <key>``; by default ``$CODI2_API_KEY`` (if set).
        timeout: seconds to wait for an answer (a long diffusion decode counts); connecting has 10 s.
        max_retries: retries after the first attempt, for retryable failures.
        max_retry_wait: the longest wait between attempts, whatever Retry-After says.
        http_client: your own httpx client (proxies, TLS, transports); the backend does not close clients it did
            not create.
        async_http_client: the same, for the async calls.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        max_retries: int = 2,
        max_retry_wait: float = 30.0,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        base_url = base_url or os.environ.get("CODI2_BASE_URL")
        if not base_url:
            raise InvalidRequestError("RemoteBackend needs the server's address: pass base_url or set CODI2_BASE_URL")
        api_key = api_key if api_key is not None else os.environ.get("CODI2_API_KEY")
        self.base_url = _server_address(base_url)
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Timeout(timeout, connect=10.0)
        self._owns_client = http_client is None
        self._owns_async_client = async_http_client is None
        self._client = http_client or httpx.Client(timeout=limits)
        self._async_client = async_http_client or httpx.AsyncClient(timeout=limits)
        self._headers = headers
        self._capabilities: Capabilities | None = None

    # -- plumbing --------------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self.base_url}{API_PREFIX}{path}"

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, APIStatusError) and exc.retry_after is not None:
            return min(exc.retry_after, self.max_retry_wait)
        return min(_backoff(state), self.max_retry_wait)

    def _retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            reraise=True,
        )

    def _async_retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            reraise=True,
        )

    def _open(self, method: str, path: str, body: Any = None) -> httpx.Response:
        request = self._client.build_request(method, self._url(path), json=body, headers=self._headers)
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"{method} {request.url} timed out: {exc}") from exc
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"{method} {request.url} failed: {exc}") from exc
        if response.status_code >= 400:
            try:
                error = _status_error(response, response.read())
            finally:
                response.close()
            raise error
        return response

    async def _aopen(self, method: str, path: str, body: Any = None) -> httpx.Response:
        request = self._async_client.build_request(method, self._url(path), json=body, headers=self._headers)
        try:
            response = await self._async_client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(f"{method} {request.url} timed out: {exc}") from exc
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"{method} {request.url} failed: {exc}") from exc
        if response.status_code >= 400:
            try:
                error = _status_error(response, await response.aread())
            finally:
                await response.aclose()
            raise error
        return response

    def _call(self, method: str, path: str, body: Any = None) -> bytes:
        def once() -> bytes:
            response = self._open(method, path, body)
            try:
                return response.read()
            except httpx.HTTPError as exc:
                raise APIConnectionError(f"{method} {path}: the answer broke off: {exc}") from exc
            finally:
                response.close()

        return self._retrying()(once)

    async def _acall(self, method: str, path: str, body: Any = None) -> bytes:
        async def once() -> bytes:
            response = await self._aopen(method, path, body)
            try:
                return await response.aread()
            except httpx.HTTPError as exc:
                raise APIConnectionError(f"{method} {path}: the answer broke off: {exc}") from exc
            finally:
                await response.aclose()

        return await self._async_retrying()(once)

    @staticmethod
    def _body(request: GenerationRequest, stream: bool) -> dict[str, Any]:
        return {**request.model_dump(mode="json"), "stream": stream}

    @staticmethod
    def _message(raw: bytes) -> Message:
        try:
            return Message.model_validate(_from_server(Message, raw))
        except (ValueError, Codi2Error) as exc:  # pydantic's ValidationError and JSON's errors are ValueErrors
            raise ModelError(f"the server's answer is not a valid message: {exc}") from exc

    @staticmethod
    def _event(name: str, data: str, request_id: str | None) -> Event:
        try:
            event = EVENT_ADAPTER.validate_python(_from_server(Event, data))
        except (ValueError, Codi2Error) as exc:
            raise ModelError(f"the server sent an invalid {name!r} event (request {request_id}): {exc}") from exc
        if isinstance(event, ErrorEvent):
            raise error_from_code(event.code, event.message, request_id=request_id)
        return event

    # -- Backend ---------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        """What the server's model can do (asked once, then cached)."""
        if self._capabilities is None:
            raw = self._call("GET", "/capabilities")
            try:
                found = Capabilities.model_validate(_from_server(Capabilities, raw))
            except (ValueError, Codi2Error) as exc:
                raise ModelError(f"the server's capabilities are not valid: {exc}") from exc
            self._capabilities = found
        return self._capabilities

    def health(self) -> dict[str, Any]:
        """The server's health answer (raises while it is loading: 503)."""
        return json.loads(self._call("GET", "/health"))

    def generate(self, request: GenerationRequest) -> Message:
        return self._message(self._call("POST", "/generate", self._body(request, False)))

    async def agenerate(self, request: GenerationRequest) -> Message:
        return self._message(await self._acall("POST", "/generate", self._body(request, False)))

    def stream(self, request: GenerationRequest) -> Iterator[Event]:
        response = self._retrying()(self._open, "POST", "/generate", self._body(request, True))
        try:
            for sse in EventSource(response).iter_sse():
                event = self._event(sse.event, sse.data, _request_id(response))
                yield event
                if isinstance(event, Done):
                    return
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"the stream broke off: {exc}") from exc
        finally:
            response.close()
        raise APIConnectionError("the stream ended before the answer was complete")

    async def astream(self, request: GenerationRequest) -> AsyncIterator[Event]:
        response: httpx.Response = await self._async_retrying()(
            self._aopen, "POST", "/generate", self._body(request, True)
        )
        try:
            async for sse in EventSource(response).aiter_sse():
                event = self._event(sse.event, sse.data, _request_id(response))
                yield event
                if isinstance(event, Done):
                    return
        except httpx.HTTPError as exc:
            raise APIConnectionError(f"the stream broke off: {exc}") from exc
        finally:
            await response.aclose()
        raise APIConnectionError("the stream ended before the answer was complete")

    # -- lifetime --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the HTTP clients this backend created."""
        if self._owns_client:
            self._client.close()

    async def aclose(self) -> None:
        """Close the HTTP clients this backend created (async)."""
        if self._owns_async_client:
            await self._async_client.aclose()
        self.close()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RemoteBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"RemoteBackend({self.base_url!r})"


_ignored_fields: set[str] = set()


def _from_server(annotation: Any, raw: bytes | str) -> Any:
    """The server's JSON without the fields this SDK does not know (a newer server's additions), each logged once;
    the rest is validated as strictly as ever."""
    value, dropped = without_unknown_fields(annotation, json.loads(raw))
    if new := sorted(set(dropped) - _ignored_fields):
        _ignored_fields.update(new)
        log.warning("the server sent fields this SDK does not know (a newer server?), ignored: %s", ", ".join(new))
    return value
