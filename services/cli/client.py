"""HTTP calls to the Naive API: base URL, bearer auth, and failures mapped to `Failure`."""

import contextlib
from collections.abc import Iterator, Mapping
from importlib.metadata import version
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from services.cli.errors import ExitCode, Failure

M = TypeVar("M", bound=BaseModel)

DEFAULT_API_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 30.0
# An idle connection is reused for at most this long: less than the API server's own
# keep-alive (gunicorn's `keepalive`, 2 s), so the CLI never sends on a connection the
# server is closing at that moment ("Server disconnected without sending a response", seen
# by a batch wait polling every 2 s).
KEEPALIVE_SECONDS = 1.0


def segment(value: str) -> str:
    """Quote one path segment, so an id can never reach another route."""
    return quote(value, safe="")


def read(model: type[M], answer: Any) -> M:
    """The API's answer as its wire model (the one the API rendered it with).

    An answer of another shape (an API of another version) is a service failure, not a crash.
    """
    try:
        return model.model_validate(answer)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(root)"
        raise Failure(
            {
                "code": "bad_response",
                "message": f"The API's answer is not a {model.__name__}: {where}: {first['msg']} "
                f"({exc.error_count()} error(s)).",
            },
            ExitCode.SERVICE_ERROR,
        ) from None


class ApiClient:
    """A session with one Naive API; each call returns parsed JSON or raises `Failure`."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        if api_key and not (api_key.isascii() and api_key.isprintable()):
            # httpx cannot put it in a header (UnicodeEncodeError): no key the API issues
            raise Failure(
                {
                    "code": "invalid_api_key",
                    "message": "The API key has characters no HTTP header carries; a key is "
                    "nv_sk_ and ASCII letters, digits, - and _. Check NAIVE_API_KEY or --api-key.",
                },
                ExitCode.USER_ERROR,
            )
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            httpx.URL(self.base_url)
        except httpx.InvalidURL as exc:
            raise Failure(
                {
                    "code": "invalid_api_url",
                    "message": f"{self.base_url!r} is not a valid URL ({exc}); check "
                    "NAIVE_API_URL or --api-url.",
                },
                ExitCode.USER_ERROR,
            ) from None
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(TIMEOUT_SECONDS, connect=10.0),
            limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS),
            headers={"User-Agent": f"naive-cli/{version('naive-video')}"},
        )

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def get(self, path: str, params: Mapping[str, str | int | None] | None = None) -> Any:
        """GET `path`; parameters that are None are left out."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self._call(self._http.build_request("GET", path, params=query, headers=self._auth))

    def fetch(
        self, model: type[M], path: str, params: Mapping[str, str | int | None] | None = None
    ) -> M:
        """GET `path` and read the answer as `model`."""
        return read(model, self.get(path, params))

    def get_text(self, path: str, params: Mapping[str, str | int | None] | None = None) -> str:
        """GET `path` for an answer that is not JSON (a CSV export): its text as sent."""
        query = {k: v for k, v in (params or {}).items() if v is not None}
        request = self._http.build_request("GET", path, params=query, headers=self._auth)
        with self._transport_errors(request):
            response = self._http.send(request)
        if response.is_error:
            raise _failure(response)
        return response.text

    def post(self, path: str, body: Any, headers: Mapping[str, str] | None = None) -> Any:
        """POST `body` as JSON to `path`."""
        return self.post_with_headers(path, body, headers)[0]

    def post_with_headers(
        self, path: str, body: Any, headers: Mapping[str, str] | None = None
    ) -> tuple[Any, httpx.Headers]:
        """POST `body` as JSON to `path`; the parsed answer and the response's headers
        (`Idempotent-Replayed` tells a replayed submission from a new one)."""
        request = self._http.build_request(
            "POST", path, json=body, headers={**self._auth, **(headers or {})}
        )
        return self._exchange(request)

    def patch(self, path: str, body: Any) -> Any:
        """PATCH `body` as JSON to `path`."""
        request = self._http.build_request("PATCH", path, json=body, headers=self._auth)
        return self._call(request)

    def delete(self, path: str) -> Any:
        """DELETE `path`."""
        return self._call(self._http.build_request("DELETE", path, headers=self._auth))

    @contextlib.contextmanager
    def stream(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> Iterator[httpx.Response]:
        """GET `url` (relative to the API, or absolute) as a byte stream, following redirects;
        `timeout` bounds each read.

        The API key goes only to the API's own origin: a provider or storage URL must not see it
        (and a presigned storage URL refuses a second form of authorization).
        """
        request = self._http.build_request(
            "GET", url, headers=headers, timeout=httpx.Timeout(timeout, connect=10.0)
        )
        if _origin(request.url) == _origin(self._http.base_url):
            request.headers.update(self._auth)
        with self._transport_errors(request):
            response = self._http.send(request, stream=True, follow_redirects=True)
            try:
                if response.is_error:
                    response.read()
                    raise _failure(response)
                yield response
            finally:
                response.close()

    def _call(self, request: httpx.Request) -> Any:
        return self._exchange(request)[0]

    def _exchange(self, request: httpx.Request) -> tuple[Any, httpx.Headers]:
        with self._transport_errors(request):
            response = self._http.send(request)
        if response.is_error:
            raise _failure(response)
        if response.status_code == httpx.codes.NO_CONTENT:
            return None, response.headers
        try:
            return response.json(), response.headers
        except ValueError:
            raise Failure(
                {
                    "code": "bad_response",
                    "message": f"{request.method} {request.url} answered HTTP "
                    f"{response.status_code} with a body that is not JSON.",
                },
                ExitCode.SERVICE_ERROR,
            ) from None

    @contextlib.contextmanager
    def _transport_errors(self, request: httpx.Request) -> Iterator[None]:
        """Turn network-level errors into failures that name the URL tried."""
        try:
            yield
        except httpx.UnsupportedProtocol:
            raise Failure(
                {
                    "code": "invalid_api_url",
                    "message": f"{request.url} is not an http(s) URL; "
                    f"check NAIVE_API_URL or --api-url (now {self.base_url!r}).",
                },
                ExitCode.USER_ERROR,
            ) from None
        except httpx.TimeoutException:
            raise Failure(
                {
                    "code": "timeout",
                    "message": f"{request.method} {request.url} did not answer within "
                    f"{TIMEOUT_SECONDS:g} s.",
                    "url": str(request.url),
                },
                ExitCode.SERVICE_ERROR,
            ) from None
        except httpx.TransportError as exc:
            raise Failure(
                {
                    "code": "connection_error",
                    "message": f"Could not reach {request.url}: {str(exc) or type(exc).__name__}.",
                    "url": str(request.url),
                },
                ExitCode.SERVICE_ERROR,
            ) from None


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port


def _failure(response: httpx.Response) -> Failure:
    """The API's error object, or one in its shape when the body is not the API's."""
    try:
        error = response.json()["error"]
        if not isinstance(error, dict):
            raise TypeError(error)
    except (ValueError, KeyError, TypeError):
        error = {
            "code": f"http_{response.status_code}",
            "message": f"{response.request.method} {response.request.url} answered HTTP "
            f"{response.status_code} {response.reason_phrase}.",
        }
    exit_code = ExitCode.SERVICE_ERROR if response.status_code >= 500 else ExitCode.USER_ERROR
    return Failure(error, exit_code, retry_after=_retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds, when given as a number (the API's form)."""
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None
