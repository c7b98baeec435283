"""Kubernetes API clients built from ONE loaded Configuration, plus a tiny raw-JSON request layer.

Why one Configuration: `load_incluster_config` installs a `refresh_api_key_hook` on the
Configuration it fills; bound ServiceAccount tokens rotate (~1 h), so every ApiClient must share
that Configuration or it ends in random 401s (architecture guide, pitfall 11).

Why raw JSON: the generated client (37.x) validates arguments and builds pydantic models for every
response, which is slow at thousands of objects and churns between releases (pitfall 13). The
adapter talks JSON dicts through `ApiClient.param_serialize` / `call_api` (so auth, TLS and the
token-refresh hook stay the client's) and converts to `core.model` values at the boundary.

Every request goes through `InstrumentedApiClient.call_api`: it takes a token from the shared
rate limiter (watches count once, on connect) and reports `on_request(verb, resource, code)`
(code 0 for transport errors).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from acr_helper.kube.ratelimit import TokenBucket
from acr_helper.settings import KubeSettings

log = logging.getLogger(__name__)

OnRequest = Callable[[str, str, int], None]
Query = Sequence[tuple[str, Any]]

#: Exceptions that mean "the connection broke", not "the server said no".
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,  # ProtocolError, ReadTimeoutError, MaxRetryError, ...
    ConnectionError,
    TimeoutError,
    OSError,
)
try:  # http.client.IncompleteRead is an HTTPException, not an OSError
    import http.client as _http_client

    TRANSPORT_ERRORS = (*TRANSPORT_ERRORS, _http_client.HTTPException)
except ImportError:  # pragma: no cover
    pass


class KubeConfigError(Exception):
    """No usable cluster configuration could be loaded."""


def load_configuration(settings: KubeSettings) -> k8s.Configuration:
    """Load ONE Configuration: settings.kubeconfig/context if given, else in-cluster, then
    $KUBECONFIG, then ~/.kube/config."""
    cfg = k8s.Configuration()
    if settings.kubeconfig:
        try:
            k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=settings.kubeconfig,
                context=settings.context,
                client_configuration=cfg,
                persist_config=False,
            )
        except Exception as exc:  # the client raises many kinds
            raise KubeConfigError(f"cannot load kubeconfig {settings.kubeconfig!r}: {exc}") from exc
        return cfg
    if not settings.context:
        try:
            k8s_config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
            return cfg
        except k8s_config.ConfigException:
            pass
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path, context=settings.context, client_configuration=cfg, persist_config=False
        )
    except Exception as exc:
        raise KubeConfigError(
            f"no in-cluster configuration and cannot load kubeconfig {path!r}: {exc}"
        ) from exc
    return cfg


# ----------------------------------------------------------------------------------------------
# request classification (for metrics)

_CLUSTER_SCOPED = {"namespaces", "nodes", "persistentvolumes"}


def classify_request(method: str, url: str) -> tuple[str, str]:
    """(verb, resource) of a request, Kubernetes audit style: get/list/watch/create/update/patch/
    delete/deletecollection; resource is the plural (\"secrets\") or \"discovery\"."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    segs = [s for s in parts.path.split("/") if s]
    # strip the API prefix: api/v1 or apis/<group>/<version>
    if segs[:1] == ["api"]:
        rest = segs[2:]
    elif segs[:1] == ["apis"]:
        rest = segs[3:]
    else:
        rest = []
    if not rest:
        return method.lower(), "discovery"
    named = False
    resource = rest[0]
    if rest[0] == "namespaces" and len(rest) >= 3:
        resource = rest[2]
        named = len(rest) >= 4
    else:
        named = len(rest) >= 2
    m = method.upper()
    watching = query.get("watch", [""])[0].lower() in ("true", "1")
    if m == "GET":
        verb = "watch" if watching else ("get" if named else "list")
    elif m == "POST":
        verb = "create"
    elif m == "PUT":
        verb = "update"
    elif m == "PATCH":
        verb = "patch"
    elif m == "DELETE":
        verb = "delete" if named else "deletecollection"
    else:
        verb = m.lower()
    return verb, resource


# ----------------------------------------------------------------------------------------------


class InstrumentedApiClient(k8s.ApiClient):
    """An ApiClient that rate-limits non-watch requests and reports every request's outcome."""

    def __init__(
        self,
        configuration: k8s.Configuration,
        *,
        limiter: TokenBucket | None = None,
        on_request: OnRequest | None = None,
    ) -> None:
        super().__init__(configuration)
        self._limiter = limiter
        self._on_request = on_request
        self.user_agent = "acr-helper"

    def call_api(
        self,
        method: str,
        url: str,
        header_params: Any = None,
        body: Any = None,
        post_params: Any = None,
        _request_timeout: Any = None,
    ) -> Any:
        verb, resource = classify_request(method, url)
        if self._limiter is not None:
            self._limiter.acquire()
        try:
            resp = super().call_api(
                method, url, header_params, body, post_params, _request_timeout=_request_timeout
            )
        except ApiException as exc:
            self._report(verb, resource, int(exc.status or 0))
            raise
        except BaseException:
            self._report(verb, resource, 0)
            raise
        self._report(verb, resource, int(resp.status))
        return resp

    def _report(self, verb: str, resource: str, code: int) -> None:
        if self._on_request is None:
            return
        try:
            self._on_request(verb, resource, code)
        except Exception:  # metrics must never break a request
            log.debug("on_request hook failed", exc_info=True)


class KubeClients:
    """Owns the one Configuration, the shared rate limiter and the ApiClients built from them."""

    def __init__(
        self,
        settings: KubeSettings,
        *,
        on_request: OnRequest | None = None,
        configuration: k8s.Configuration | None = None,
        limiter: TokenBucket | None = None,
    ) -> None:
        self.settings = settings
        self.configuration = configuration if configuration is not None else load_configuration(settings)
        self.limiter = limiter if limiter is not None else TokenBucket(settings.qps, settings.burst)
        self.on_request = on_request
        self._lock = threading.Lock()
        self._clients: list[k8s.ApiClient] = []
        self._shared: InstrumentedApiClient | None = None
        self._closed = False

    # -- clients ---------------------------------------------------------------------------

    def new_api_client(self) -> InstrumentedApiClient:
        """A new ApiClient (own connection pool) on the shared Configuration and limiter."""
        api = InstrumentedApiClient(self.configuration, limiter=self.limiter, on_request=self.on_request)
        with self._lock:
            self._clients.append(api)
        return api

    @property
    def api_client(self) -> InstrumentedApiClient:
        """The shared ApiClient for short requests (apply, events, leases)."""
        with self._lock:
            if self._shared is None:
                self._shared = InstrumentedApiClient(
                    self.configuration, limiter=self.limiter, on_request=self.on_request
                )
                self._clients.append(self._shared)
            return self._shared

    def release(self, api: k8s.ApiClient) -> None:
        """Close one client made by new_api_client (e.g. when a watcher stops)."""
        with self._lock:
            if api in self._clients:
                self._clients.remove(api)
        _close_quietly(api)

    def core_v1(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)

    def coordination_v1(self) -> k8s.CoordinationV1Api:
        return k8s.CoordinationV1Api(self.api_client)

    def events_v1(self) -> k8s.EventsV1Api:
        return k8s.EventsV1Api(self.api_client)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
            self._shared = None
            self._closed = True
        for api in clients:
            _close_quietly(api)

    # -- raw JSON requests -----------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Query | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: tuple[float, float] | float | None = None,
        api: k8s.ApiClient | None = None,
    ) -> Any:
        """One JSON request on the shared client (or `api`); returns the decoded body."""
        return request_json(
            api if api is not None else self.api_client,
            method,
            path,
            query=query,
            body=body,
            content_type=content_type,
            timeout=timeout if timeout is not None else self.settings.request_timeout,
        )


