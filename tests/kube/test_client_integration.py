"""KubeClients against the fake API server: config loading, request reporting, the shared limiter."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from acr_helper.kube.cache import ClusterCache
from acr_helper.kube.client import KubeClients, KubeConfigError, load_configuration
from acr_helper.kube.ratelimit import TokenBucket
from acr_helper.kube.secrets import read_secret_data
from acr_helper.settings import KubeSettings
from tests.kube import objects as o
from tests.kube.conftest import eventually


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.acquired = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class CountingBucket(TokenBucket):
    def __init__(self, t: FakeTime, qps: float, burst: int) -> None:
        super().__init__(qps, burst, clock=t.clock, sleep=t.sleep)
        self.t = t
        self.grants: list[float] = []

    def acquire(self) -> float:
        w = super().acquire()
        self.grants.append(self.t.now)
        return w


def test_kubeconfig_from_the_environment_when_not_in_cluster(
    fake: Any, kubeconfig: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    cfg = load_configuration(KubeSettings())
    assert cfg.host == fake.url
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    with pytest.raises(KubeConfigError):
        load_configuration(KubeSettings())
    with pytest.raises(KubeConfigError):
        load_configuration(KubeSettings(kubeconfig="/nonexistent/kubeconfig"))


def test_every_request_is_reported_and_transport_errors_have_code_0(
    fake: Any, clients: KubeClients, requests_seen: list[tuple[str, str, int]]
) -> None:
    fake.create(o.namespace("a"))
    clients.request("GET", "/api/v1/namespaces/a")
    with pytest.raises(Exception):
        clients.request("GET", "/api/v1/namespaces/a/secrets/nope")
    assert requests_seen == [("get", "namespaces", 200), ("get", "secrets", 404)]
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    clients.configuration.host = f"http://127.0.0.1:{port}"
    clients.configuration.retries = 0
    dead = KubeClients(clients.settings, configuration=clients.configuration,
                       on_request=lambda v, r, c: requests_seen.append((v, r, c)))
    with pytest.raises(Exception):
        dead.request("GET", "/api/v1/namespaces")
    assert requests_seen[-1] == ("list", "namespaces", 0)
    dead.close()


def test_the_limiter_paces_requests_at_qps_after_the_burst(fake: Any, settings: KubeSettings) -> None:
    fake.create(o.namespace("a"))
    t = FakeTime()
    bucket = CountingBucket(t, qps=5.0, burst=3)
    clients = KubeClients(settings, limiter=bucket)
    try:
        for _ in range(13):
            clients.request("GET", "/api/v1/namespaces/a")
    finally:
        clients.close()
    assert fake.count(verb="get", resource="namespaces") == 13
    assert bucket.grants[:3] == [0.0, 0.0, 0.0]
    assert bucket.grants[-1] == pytest.approx(10 / 5.0)  # 10 paced requests at 5/s = 2 s (fake time)
    gaps = [b - a for a, b in zip(bucket.grants[3:], bucket.grants[4:], strict=False)]
    assert all(g == pytest.approx(0.2) for g in gaps)


def test_watches_take_one_token_on_connect_only(fake: Any, settings: KubeSettings) -> None:
    for i in range(3):
        fake.create(o.namespace(f"ns-{i}"))
    t = FakeTime()
    bucket = CountingBucket(t, qps=1000.0, burst=1000)
    clients = KubeClients(settings, limiter=bucket)
    cache = ClusterCache(clients, settings, on_change=lambda: None)
    try:
        cache.start()
        assert cache.wait_synced(5)
        assert fake.wait_for_watches(4)
        for i in range(20):
            fake.create(o.namespace(f"more-{i}"))
        eventually(lambda: len(cache.snapshot().namespaces) == 23)
    finally:
        cache.stop()
        clients.close()
    # 4 lists + 4 watch connects; 20 watch events cost nothing
    assert len(bucket.grants) == 8
    eventually(lambda: fake.count() == 8)


def test_read_secret_data(fake: Any, kubeconfig: str) -> None:
    fake.create(o.namespace("kube-system"))
    fake.create(o.secret("kube-system", "ak", owned=False,
                         data={"access-key-id": "FAKE-AK-ID", "access-key-secret": "fake-secret-not-real"}))
    assert read_secret_data(kubeconfig, None, "kube-system", "ak") == {
        "access-key-id": "FAKE-AK-ID", "access-key-secret": "fake-secret-not-real"}
    assert read_secret_data(kubeconfig, None, "kube-system", "missing") is None


