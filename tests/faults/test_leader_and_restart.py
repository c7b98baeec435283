"""Losing the leader in the middle of a big pass, and restarting in the middle of a token rotation."""

from __future__ import annotations

import base64
import http.client
import json
import signal
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest

from acr_helper.tokens.emulator import AliyunEmulator

from .conftest import BASE, EE, EE_DOMAINS, SECRET, Cluster, Controller, all_converged, decode_auths, wait_for

pytestmark = [pytest.mark.e2e]

EE_ONLY = {**BASE, "acr-registry-info": f'- instanceId: "{EE}"\n'}
LEASE = 3.0
RETRY_PERIOD = max(0.2, LEASE / 7.5)  # what `run` derives from --lease-duration


def _writes(cluster: Cluster) -> list[Any]:
    return [r for r in list(cluster.api.requests) if r.verb in ("create", "update", "patch", "delete")
            and r.resource in ("secrets", "serviceaccounts")]


def _assert_one_writer_at_a_time(cluster: Cluster, old: str, new: str) -> None:
    writes = _writes(cluster)
    assert {r.user for r in writes} <= {old, new}
    first_new = min(r.time for r in writes if r.user == new)
    last_old = max(r.time for r in writes if r.user == old)
    assert last_old < first_new, f"{old} wrote {last_old - first_new:.3f}s after {new} took over"


@pytest.mark.parametrize("how", ["sigkill", "sigstop"])
def test_leader_lost_mid_pass_follower_takes_over_and_writers_never_overlap(
    cluster: Cluster, cloud: AliyunEmulator, faults_run: Callable[..., Controller], how: str
) -> None:
    """200 namespaces; every Secret create and ServiceAccount update takes 20 ms on the server,
    so the leader's first pass lasts seconds. The leader is killed (or frozen: SIGSTOP, then
    SIGCONT after the takeover, when it must not write again) after ~40 creates."""
    names = [f"ns-{i:03d}" for i in range(200)]
    cluster.set_config(EE_ONLY)
    for n in names:
        cluster.add_namespace(n)
    cluster.api.inject(verb="create", resource="secrets", code=None, latency=0.02, times=None)
    cluster.api.inject(verb="update", resource="serviceaccounts", code=None, latency=0.02, times=None)
    flags = ("--leader-elect", "--lease-duration", str(LEASE))
    a = faults_run(*flags, user="replica-a", wait_ready=False)
    wait_for(lambda: cluster.api.get("coordination.k8s.io/leases", "kube-system", "acr-helper") is not None, what="lease taken")
    b = faults_run(*flags, user="replica-b", wait_ready=False)
    holder = cluster.api.get("coordination.k8s.io/leases", "kube-system", "acr-helper")["spec"]["holderIdentity"]
    wait_for(lambda: len(_writes(cluster)) >= 40, timeout=30, what="the leader is mid-pass")
    leader_user = _writes(cluster)[0].user
    assert {r.user for r in _writes(cluster)} == {leader_user}, "only the leader writes"
    leader, follower = (a, b) if leader_user == "replica-a" else (b, a)
    follower_user = "replica-b" if leader is a else "replica-a"
    done_before = sum(1 for r in _writes(cluster) if r.verb == "create")
    assert done_before < len(names), "the pass was still running"

    t_stop = time.monotonic()
    leader.proc.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGSTOP)
    try:
        wait_for(lambda: any(r.user == follower_user for r in _writes(cluster)), timeout=15,
                 what="the follower writes")
        took = time.monotonic() - t_stop
        print(f"takeover: first write by the follower {took:.2f}s after the leader stopped")
        assert took <= LEASE + 2 * RETRY_PERIOD + 0.5, f"takeover after {took:.2f}s (lease {LEASE}s)"
        lease = cluster.api.get("coordination.k8s.io/leases", "kube-system", "acr-helper")["spec"]
        assert lease["holderIdentity"] != holder
        if how == "sigstop":
            time.sleep(0.5)
            leader.proc.send_signal(signal.SIGCONT)  # the old leader wakes up: it must stand down
        wait_for(all_converged(cluster, names), timeout=60, interval=0.2, what="all 200 converged")
        if how == "sigstop":
            time.sleep(1.5)  # give the thawed replica every chance to write
    finally:
        if leader.proc.poll() is None:
            leader.proc.send_signal(signal.SIGCONT)
    _assert_one_writer_at_a_time(cluster, leader_user, follower_user)
    # nothing lost and nothing duplicated
    for n in names:
        assert cluster.pulls(n) == [SECRET]
    assert follower.metric("acr_helper_leader") == 1
    if how == "sigstop":
        wait_for(lambda: leader.metric("acr_helper_leader") == 0, what="the thawed replica is a follower")


