"""One list/watch loop per kind (the informer, minus everything we do not need).

    list -> capture the LIST's resourceVersion -> replace the store wholesale -> mark synced
         -> watch from that RV (bookmarks on, server timeout_seconds, client read timeout)
         -> track every event's RV; BOOKMARK moves the RV only
         -> 410 (HTTP on connect, or an in-stream ERROR) / "too large resource version": relist
         -> silent end of stream / read timeout: reconnect from the last RV
         -> transport errors and other API errors: jittered exponential backoff, then reconnect

The watch is not `kubernetes.watch.Watch` (architecture guide pitfalls 2 and 6): the stream's lines
are parsed by `parse_event`, the one function that turns bytes into events. `ListWatcher.step()`
is one bounded list-and-watch round returning the restart reason; `run()` only loops over it, so
the scripted-stream tests drive `step()` directly.

Event handlers only update the store and call `on_change` (sample-controller style).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from acr_helper.kube.client import (
    TRANSPORT_ERRORS,
    KubeClients,
    error_message,
    is_too_large_rv,
    iter_lines,
    open_stream,
    request_json,
)
from acr_helper.kube.store import Store

log = logging.getLogger(__name__)

#: restart reasons (the `reason` label of acr_helper_watch_restarts_total)
GONE = "gone"
TOO_LARGE_RV = "too-large-rv"
STREAM_ENDED = "stream-ended"
TRANSPORT_ERROR = "transport-error"
ERROR = "error"
TIMEOUT = "timeout"
REASONS = (GONE, TOO_LARGE_RV, STREAM_ENDED, TRANSPORT_ERROR, ERROR, TIMEOUT)

KNOWN_TYPES = ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")


@dataclass(frozen=True)
class WatchEvent:
    type: str
    object: Mapping[str, Any]

    @property
    def resource_version(self) -> str:
        meta = self.object.get("metadata")
        if isinstance(meta, Mapping):
            return str(meta.get("resourceVersion") or "")
        return ""


def parse_event(line: bytes | str) -> WatchEvent | None:
    """One line of a watch stream -> an event; None for blank, undecodable or shapeless lines."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            return None
    line = line.strip()
    if not line:
        return None
    try:
        doc = json.loads(line)
    except ValueError:
        return None
    if not isinstance(doc, dict):
        return None
    etype = doc.get("type")
    obj = doc.get("object")
    if not isinstance(etype, str) or not isinstance(obj, dict):
        return None
    return WatchEvent(type=etype, object=obj)


#: a server asking for a longer pause than this is retried after this anyway (the watch is our
#: only view of the cluster)
MAX_RETRY_AFTER = 60.0


class Restart(Exception):
    """Ends one watch round; `relist` says whether the store must be listed again."""

    def __init__(
        self, reason: str, relist: bool, detail: str = "", healthy: bool = False, retry_after: float = 0.0
    ) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.relist = relist
        #: the server's Retry-After (seconds): the next round waits at least this long
        self.retry_after = retry_after
        #: the round did useful work (events arrived, or the stream lived long enough): a
        #: reconnect needs no backoff
        self.healthy = healthy


def classify_error(exc: BaseException) -> Restart:
    """An exception from list/watch -> the restart it causes."""
    if isinstance(exc, Restart):
        return exc
    if isinstance(exc, ApiException):
        if exc.status == 410:
            return Restart(GONE, True, error_message(exc))
        if is_too_large_rv(exc):
            return Restart(TOO_LARGE_RV, True, error_message(exc))
        return Restart(ERROR, False, error_message(exc), retry_after=_retry_after_of(exc))
    name = type(exc).__name__
    inner = getattr(exc, "reason", None)  # urllib3 MaxRetryError wraps the real cause
    if "ReadTimeout" in name or "ReadTimeout" in type(inner).__name__:
        return Restart(TIMEOUT, False, name)
    if isinstance(exc, TRANSPORT_ERRORS):
        return Restart(TRANSPORT_ERROR, False, f"{name}: {exc}")
    return Restart(ERROR, False, f"{name}: {exc}")


def _retry_after_of(exc: ApiException) -> float:
    headers = getattr(exc, "headers", None) or {}
    try:
        value = headers.get("Retry-After") or headers.get("retry-after")
        return min(MAX_RETRY_AFTER, max(0.0, float(value))) if value else 0.0
    except (TypeError, ValueError, AttributeError):
        return 0.0