def _close_quietly(api: k8s.ApiClient) -> None:
    try:
        api.close()  # type: ignore[no-untyped-call]
    except Exception:
        log.debug("closing ApiClient failed", exc_info=True)


def _serialize(
    api: k8s.ApiClient,
    method: str,
    path: str,
    query: Query | None,
    body: Any,
    content_type: str | None,
) -> Any:
    headers: dict[str, str] = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type or "application/json"
    return api.param_serialize(
        method=method,
        resource_path=path,
        query_params=[(k, _query_value(v)) for k, v in (query or ()) if v is not None],
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )


def _query_value(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


def request_json(
    api: k8s.ApiClient,
    method: str,
    path: str,
    *,
    query: Query | None = None,
    body: Any = None,
    content_type: str | None = None,
    timeout: tuple[float, float] | float | None = None,
    retries_429: int = 2,
) -> Any:
    """Send one request and return its decoded JSON body; non-2xx raise ApiException.

    Like client-go, a 429, or a 5xx that carries Retry-After, is retried up to `retries_429`
    times, no sooner than the server asked (a request asking for more than MAX_INLINE_RETRY_AFTER
    seconds is not waited for inline: it raises, and the next pass retries)."""
    attempt = 0
    while True:
        m, url, headers, payload, post = _serialize(api, method, path, query, body, content_type)
        resp = api.call_api(m, url, headers, payload, post, _request_timeout=timeout)
        data = resp.read()  # type: ignore[no-untyped-call]
        if 200 <= resp.status <= 299:
            if not data:
                return {}
            return json.loads(data)
        retry_after = resp.getheader("Retry-After")  # type: ignore[no-untyped-call]
        retryable = resp.status == 429 or (resp.status >= 500 and retry_after is not None)
        if retryable and attempt < retries_429:
            wait = _retry_after(retry_after)
            if wait <= MAX_INLINE_RETRY_AFTER:
                attempt += 1
                time.sleep(wait)
                continue
        raise ApiException(http_resp=resp)


MAX_INLINE_RETRY_AFTER = 10.0


def _retry_after(value: str | None) -> float:
    try:
        return max(0.05, float(value)) if value else 0.5
    except ValueError:
        return 0.5


def open_stream(
    api: k8s.ApiClient,
    path: str,
    *,
    query: Query | None = None,
    timeout: tuple[float, float] | float | None = None,
) -> Any:
    """Open a streaming GET (a watch); returns the urllib3 response. Non-2xx raise ApiException."""
    m, url, headers, payload, post = _serialize(api, "GET", path, query, None, None)
    resp = api.call_api(m, url, headers, payload, post, _request_timeout=timeout)
    if not 200 <= resp.status <= 299:
        resp.read()  # type: ignore[no-untyped-call]
        raise ApiException(http_resp=resp)
    return resp.response


def iter_lines(chunks: Iterable[bytes]) -> Iterable[bytes]:
    """Split a byte stream into lines (the watch protocol is one JSON object per line)."""
    pending = b""
    for chunk in chunks:
        if not chunk:
            continue
        pending += chunk
        while True:
            idx = pending.find(b"\n")
            if idx < 0:
                break
            line, pending = pending[:idx], pending[idx + 1 :]
            yield line
    if pending:
        yield pending


# ----------------------------------------------------------------------------------------------
# error helpers


def status_of(exc: BaseException) -> int:
    """The HTTP status of an ApiException (0 for transport errors and anything else)."""
    if isinstance(exc, ApiException):
        return int(exc.status or 0)
    return 0


def status_body(exc: BaseException) -> Mapping[str, Any]:
    if isinstance(exc, ApiException) and exc.body:
        try:
            body = json.loads(exc.body)
        except (TypeError, ValueError):
            return {}
        return body if isinstance(body, dict) else {}
    return {}


_WS = re.compile(r"\s+")


def error_message(exc: BaseException, limit: int = 300) -> str:
    """A short, single-line description: the Status message (never headers or request data)."""
    if isinstance(exc, ApiException):
        body = status_body(exc)
        msg = str(body.get("message") or exc.reason or "")
        reason = str(body.get("reason") or "")
        text = f"{exc.status} {reason}: {msg}" if reason else f"{exc.status}: {msg}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    text = _WS.sub(" ", text).strip()
    return text[:limit]


def is_too_large_rv(exc: BaseException) -> bool:
    """The API server's "Too large resource version" (a lagging/failed-over apiserver)."""
    if not isinstance(exc, ApiException):
        return False
    body = status_body(exc)
    text = f"{body.get('message', '')} {exc.reason or ''} {exc.body or ''}".lower()
    if "too large resource version" in text:
        return True
    details = body.get("details") or {}
    for cause in details.get("causes") or () if isinstance(details, dict) else ():
        if isinstance(cause, dict) and cause.get("reason") == "ResourceVersionTooLarge":
            return True
    return False
