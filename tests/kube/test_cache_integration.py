"""ClusterCache against the in-process fake API server: sync, events, relists, extra Secrets."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from acr_helper.kube.cache import ClusterCache
from acr_helper.kube.client import KubeClients
from acr_helper.settings import KubeSettings
from tests.kube import objects as o
from tests.kube.conftest import eventually


class Changes:
    def __init__(self) -> None:
        self.count = 0
        self.restarts: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def change(self) -> None:
        with self.lock:
            self.count += 1

    def restart(self, resource: str, reason: str) -> None:
        with self.lock:
            self.restarts[(resource, reason)] += 1


def seed(fake: Any) -> None:
    for ns in ("default", "kube-system", "team-a"):
        fake.create(o.namespace(ns))
    fake.create(o.service_account("default", "default"))
    fake.create(o.service_account("team-a", "default", pull=("theirs",)))
    fake.create(o.service_account("team-a", "builder"))
    fake.create(o.secret("team-a"))  # ours
    fake.create(o.secret("default", owned=False))  # someone else's, with our name
    fake.create(o.secret("team-a", "unrelated", owned=False, data={"password": "fake-secret-not-real"}))
    fake.create(o.config_map("kube-system", "acr-configuration", {"watch-namespace": "all"}))
    fake.create(o.config_map("kube-system", "other-config", {"x": "y"}))


@pytest.fixture
def cache_factory(clients: KubeClients, settings: KubeSettings):  # type: ignore[no-untyped-def]
    made: list[ClusterCache] = []

    def make(**over: Any) -> tuple[ClusterCache, Changes]:
        ch = Changes()
        s = KubeSettings(**{**settings.__dict__, **over})
        cache = ClusterCache(clients, s, on_change=ch.change, on_watch_restart=ch.restart)
        made.append(cache)
        return cache, ch

    yield make
    for c in made:
        c.stop()


def test_cache_syncs_and_snapshots_only_what_it_watches(fake: Any, cache_factory: Any) -> None:
    seed(fake)
    cache, ch = cache_factory()
    assert not cache.synced()
    cache.start()
    assert cache.wait_synced(5)
    view = cache.snapshot()
    assert view.synced
    assert set(view.namespaces) == {"default", "kube-system", "team-a"}
    assert view.service_accounts[("team-a", "default")].image_pull_secrets == ("theirs",)
    assert set(view.service_accounts) >= {("default", "default"), ("team-a", "default"),
                                          ("team-a", "builder")}
    # only Secrets with the managed name, ours or not; never other Secrets
    assert set(view.secrets) == {"team-a", "default"}
    assert view.secrets["team-a"].owned and not view.secrets["default"].owned
    assert all(s.name == o.SECRET for s in view.secrets.values())
    cm = cache.config_map()
    assert cm is not None and dict(cm.data) == {"watch-namespace": "all"}
    assert cache.snapshot() is view  # nothing changed: the same immutable snapshot
    assert ch.count >= 4


def test_watch_events_update_the_snapshot_and_wake_the_loop(fake: Any, cache_factory: Any) -> None:
    seed(fake)
    cache, ch = cache_factory()
    cache.start()
    assert cache.wait_synced(5)
    before = ch.count
    fake.create(o.namespace("team-b", **{"acr-helper/exclude": "true"}))
    fake.create(o.service_account("team-b", "default"))
    fake.delete("serviceaccounts", "team-a", "builder")
    fake.create(o.secret("team-b"))
    eventually(lambda: "team-b" in cache.snapshot().namespaces
               and ("team-b", "default") in cache.snapshot().service_accounts
               and ("team-a", "builder") not in cache.snapshot().service_accounts
               and "team-b" in cache.snapshot().secrets)
    assert cache.snapshot().namespaces["team-b"].labels["acr-helper/exclude"] == "true"
    assert ch.count >= before + 4
    # the config ConfigMap: edits arrive, other ConfigMaps never do
    cm = fake.get("configmaps", "kube-system", "acr-configuration")
    cm["data"] = {"watch-namespace": "team-*"}
    fake.update(cm)
    eventually(lambda: (c := cache.config_map()) is not None and c.data.get("watch-namespace") == "team-*")
    fake.delete("configmaps", "kube-system", "acr-configuration")
    eventually(lambda: cache.config_map() is None)


def test_relist_after_compaction_replaces_the_store(fake: Any, cache_factory: Any) -> None:
    seed(fake)
    cache, ch = cache_factory()
    cache.start()
    assert cache.wait_synced(5)
    assert fake.wait_for_watches(4)
    lists_before = fake.count(verb="list", resource="namespaces")
    # in-stream 410 on every watch: each must relist
    fake.force_watch_error_410()
    fake.create(o.namespace("after-compaction"))
    eventually(lambda: "after-compaction" in cache.snapshot().namespaces)
    eventually(lambda: ch.restarts[("namespaces", "gone")] >= 1)
    assert fake.count(verb="list", resource="namespaces") > lists_before
    assert cache.synced()


def test_reconnect_after_compaction_gets_410_on_connect_and_relists(fake: Any, cache_factory: Any) -> None:
    seed(fake)
    cache, ch = cache_factory()
    cache.start()
    assert cache.wait_synced(5)
    assert fake.wait_for_watches(4)
    lists_before = fake.count(verb="list", resource="serviceaccounts")
    fake.inject(verb="watch", resource="serviceaccounts", code=503, times=10_000)
    fake.cut_watches("serviceaccounts")  # disconnected, and kept away by the 503s
    eventually(lambda: fake.count(verb="watch", resource="serviceaccounts", code=503) >= 1)
    fake.create(o.service_account("default", "missed"))  # changes we never see as events
    fake.delete("serviceaccounts", "team-a", "builder")
    fake.compact()  # and their history is gone: the reconnect from our old RV gets HTTP 410
    fake.clear_faults()
    eventually(lambda: ("default", "missed") in cache.snapshot().service_accounts)
    assert fake.count(verb="list", resource="serviceaccounts") > lists_before
    assert ch.restarts[("serviceaccounts", "gone")] >= 1
    assert ("team-a", "builder") not in cache.snapshot().service_accounts  # the relist replaced all
    # the other shape of 410: an HTTP 410 on connect
    lists_before = fake.count(verb="list", resource="namespaces")
    fake.inject(verb="watch", resource="namespaces", code=410, times=1)
    fake.cut_watches("namespaces")
    eventually(lambda: fake.count(verb="list", resource="namespaces") > lists_before)
    eventually(lambda: fake.count(verb="watch", resource="namespaces", code=410) == 1)
    assert ch.restarts[("namespaces", "gone")] >= 1


def test_cut_watches_reconnect_without_relisting(fake: Any, cache_factory: Any) -> None:
    seed(fake)
    cache, ch = cache_factory()
    cache.start()
    assert cache.wait_synced(5)
    assert fake.wait_for_watches(4)
    lists_before = fake.count(verb="list", resource="serviceaccounts")
    watches_before = fake.count(verb="watch", resource="serviceaccounts")
    fake.cut_watches()
    eventually(lambda: fake.count(verb="watch", resource="serviceaccounts") > watches_before)
    fake.create(o.service_account("default", "late"))
    eventually(lambda: ("default", "late") in cache.snapshot().service_accounts)
    assert fake.count(verb="list", resource="serviceaccounts") == lists_before
    assert sum(n for (r, why), n in ch.restarts.items() if why in ("transport-error", "stream-ended")) >= 1


def test_watch_errors_back_off_instead_of_spinning(fake: Any, cache_factory: Any) -> None:
    seed(fake)
    fake.inject(verb="watch", resource="namespaces", code=500, times=1000)
    cache, ch = cache_factory(backoff_initial=0.05, backoff_max=0.2)
    cache.start()
    assert cache.wait_synced(5)  # the lists work
    time.sleep(1.0)
    n = fake.count(verb="watch", resource="namespaces")
    assert 2 <= n <= 25  # jittered backoff: a handful per second, not thousands
    assert ch.restarts[("namespaces", "error")] >= 2


def test_extra_secret_watchers_follow_set_extra_secret_names(fake: Any, cache_factory: Any) -> None:
    seed(fake)
    fake.create(o.secret("kube-system", "alibaba-addon-secret", owned=False,
                         data={"access-key-id": "FAKE-AK-ID", "access-key-secret": "fake-secret-not-real"}))
    fake.create(o.secret("kube-system", "my-ak", owned=False,
                         data={"access-key-id": "FAKE-AK-2", "access-key-secret": "fake-secret-2"}))
    cache, _ = cache_factory(extra_secret_names=("alibaba-addon-secret",))
    cache.start()
    assert cache.wait_synced(5)
    eventually(lambda: cache.secret_data("alibaba-addon-secret"))
    assert cache.secret_data("alibaba-addon-secret") == {
        "access-key-id": "FAKE-AK-ID", "access-key-secret": "fake-secret-not-real"}
    assert cache.secret_data("my-ak") is None  # not watched
    assert "fake-secret" not in repr(cache.snapshot())
    cache.set_extra_secret_names(["my-ak"])  # waits briefly for the new watcher to sync
    assert cache.secret_data("my-ak") == {"access-key-id": "FAKE-AK-2", "access-key-secret": "fake-secret-2"}
    assert cache.secret_data("alibaba-addon-secret") is None
    assert cache.extra_secret_names() == ("my-ak",)
    s = fake.get("secrets", "kube-system", "my-ak")
    s["data"]["access-key-id"] = "RkFLRS1BSy0z"  # FAKE-AK-3
    fake.update(s)
    eventually(lambda: (cache.secret_data("my-ak") or {}).get("access-key-id") == "FAKE-AK-3")
    cache.set_extra_secret_names(["absent"])
    assert cache.secret_synced("absent") and cache.secret_data("absent") is None


def test_stop_returns_within_two_seconds(fake: Any, cache_factory: Any) -> None:
    seed(fake)
    cache, _ = cache_factory(extra_secret_names=("a", "b"))
    cache.start()
    assert cache.wait_synced(5)
    time.sleep(0.2)  # let every watcher block in a read
    t0 = time.monotonic()
    cache.stop()
    assert time.monotonic() - t0 < 2.0


def test_requests_are_reported_with_verb_resource_and_code(
    fake: Any, cache_factory: Any, requests_seen: list[tuple[str, str, int]]
) -> None:
    seed(fake)
    cache, _ = cache_factory()
    cache.start()
    assert cache.wait_synced(5)
    eventually(lambda: ("watch", "secrets", 200) in requests_seen)
    for kind in ("namespaces", "serviceaccounts", "secrets", "configmaps"):
        assert ("list", kind, 200) in requests_seen
        eventually(lambda kind=kind: ("watch", kind, 200) in requests_seen)
