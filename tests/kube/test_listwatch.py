"""The list/watch adapter on scripted streams: no server, list and watch functions injected."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from acr_helper.kube import convert
from acr_helper.kube.listwatch import (
    ERROR,
    GONE,
    STREAM_ENDED,
    TIMEOUT,
    TOO_LARGE_RV,
    TRANSPORT_ERROR,
    ListWatcher,
    parse_event,
)
from acr_helper.kube.store import Store

# ----------------------------------------------------------------------------------------------
# script helpers


def ns(name: str, rv: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv, "labels": labels}}


def line(etype: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": etype, "object": obj}).encode()


def bookmark(rv: str) -> bytes:
    return line("BOOKMARK", {"kind": "Namespace", "metadata": {"resourceVersion": rv}})


def error_line(code: int, message: str = "", reason: str = "") -> bytes:
    return line("ERROR", {"kind": "Status", "status": "Failure", "code": code, "message": message,
                          "reason": reason})


def api_error(status: int, message: str = "", reason: str = "") -> ApiException:
    exc = ApiException(status=status, reason=reason or "Error")
    exc.body = json.dumps({"kind": "Status", "code": status, "message": message, "reason": reason})
    return exc


class Script:
    """Scripted list and watch functions; records the resourceVersions the watches start from."""

    def __init__(self, lists: list[Any], watches: list[Any]) -> None:
        self.lists = list(lists)
        self.watches = list(watches)
        self.watch_rvs: list[str] = []
        self.list_calls = 0

    def list_fn(self) -> tuple[list[dict[str, Any]], str]:
        self.list_calls += 1
        item = self.lists.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def watch_fn(self, rv: str) -> Any:
        self.watch_rvs.append(rv)
        item = self.watches.pop(0) if self.watches else []
        if isinstance(item, BaseException):
            raise item
        return item


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(script: Script, **kw: Any) -> tuple[ListWatcher, Store[Any], list[str], list[tuple[str, str]]]:
    store: Store[Any] = Store("namespaces", convert.namespace_info)
    changes: list[str] = []
    restarts: list[tuple[str, str]] = []
    kw.setdefault("clock", FakeClock())
    w = ListWatcher(
        "namespaces",
        store,
        script.list_fn,
        script.watch_fn,
        on_change=lambda: changes.append("x"),
        on_restart=lambda r, why: restarts.append((r, why)),
        rng=random.Random(7),
        **kw,
    )
    return w, store, changes, restarts


def names(store: Store[Any]) -> list[str]:
    return sorted(v.name for v in store.values())


# ----------------------------------------------------------------------------------------------
# parse_event: the one function that turns stream lines into events


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"\r", b"not json", b"[1,2]", b'"str"', b'{"type":"ADDED"}', b'{"object":{}}',
     b'{"type":3,"object":{}}', b'{"type":"ADDED","object":[]}', b"\xff\xfe"],
    ids=["empty", "spaces", "cr", "garbage", "array", "string", "no-object", "no-type", "bad-type",
         "object-not-dict", "bad-utf8"],
)
def test_parse_event_skips_lines_that_are_not_events(raw: bytes) -> None:
    assert parse_event(raw) is None


def test_parse_event_reads_type_object_and_resource_version() -> None:
    ev = parse_event(line("MODIFIED", ns("a", "42")) + b"\r")
    assert ev is not None
    assert ev.type == "MODIFIED"
    assert ev.object["metadata"]["name"] == "a"
    assert ev.resource_version == "42"
    assert parse_event(line("ADDED", ns("b", "7")).decode()) is not None  # str lines too


# ----------------------------------------------------------------------------------------------
# the scripted rounds


def test_normal_list_then_watch_from_the_lists_resource_version() -> None:
    script = Script(
        lists=[([ns("a", "3"), ns("b", "9")], "10")],  # item RVs in any order; the LIST's RV counts
        watches=[[line("ADDED", ns("c", "11")), line("MODIFIED", ns("a", "12", team="x")),
                  line("DELETED", ns("b", "13"))],
                 []],
    )
    w, store, changes, _ = make(script)
    assert not store.synced
    r = w.step()
    assert r.reason == STREAM_ENDED and r.healthy
    assert store.synced
    assert script.watch_rvs == ["10"]
    assert names(store) == ["a", "c"]
    assert store.get("", "a").labels["team"] == "x"
    assert w.resource_version == "13"
    assert len(changes) == 4  # the list, then one per event
    w.step()
    assert script.watch_rvs == ["10", "13"]  # reconnect from the last event's RV, no relist
    assert script.list_calls == 1


def test_410_on_connect_relists_and_replaces_the_store_wholesale() -> None:
    script = Script(
        lists=[([ns("a", "1"), ns("b", "2")], "5"), ([ns("b", "2"), ns("z", "30")], "31")],
        watches=[api_error(410, "too old resource version: 5 (20)", "Expired"), []],
    )
    w, store, _, _ = make(script)
    r = w.step()
    assert r.reason == GONE and r.relist
    assert w.delay_for(r) == 0.0  # one 410 is routine
    w.step()
    assert script.list_calls == 2
    assert names(store) == ["b", "z"]  # "a" was deleted while we were away: gone from the store
    assert script.watch_rvs == ["5", "31"]  # never the stale RV again


def test_410_mid_stream_keeps_earlier_events_then_relists() -> None:
    script = Script(
        lists=[([ns("a", "1")], "5"), ([ns("a", "1"), ns("b", "8")], "40")],
        watches=[[line("ADDED", ns("b", "8")), error_line(410, "too old resource version", "Expired"),
                  line("ADDED", ns("never", "9"))],
                 []],
    )
    w, store, _, _ = make(script)
    r = w.step()
    assert r.reason == GONE
    assert names(store) == ["a", "b"]  # the event before the ERROR was applied, nothing after
    w.step()
    assert script.watch_rvs == ["5", "40"]
    assert script.list_calls == 2


def test_blank_and_undecodable_lines_are_skipped() -> None:
    script = Script(
        lists=[([], "1")],
        watches=[[b"", line("ADDED", ns("a", "2")), b"   ", b"{broken", b"\xff",
                  line("ADDED", ns("b", "3")), b""]],
    )
    w, store, changes, _ = make(script)
    r = w.step()
    assert r.reason == STREAM_ENDED
    assert names(store) == ["a", "b"]
    assert w.resource_version == "3"
    assert len(changes) == 3


def test_bookmarks_move_the_resource_version_only() -> None:
    script = Script(lists=[([ns("a", "1")], "5")], watches=[[bookmark("20"), bookmark("21")], []])
    w, store, changes, _ = make(script)
    r = w.step()
    gen_after_list = store.generation
    assert r.reason == STREAM_ENDED and r.healthy
    assert names(store) == ["a"]
    assert len(changes) == 1  # the list only; bookmarks never wake the loop
    assert w.resource_version == "21"
    w.step()
    assert script.watch_rvs == ["5", "21"]
    assert store.generation == gen_after_list


def test_unknown_event_types_are_ignored() -> None:
    script = Script(lists=[([], "1")], watches=[[line("WEIRD", ns("x", "2")), line("ADDED", ns("a", "3"))]])
    w, store, _, _ = make(script)
    w.step()
    assert names(store) == ["a"]


def test_silent_end_reconnects_and_backs_off_only_when_it_keeps_happening() -> None:
    clock = FakeClock()
    script = Script(lists=[([], "1")], watches=[[], [], [], [line("ADDED", ns("a", "2"))], []])
    w, _, _, _ = make(script, clock=clock, backoff_initial=1.0, backoff_max=30.0)
    delays = []
    for _ in range(3):  # three instant, empty streams in a row
        delays.append(w.delay_for(w.step()))
    assert all(d > 0 for d in delays)
    assert 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0 and 2.0 <= delays[2] <= 4.0
    r = w.step()  # a stream that delivered an event is healthy: no backoff, counter reset
    assert r.healthy and w.delay_for(r) == 0.0 and w.failures == 0
    assert script.watch_rvs == ["1", "1", "1", "1"]  # never a relist for a silent end
    # a quiet stream that lived long enough is healthy too
    script.watches = [_SlowEmpty(clock, 5.0)]
    r = w.step()
    assert r.reason == STREAM_ENDED and r.healthy


class _SlowEmpty:
    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock, self.seconds = clock, seconds

    def __iter__(self) -> Iterator[bytes]:
        self.clock.t += self.seconds
        return iter(())


def _raising(lines: list[bytes], exc: BaseException) -> Iterator[bytes]:
    yield from lines
    raise exc


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (urllib3.exceptions.ProtocolError("Connection broken: InvalidChunkLength"), TRANSPORT_ERROR),
        (http.client.IncompleteRead(b"partial"), TRANSPORT_ERROR),
        (ConnectionResetError(104, "reset"), TRANSPORT_ERROR),
        (urllib3.exceptions.ReadTimeoutError(None, "/api", "Read timed out."), TIMEOUT),
    ],
    ids=["protocol-error", "incomplete-read", "connection-reset", "read-timeout"],
)
def test_transport_errors_mid_stream_reconnect_from_the_last_rv(exc: BaseException, reason: str) -> None:
    script = Script(lists=[([], "1")], watches=[_raising([line("ADDED", ns("a", "2"))], exc), []])
    w, store, _, _ = make(script)
    r = w.step()
    assert r.reason == reason and not r.relist
    assert names(store) == ["a"]
    w.step()
    assert script.watch_rvs == ["1", "2"]
    assert script.list_calls == 1


def test_connection_refused_on_connect_backs_off_exponentially() -> None:
    refused = urllib3.exceptions.MaxRetryError(None, "/api", ConnectionRefusedError(111, "refused"))
    script = Script(lists=[([], "1")], watches=[refused, refused, refused, []])
    w, _, _, _ = make(script, backoff_initial=0.5, backoff_max=1.5)
    delays = [w.delay_for(w.step()) for _ in range(3)]
    assert 0.25 <= delays[0] <= 0.5 and 0.5 <= delays[1] <= 1.0 and 0.75 <= delays[2] <= 1.5  # capped
    assert script.list_calls == 1


def test_too_large_resource_version_relists_with_backoff() -> None:
    script = Script(
        lists=[([ns("a", "1")], "100"), ([ns("a", "1")], "90"), ([ns("a", "1")], "95")],
        watches=[api_error(504, 'Timeout: Too large resource version: 100, current: 90', "Timeout"),
                 [error_line(504, "Too large resource version: 90, current: 80", "Timeout")],
                 []],
    )
    w, _, _, _ = make(script)
    r1 = w.step()
    assert r1.reason == TOO_LARGE_RV and r1.relist
    assert w.delay_for(r1) > 0
    r2 = w.step()
    assert r2.reason == TOO_LARGE_RV
    w.step()
    assert script.list_calls == 3
    assert script.watch_rvs == ["100", "90", "95"]


def test_other_api_errors_back_off_and_do_not_relist() -> None:
    script = Script(
        lists=[api_error(403, "forbidden"), ([ns("a", "1")], "2")],
        watches=[[error_line(500, "internal error")], api_error(500, "boom"), []],
    )
    w, store, _, _ = make(script)
    r = w.step()
    assert r.reason == ERROR and not store.synced
    assert w.delay_for(r) > 0
    r = w.step()  # the list works now
    assert store.synced and r.reason == ERROR and not r.relist  # in-stream 500
    r = w.step()
    assert r.reason == ERROR  # 500 on connect
    w.step()
    assert script.list_calls == 2
    assert script.watch_rvs == ["2", "2", "2"]


def test_resource_versions_are_opaque_strings() -> None:
    script = Script(lists=[([], "zz-1")], watches=[[line("ADDED", ns("a", "aa-0"))], []])
    w, _, _, _ = make(script)
    w.step()
    w.step()
    assert script.watch_rvs == ["zz-1", "aa-0"]  # followed, never compared


def test_a_relist_during_an_outage_keeps_the_old_store_and_synced_flag() -> None:
    script = Script(
        lists=[([ns("a", "1")], "2"), urllib3.exceptions.ProtocolError("down"), ([ns("b", "3")], "4")],
        watches=[api_error(410, "gone"), []],
    )
    w, store, _, _ = make(script)
    w.step()  # list ok, watch 410
    r = w.step()  # relist fails
    assert r.reason == TRANSPORT_ERROR and w.need_list
    assert store.synced and names(store) == ["a"]
    w.step()
    assert names(store) == ["b"]


# ----------------------------------------------------------------------------------------------
# the thread


class _BlockingStream:
    """A stream that blocks like a quiet socket until shutdown() is called."""

    def __init__(self) -> None:
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        self.closed.wait(30)
        if self.closed.is_set():
            raise urllib3.exceptions.ProtocolError("shut down")
        return iter(())

    def shutdown(self) -> None:
        self.closed.set()

    def close(self) -> None:
        self.closed.set()


def test_run_counts_restarts_and_stop_returns_quickly_even_when_a_read_blocks() -> None:
    blocking = _BlockingStream()
    script = Script(
        lists=[([ns("a", "1")], "2"), ([ns("a", "1"), ns("b", "5")], "6")],
        watches=[[line("ADDED", ns("c", "3"))], api_error(410, "gone"), blocking],
    )
    store: Store[Any] = Store("namespaces", convert.namespace_info)
    restarts: list[tuple[str, str]] = []
    w = ListWatcher("namespaces", store, script.list_fn, script.watch_fn,
                    on_restart=lambda r, why: restarts.append((r, why)), backoff_initial=0.01)
    w.start()
    deadline = time.monotonic() + 5
    while len(script.watch_rvs) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.wait_synced(1)
    t0 = time.monotonic()
    w.stop(timeout=2.0)
    assert time.monotonic() - t0 < 2.0
    assert not w.alive()
    assert restarts == [("namespaces", STREAM_ENDED), ("namespaces", GONE)]
    assert names(store) == ["a", "b"]
    assert dict(w.restarts) == {STREAM_ENDED: 1, GONE: 1}


def test_retry_after_on_a_failed_watch_connect_is_honoured():
    from kubernetes.client import ApiException

    from acr_helper.kube.listwatch import Restart, classify_error

    exc = ApiException(status=500, reason="Internal Server Error")
    exc.headers = {"Retry-After": "3"}
    restart = classify_error(exc)
    assert isinstance(restart, Restart) and restart.retry_after == 3.0
    exc.headers = {"Retry-After": "3600"}
    assert classify_error(exc).retry_after == 60.0  # capped: the watch is our only view
