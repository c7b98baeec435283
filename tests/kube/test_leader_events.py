"""Leader election with two electors, and Event aggregation, against the fake API server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from acr_helper.kube.client import KubeClients
from acr_helper.kube.events import EventRecorder
from acr_helper.kube.leader import LeaderElector
from tests.kube import objects as o
from tests.kube.conftest import eventually

LEASE = dict(name="acr-helper", namespace="kube-system", lease_duration=1.0, renew_deadline=0.8,
             retry_period=0.05)


_made: list[LeaderElector] = []


@pytest.fixture(autouse=True)
def _stop_electors() -> Iterator[None]:
    yield
    while _made:
        _made.pop().stop(release=False)


def elector(clients: KubeClients, identity: str, changes: list[tuple[str, bool]]) -> LeaderElector:
    e = LeaderElector(clients, identity=identity, on_change=lambda v: changes.append((identity, v)),
                      **LEASE)  # type: ignore[arg-type]
    _made.append(e)
    return e


def test_two_electors_one_leader_then_takeover_after_expiry(fake: Any, clients: KubeClients) -> None:
    fake.create(o.namespace("kube-system"))
    changes: list[tuple[str, bool]] = []
    a, b = elector(clients, "a", changes), elector(clients, "b", changes)
    a.start()
    eventually(a.is_leader)
    b.start()
    time.sleep(0.5)  # b keeps trying while a renews
    assert a.is_leader() and not b.is_leader()
    lease = fake.get("Lease", "kube-system", "acr-helper")
    assert lease["spec"]["holderIdentity"] == "a"
    # a dies without releasing: b takes over once the lease has not been renewed for its duration
    a.stop(release=False)
    t0 = time.monotonic()
    eventually(b.is_leader, timeout=5)
    waited = time.monotonic() - t0
    assert 0.7 <= waited <= 2.5, waited
    assert fake.get("Lease", "kube-system", "acr-helper")["spec"]["holderIdentity"] == "b"
    assert fake.get("Lease", "kube-system", "acr-helper")["spec"]["leaseTransitions"] >= 1
    b.stop()
    assert ("a", True) in changes and ("b", True) in changes


def test_release_on_stop_gives_immediate_takeover(fake: Any, clients: KubeClients) -> None:
    fake.create(o.namespace("kube-system"))
    changes: list[tuple[str, bool]] = []
    a, b = elector(clients, "a", changes), elector(clients, "b", changes)
    a.start()
    eventually(a.is_leader)
    b.start()
    time.sleep(0.2)
    t0 = time.monotonic()
    a.stop(release=True)
    assert not a.is_leader()
    eventually(b.is_leader, timeout=5)
    assert time.monotonic() - t0 < 0.6  # no waiting for the lease duration
    spec = fake.get("Lease", "kube-system", "acr-helper")["spec"]
    assert spec["holderIdentity"] == "b"
    b.stop(release=True)
    assert not fake.get("Lease", "kube-system", "acr-helper")["spec"].get("holderIdentity")


def test_leader_steps_down_when_it_cannot_renew(fake: Any, clients: KubeClients) -> None:
    fake.create(o.namespace("kube-system"))
    changes: list[tuple[str, bool]] = []
    a = elector(clients, "a", changes)
    a.start()
    eventually(a.is_leader)
    fake.inject(verb="update", resource="leases", code=500, times=1000)
    fake.inject(verb="get", resource="leases", code=500, times=1000)
    eventually(lambda: not a.is_leader(), timeout=3)
    eventually(lambda: ("a", False) in changes, timeout=3)
    a.stop(release=False)


def test_events_are_aggregated_and_never_raise(fake: Any, clients: KubeClients) -> None:
    fake.create(o.namespace("kube-system"))
    fake.create(o.namespace("team-a"))
    rec = EventRecorder(clients, namespace_fallback="kube-system")
    for _ in range(3):
        rec.event(kind="ConfigMap", namespace="kube-system", name="acr-configuration", uid="u1",
                  type="Warning", reason="ConfigInvalid", message="bad key")
    rec.event(kind="ConfigMap", namespace="kube-system", name="acr-configuration", uid="u1",
              type="Warning", reason="ConfigInvalid", message="another problem")
    rec.event(kind="Namespace", namespace="", name="team-a", uid=None, type="Normal",
              reason="Cleaned", message="removed")
    events = fake.list("events", "kube-system")
    by_msg = {e["message"]: e for e in events}
    assert by_msg["bad key"]["count"] == 3
    assert by_msg["another problem"]["count"] == 1
    assert by_msg["bad key"]["involvedObject"]["name"] == "acr-configuration"
    assert by_msg["bad key"]["source"]["component"] == "acr-helper"
    assert by_msg["removed"]["involvedObject"]["kind"] == "Namespace"
    assert "namespace" not in by_msg["removed"]["involvedObject"]
    fake.inject(verb="create", resource="events", code=500, times=1)
    rec.event(kind="ConfigMap", namespace="kube-system", name="x", uid=None, type="Warning",
              reason="R", message="m")  # does not raise
    assert rec.failures == 1
