"""Fixtures: the in-process fake API server and KubeClients pointed at it through a kubeconfig."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from acr_helper.kube.client import KubeClients
from acr_helper.settings import KubeSettings


@pytest.fixture
def fake() -> Iterator[Any]:
    mod = pytest.importorskip("acr_helper.kube.fakeserver")
    api = mod.FakeKubeAPI()
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def kubeconfig(fake: Any, tmp_path: Path) -> str:
    path = tmp_path / "kubeconfig"
    fake.write_kubeconfig(str(path))
    return str(path)


@pytest.fixture
def settings(kubeconfig: str) -> KubeSettings:
    return KubeSettings(
        kubeconfig=kubeconfig,
        qps=0,  # unlimited in functional tests; the limiter has its own tests
        burst=1,
        backoff_initial=0.05,
        backoff_max=0.2,
        request_timeout=(2.0, 5.0),
        watch_read_timeout=5.0,
        watch_timeout_seconds=30,
        extra_secret_names=(),
    )


@pytest.fixture
def requests_seen() -> list[tuple[str, str, int]]:
    return []


@pytest.fixture
def clients(settings: KubeSettings, requests_seen: list[tuple[str, str, int]]) -> Iterator[KubeClients]:
    c = KubeClients(settings, on_request=lambda v, r, code: requests_seen.append((v, r, code)))
    try:
        yield c
    finally:
        c.close()


def eventually(cond: Callable[[], Any], timeout: float = 5.0, interval: float = 0.01) -> Any:
    """Poll until cond() is truthy; fail with a clear message otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)
