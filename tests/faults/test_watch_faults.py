"""Watch faults (cut streams, 410 on connect and mid-stream, relist after history compaction) and
409 storms on a ServiceAccount, against the real `acr-helper run` subprocess."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import BASE, EE, SECRET, Cluster, Controller, converged, decode_auths, managed, wait_for

pytestmark = [pytest.mark.e2e]

EE_ONLY = {**BASE, "acr-registry-info": f'- instanceId: "{EE}"\n'}
KINDS = ("namespaces", "serviceaccounts", "secrets", "configmaps")


def restarts(ctl: Controller, reason: str | None = None) -> float:
    code, body = ctl.get("/metrics")
    assert code == 200
    total = 0.0
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            if s.name == "acr_helper_watch_restarts_total" and (reason is None or s.labels["reason"] == reason):
                total += s.value
    return total


def lists(cluster: Cluster, resource: str) -> int:
    return cluster.api.count(verb="list", resource=resource, code=200)


def test_cut_watch_streams_reconnect_and_nothing_is_missed(
    cluster: Cluster, cloud: Any, faults_run: Callable[..., Controller]
) -> None:
    cluster.set_config(EE_ONLY)
    cluster.add_namespace("team-a")
    ctl = faults_run()
    wait_for(converged(cluster, "team-a"), what="team-a")
    for i in range(3):
        assert cluster.api.wait_for_watches(len(KINDS), timeout=10), "every informer watches"
        cut = cluster.api.cut_watches()
        assert cut >= len(KINDS)
        # changes made right after the cut, before or while the controller reconnects
        cluster.add_namespace(f"cut-{i}")
        wait_for(converged(cluster, f"cut-{i}"), timeout=15, what=f"cut-{i} after cut {i}")
    assert restarts(ctl) >= 3 * len(KINDS)
    assert ctl.proc.poll() is None


def test_410_on_connect_relists(cluster: Cluster, cloud: Any, faults_run: Callable[..., Controller]) -> None:
    cluster.set_config(EE_ONLY)
    cluster.add_namespace("team-a")
    fault = cluster.api.inject(verb="watch", resource="namespaces", code=410, times=1)
    ctl = faults_run()
    wait_for(lambda: fault.hits == 1, what="the 410 served")
    wait_for(lambda: lists(cluster, "namespaces") >= 2, what="relist after the 410")
    cluster.add_namespace("team-late")
    wait_for(converged(cluster, "team-late"), timeout=15, what="namespace after the relist")
    assert converged(cluster, "team-a")()
    assert restarts(ctl, "gone") >= 1


def test_410_mid_stream_relists_every_kind(cluster: Cluster, cloud: Any,
                                           faults_run: Callable[..., Controller]) -> None:
    cluster.set_config(EE_ONLY)
    cluster.add_namespace("team-a")
    ctl = faults_run()
    wait_for(converged(cluster, "team-a"), what="team-a")
    assert cluster.api.wait_for_watches(len(KINDS), timeout=10)
    before = {k: lists(cluster, k) for k in KINDS}
    assert cluster.api.force_watch_error_410() >= len(KINDS)
    wait_for(lambda: all(lists(cluster, k) > before[k] for k in KINDS), what="every kind relisted")
    cluster.add_namespace("team-late")
    wait_for(converged(cluster, "team-late"), timeout=15, what="namespace after the relist")
    assert restarts(ctl, "gone") >= len(KINDS)


def test_relist_after_compaction_sees_deletions_made_while_disconnected(
    cluster: Cluster, cloud: Any, faults_run: Callable[..., Controller]
) -> None:
    cluster.set_config(EE_ONLY)
    for ns in ("team-a", "team-b", "team-c"):
        cluster.add_namespace(ns)
    ctl = faults_run("--resync-period", "1s")
    for ns in ("team-a", "team-b", "team-c"):
        wait_for(converged(cluster, ns), what=ns)
    # disconnect: every watch (re)connect fails from now on, and the open streams are cut
    blocked = cluster.api.inject(verb="watch", code=503, times=None)
    assert cluster.api.cut_watches() >= len(KINDS)
    wait_for(lambda: blocked.hits >= len(KINDS), what="the controller is disconnected")
    # while disconnected: a user deletes our Secret in team-a and our entry in team-c, a
    # namespace goes away with its contents, and the watch history is compacted
    cluster.api.delete("secrets", "team-a", SECRET)
    sa_c = cluster.api.get("serviceaccounts", "team-c", "default")
    sa_c["imagePullSecrets"] = []
    cluster.api.update(sa_c)
    cluster.api.delete("namespaces", None, "team-b")
    time.sleep(1.5)  # resyncs on the stale cache change nothing
    assert cluster.secret("team-a") is None
    cluster.api.compact()
    list_before = lists(cluster, "secrets")
    cluster.api.clear_faults()
    # reconnect from the old resourceVersion -> 410 -> relist: the deletions are seen and repaired
    wait_for(lambda: lists(cluster, "secrets") > list_before, timeout=20, what="secrets relisted")
    wait_for(converged(cluster, "team-a"), timeout=20, what="deleted Secret recreated")
    wait_for(converged(cluster, "team-c"), timeout=20, what="removed entry restored")
    assert cluster.api.get("namespaces", None, "team-b") is None
    assert cluster.secret("team-b") is None  # nothing written into a deleted namespace
    assert restarts(ctl, "gone") >= 1
    for ns in ("team-a", "team-c"):
        for entry in decode_auths(cluster.secret(ns)).values():
            assert cloud.is_valid_registry_login(entry["username"], entry["password"])


def sa_conflicts(cluster: Cluster) -> int:
    return sum(cluster.api.count(verb=v, resource="serviceaccounts", code=409) for v in ("patch", "update"))


def test_409_storm_from_a_concurrent_writer_keeps_both_entries(
    cluster: Cluster, cloud: Any, faults_run: Callable[..., Controller]
) -> None:
    """Another controller keeps rewriting the ServiceAccount (read-modify-write, adding its own
    pull secret and bumping an annotation), so our resourceVersion-preconditioned writes (the
    optimistic merge patch, then GET+PUT) keep hitting 409. Both entries must survive."""
    cluster.set_config(EE_ONLY)
    cluster.add_namespace("team-a")
    stop = threading.Event()
    writes = [0]
    storm_until = [time.monotonic() + 60.0]

    def other_writer() -> None:
        while not stop.is_set():
            sa = cluster.api.get("serviceaccounts", "team-a", "default")
            assert sa is not None
            names = [p["name"] for p in sa.get("imagePullSecrets") or []]
            if "their-registry" not in names:
                names.append("their-registry")
            sa["imagePullSecrets"] = [{"name": n} for n in names]
            sa["metadata"].setdefault("annotations", {})["other/generation"] = str(writes[0])
            try:
                cluster.api.update(sa)  # carries the resourceVersion it read: may 409 too
                writes[0] += 1
            except Exception:
                pass
            # a storm (a write every ~0.3 ms) for 3 s after the controller starts, then calmer
            time.sleep(0.0003 if time.monotonic() < storm_until[0] else 0.02)

    writer = threading.Thread(target=other_writer, daemon=True)
    writer.start()
    try:
        ctl = faults_run("--resync-period", "1s", wait_ready=False)
        storm_until[0] = time.monotonic() + 3.0
        wait_for(lambda: SECRET in (cluster.pulls("team-a") or []), timeout=30, what="our entry added")
        conflicts = sa_conflicts(cluster)
        print(f"409 storm: {conflicts} conflicts, {writes[0]} writes by the other writer")
        assert conflicts >= 1, "the storm made our writes conflict"
        time.sleep(0.5)  # the other writer keeps going: it must not lose our entry, nor we theirs
    finally:
        stop.set()
        writer.join(5)
    assert writes[0] > 20
    pulls = cluster.pulls("team-a")
    assert pulls is not None and "their-registry" in pulls and SECRET in pulls
    assert len(pulls) == len(set(pulls)) == 2
    assert managed(cluster.secret("team-a"))
    assert ctl.proc.poll() is None


def test_injected_409s_on_service_account_update(
    cluster: Cluster, cloud: Any, faults_run: Callable[..., Controller]
) -> None:
    cluster.set_config(EE_ONLY)
    cluster.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    cluster.api.create({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "default", "namespace": "team-a"},
                        "imagePullSecrets": [{"name": "corp-registry"}]})
    patches = cluster.api.inject(verb="patch", resource="serviceaccounts", code=409, times=2)
    updates = cluster.api.inject(verb="update", resource="serviceaccounts", code=409, times=7)
    faults_run("--resync-period", "1s")
    wait_for(lambda: cluster.pulls("team-a") == ["corp-registry", SECRET], timeout=30, what="entry after 409s")
    assert patches.hits == 2 and updates.hits == 7