class SecretWatch:
    """Every version of every managed Secret, from a watch on the fake API server (nothing
    between two polls is missed), validated as it arrives."""

    def __init__(self, cluster: Cluster, cloud: AliyunEmulator) -> None:
        self.cluster, self.cloud = cluster, cloud
        self.versions = 0
        self.modified = 0
        self.violations: list[str] = []
        self.passwords: dict[str, str] = {}
        self._stop = threading.Event()
        u = urlsplit(cluster.api.url)
        self._conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self._conn.request("GET", f"/api/v1/secrets?watch=true&fieldSelector=metadata.name%3D{SECRET}"
                                  f"&resourceVersion={cluster.api.resource_version}")
        self._resp = self._conn.getresponse()
        assert self._resp.status == 200
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for line in self._resp:
                if self._stop.is_set():
                    return
                if line.strip():
                    self._check(json.loads(line))
        except (OSError, ValueError, http.client.HTTPException):
            return
        except AttributeError:  # http.client, when stop() closes the response under a blocked read
            if not self._stop.is_set():
                raise

    def _check(self, event: dict[str, Any]) -> None:
        kind, obj = event["type"], event["object"]
        if kind == "BOOKMARK":
            return
        ns = obj["metadata"].get("namespace", "?")
        if kind == "DELETED":
            self.violations.append(f"{ns}: deleted")
            return
        self.versions += 1
        self.modified += kind == "MODIFIED"
        try:
            raw = base64.b64decode(obj["data"][".dockerconfigjson"], validate=True)
            auths = json.loads(raw)["auths"]
            missing = set(EE_DOMAINS) - set(auths)
            if missing:
                self.violations.append(f"{ns}: missing {sorted(missing)}")
            for domain, entry in auths.items():
                user, password = entry["username"], entry["password"]
                if base64.b64decode(entry["auth"]).decode() != f"{user}:{password}":
                    self.violations.append(f"{ns}: {domain}: auth does not match")
                if not self.cloud.is_valid_registry_login(user, password):
                    self.violations.append(f"{ns}: {domain}: not a valid login")
            self.passwords[ns] = auths[EE_DOMAINS[0]]["password"]
        except Exception as exc:  # empty, truncated, not base64, not JSON, no auths...
            self.violations.append(f"{ns}: unreadable ({type(exc).__name__})")

    def stop(self) -> None:
        self._stop.set()
        try:
            self._conn.sock.shutdown(2) if self._conn.sock else None  # type: ignore[func-returns-value]
        except OSError:
            pass
        self._conn.close()
        self._thread.join(5)


def test_restart_in_the_middle_of_a_rotation_never_exposes_a_broken_secret(
    cluster: Cluster, cloud: AliyunEmulator, faults_run: Callable[..., Controller]
) -> None:
    names = [f"ns-{i:02d}" for i in range(60)]
    cloud.set_token_lifetime(8)
    cluster.set_config({**EE_ONLY, "expiring-threshold": "4s"})  # rotation 4 s after each fetch
    for n in names:
        cluster.add_namespace(n)
    watch = SecretWatch(cluster, cloud)
    try:
        first = faults_run()
        wait_for(all_converged(cluster, names), timeout=30, what="first pass")
        initial = {n: decode_auths(cluster.secret(n))[EE_DOMAINS[0]]["password"] for n in names}
        # slow the Secret patches so the rotation takes ~2 s, then kill the controller in its middle
        cluster.api.inject(verb="patch", resource="secrets", code=None, latency=0.03, times=None)
        wait_for(lambda: watch.modified >= 15, timeout=20, what="the rotation is under way")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(5)
        rotated = sum(1 for n in names if watch.passwords.get(n) != initial[n])
        print(f"killed after {rotated} of {len(names)} Secrets rotated")
        assert 0 < rotated < len(names), f"killed mid-rotation ({rotated} of {len(names)} rotated)"
        faults_run()  # the restart
        wait_for(lambda: all(watch.passwords.get(n) not in (None, initial[n]) for n in names),
                 timeout=30, what="every Secret rotated after the restart")
        time.sleep(0.2)
    finally:
        watch.stop()
    assert not watch.violations, watch.violations[:10]
    print(f"{watch.versions} Secret versions checked")
    assert watch.versions >= 2 * len(names)
    for n in names:
        assert cluster.pulls(n) == [SECRET]