def status_event_restart(status: Mapping[str, Any]) -> Restart:
    """An in-stream ERROR event (a Status object) -> the restart it causes."""
    code = status.get("code")
    message = str(status.get("message") or "")
    reason = str(status.get("reason") or "")
    detail = f"{code} {reason}: {message}".strip()
    if code == 410 or reason in ("Expired", "Gone"):
        return Restart(GONE, True, detail)
    if "too large resource version" in message.lower():
        return Restart(TOO_LARGE_RV, True, detail)
    return Restart(ERROR, False, detail)


class Stream(Protocol):
    def __iter__(self) -> Iterator[bytes]: ...


ListFn = Callable[[], tuple[Sequence[Mapping[str, Any]], str]]
#: watch_fn(resource_version) -> an iterable of lines (it may also have close()/shutdown())
WatchFn = Callable[[str], Iterable[bytes | str]]


class ListWatcher:
    """The list/watch loop of one kind, feeding one Store."""

    def __init__(
        self,
        resource: str,
        store: Store[Any],
        list_fn: ListFn,
        watch_fn: WatchFn,
        *,
        on_change: Callable[[], None] = lambda: None,
        on_restart: Callable[[str, str], None] | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        min_healthy_watch: float = 1.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        self.resource = resource
        self.name = name or resource
        self.store = store
        self._list_fn = list_fn
        self._watch_fn = watch_fn
        self._on_change = on_change
        self._on_restart = on_restart
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.min_healthy_watch = min_healthy_watch
        self._rng: random.Random = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream_lock = threading.Lock()
        self._stream: Any = None
        # state
        self.resource_version = ""
        self.need_list = True
        self.failures = 0
        self.restarts: Counter[str] = Counter()
        self.lists = 0
        self.watches = 0

    # -- one bounded round -----------------------------------------------------------------

    def step(self) -> Restart:
        """List if needed, then watch until the stream ends; return why the round ended."""
        watch_started: float | None = None
        try:
            if self.need_list:
                self._relist()
            watch_started = self._clock()
            return self._watch_once(watch_started)
        except Exception as exc:  # every failure is a restart, never a crash
            restart = classify_error(exc)
            if restart.relist:
                self.need_list = True
            if (
                restart.reason == TIMEOUT
                and watch_started is not None
                and self._clock() - watch_started >= self.min_healthy_watch
            ):
                restart.healthy = True  # a quiet stream hit the client read timeout: normal
            return restart

    def _relist(self) -> None:
        # its own frame: the raw list (every object as JSON, 30,000 ServiceAccounts at 10,000
        # namespaces) must not stay referenced from step() for the whole watch that follows
        items, rv = self._list_fn()
        self.lists += 1
        self.store.replace_all(items)
        self.resource_version = rv
        self.need_list = False
        self._changed()

    def _watch_once(self, started: float) -> Restart:
        delivered = 0
        self.watches += 1
        stream = self._watch_fn(self.resource_version)
        with self._stream_lock:
            self._stream = stream
        try:
            if self._stop.is_set():
                return Restart(STREAM_ENDED, False, "stopping")
            for line in stream:
                event = parse_event(line)
                if event is None:
                    continue
                if event.type == "ERROR":
                    restart = status_event_restart(event.object)
                    if restart.relist:
                        self.need_list = True
                    restart.healthy = restart.reason == GONE and bool(delivered)
                    return restart
                if event.type not in KNOWN_TYPES:
                    log.info("watch %s: ignoring an event of unknown type %r", self.name, event.type)
                    continue
                rv = event.resource_version
                if event.type == "BOOKMARK":
                    if rv:
                        self.resource_version = rv
                    delivered += 1
                    continue
                if event.type == "DELETED":
                    self.store.delete(event.object)
                else:
                    self.store.upsert(event.object)
                if rv:
                    self.resource_version = rv
                delivered += 1
                self._changed()
                if self._stop.is_set():
                    break
        finally:
            with self._stream_lock:
                self._stream = None
            _close_stream(stream)
        healthy = bool(delivered) or self._clock() - started >= self.min_healthy_watch
        return Restart(STREAM_ENDED, False, f"{delivered} events", healthy=healthy)

    def _changed(self) -> None:
        try:
            self._on_change()
        except Exception:
            log.exception("on_change hook failed")

    # -- the loop --------------------------------------------------------------------------

    def delay_for(self, restart: Restart) -> float:
        """How long to wait before the next round (updates the failure count)."""
        if restart.healthy:
            self.failures = 0
            return 0.0
        self.failures += 1
        if restart.reason == GONE and self.failures == 1:
            return 0.0  # one 410 is routine: relist at once
        base = min(self.backoff_max, self.backoff_initial * (2 ** (self.failures - 1)))
        return max(restart.retry_after, float(base * (0.5 + 0.5 * self._rng.random())))

    def record(self, restart: Restart) -> None:
        self.restarts[restart.reason] += 1
        if restart.reason in (STREAM_ENDED, TIMEOUT):
            log.debug("watch %s: %s, reconnecting from %s", self.name, restart, self.resource_version)
        elif restart.reason == GONE:
            log.info("watch %s: %s, relisting", self.name, restart)
        else:
            log.warning("watch %s restarts: %s", self.name, restart)
        if self._on_restart is not None:
            try:
                self._on_restart(self.resource, restart.reason)
            except Exception:
                log.debug("on_restart hook failed", exc_info=True)

    def run(self) -> None:
        while not self._stop.is_set():
            restart = self.step()
            if self._stop.is_set():
                break
            self.record(restart)
            delay = self.delay_for(restart)
            if delay > 0 and self._stop.wait(delay):
                break

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run_logged, name=f"watch-{self.name}", daemon=True)
        self._thread.start()

    def _run_logged(self) -> None:
        try:
            self.run()
        except BaseException:  # pragma: no cover - run() catches everything it expects
            log.exception("watch %s died", self.name)

    def stop(self, timeout: float = 2.0) -> None:
        """Ask the loop to stop, break a blocked read, and wait up to `timeout` for the thread."""
        self._stop.set()
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            _close_stream(stream, shutdown=True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _close_stream(stream: Any, shutdown: bool = False) -> None:
    for attr in (("shutdown", "close") if shutdown else ("close",)):
        fn = getattr(stream, attr, None)
        if callable(fn):
            try:
                fn()
            except Exception:
                log.debug("closing a watch stream failed", exc_info=True)


# ----------------------------------------------------------------------------------------------
# real list/watch functions over the raw JSON client


class HttpStream:
    """A watch response as an iterable of lines; shutdown() from another thread breaks a read."""

    def __init__(self, response: Any) -> None:
        self.response = response

    def __iter__(self) -> Iterator[bytes]:
        return iter(iter_lines(self._chunks()))

    def _chunks(self) -> Iterator[bytes]:
        resp = self.response
        if getattr(resp, "chunked", False) and resp.supports_chunked_reads():
            yield from resp.read_chunked(None, decode_content=True)
            return
        while True:
            data = resp.read1(65536)
            if not data:
                return
            yield data

    def shutdown(self) -> None:
        fn = getattr(self.response, "shutdown", None)
        if callable(fn):
            fn()

    def close(self) -> None:
        try:
            self.response.close()
        finally:
            release = getattr(self.response, "release_conn", None)
            if callable(release):
                release()


def make_list_fn(
    clients: KubeClients, api: Any, path: str, query: Sequence[tuple[str, Any]], page_size: int = 500
) -> ListFn:
    """GET `path` (paginated); returns (items, the list's resourceVersion)."""

    def list_fn() -> tuple[list[Mapping[str, Any]], str]:
        items: list[Mapping[str, Any]] = []
        cont = ""
        rv = ""
        while True:
            q = [*query, ("limit", page_size)]
            if cont:
                q.append(("continue", cont))
            body = request_json(api, "GET", path, query=q, timeout=clients.settings.request_timeout)
            items.extend(i for i in body.get("items") or () if isinstance(i, dict))
            meta = body.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or rv)
            cont = str(meta.get("continue") or "")
            if not cont:
                return items, rv

    return list_fn


def make_watch_fn(clients: KubeClients, api: Any, path: str, query: Sequence[tuple[str, Any]]) -> WatchFn:
    s = clients.settings
    timeout = (s.request_timeout[0], s.watch_read_timeout)

    def watch_fn(resource_version: str) -> HttpStream:
        q = [
            *query,
            ("watch", True),
            ("allowWatchBookmarks", True),
            ("timeoutSeconds", int(s.watch_timeout_seconds)),
        ]
        if resource_version:
            q.append(("resourceVersion", resource_version))
        return HttpStream(open_stream(api, path, query=q, timeout=timeout))

    return watch_fn
