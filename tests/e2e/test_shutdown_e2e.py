"""SIGTERM handling of `acr-helper run` (issue 4): finish the current apply within the grace period,
release the lease, exit 0; a second signal exits at once.

The "long pass" tests make every Secret create take 0.5 s on the fake API server and put 40
namespaces in scope, so the first pass would need about 20 s.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from acr_helper.tokens.emulator import AliyunEmulator

from .conftest import SECRET, Cluster, Controller, wait_for
from .test_controller_e2e import BASE

pytestmark = [pytest.mark.e2e]

LEASE = 3.0
GRACE = 3.0
LEASE_ID = ("leases.coordination.k8s.io", "kube-system", "acr-helper")
SLOW_CREATE = 0.5
MANY = 40


def identity_of(c: Controller) -> str:
    """The identity `run` derives when none is given: <hostname>_<pid>."""
    return f"{socket.gethostname()}_{c.proc.pid}"


def holder(cluster: Cluster) -> str | None:
    lease = cluster.api.get(*LEASE_ID)
    if lease is None:
        return None
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


@pytest.fixture
def lease_history(cluster: Cluster) -> Iterator[list[tuple[float, str | None]]]:
    """(monotonic time, holderIdentity) each time the Lease's holder changes, polled every 5 ms
    from the fake server's store (in process: no requests, nothing in the request log)."""
    seen: list[tuple[float, str | None]] = []
    stop = threading.Event()

    def poll() -> None:
        last: object = object()
        while not stop.is_set():
            h = holder(cluster)
            if h != last:
                seen.append((time.monotonic(), h))
                last = h
            stop.wait(0.005)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    yield seen
    stop.set()
    t.join(2)


def wait_exit(c: Controller, timeout: float) -> tuple[int | None, float]:
    """(return code or None if still running, monotonic time it was seen gone)."""
    try:
        rc = c.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None, time.monotonic()
    return rc, time.monotonic()


def converged(cluster: Cluster, namespace: str) -> Callable[[], bool]:
    """Our Secret is in the namespace and in its default ServiceAccount's imagePullSecrets."""
    def check() -> bool:
        s = cluster.secret(namespace)
        if not s or (s["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") != "acr-helper":
            return False
        return SECRET in (cluster.pulls(namespace) or [])
    return check


def secret_creates(cluster: Cluster) -> int:
    return sum(1 for r in list(cluster.api.requests) if r.verb == "create" and r.resource == "secrets")


def long_pass(cluster: Cluster) -> list[str]:
    names = [f"many-{i:02d}" for i in range(MANY)]
    cluster.set_config(BASE)
    for n in names:
        cluster.add_namespace(n)
    cluster.api.inject(verb="create", resource="secrets", code=None, latency=SLOW_CREATE, times=None)
    return names


def test_sigterm_on_the_leader_releases_the_lease_and_the_follower_takes_over_at_once(
    cluster: Cluster, cloud: AliyunEmulator, run_controller: Callable[..., Controller],
    lease_history: list[tuple[float, str | None]],
) -> None:
    cluster.set_config(BASE)
    cluster.add_namespace("team-a")
    flags = ("--leader-elect", "--lease-duration", str(LEASE), "--grace-period", str(GRACE))
    a = run_controller(*flags, user="replica-a")
    b = run_controller(*flags, user="replica-b")
    wait_for(converged(cluster, "team-a"), what="converged")
    wait_for(lambda: (a.metric("acr_helper_leader"), b.metric("acr_helper_leader")) in ((1, 0), (0, 1)),
             what="exactly one leader")
    leader, follower = (a, b) if a.metric("acr_helper_leader") == 1 else (b, a)
    assert holder(cluster) == identity_of(leader)

    t_term = time.monotonic()
    leader.proc.send_signal(signal.SIGTERM)
    rc, t_exit = wait_exit(leader, GRACE + 5)
    assert rc == 0, f"exit code {rc} after SIGTERM:\n{leader.logs()[-3000:]}"
    exited = t_exit - t_term
    assert exited < GRACE + 2, f"exited {exited:.2f}s after SIGTERM (grace {GRACE}s)"

    wait_for(lambda: holder(cluster) == identity_of(follower), timeout=LEASE + 2, interval=0.01,
             what="the follower holds the lease")
    t_take = next(t for t, h in lease_history if t > t_term and h == identity_of(follower))
    released = [t for t, h in lease_history if t > t_term and h == ""]
    assert released, f"the leader never emptied holderIdentity: {lease_history}"
    t_release = released[0]
    assert t_release <= t_take
    print(f"SIGTERM -> released {t_release - t_term:.2f}s, -> exit {exited:.2f}s, "
          f"release -> follower holds the lease {t_take - t_release:.2f}s")
    # released, not expired: the follower took it well within the lease duration
    assert t_take - t_release < 1.5, f"takeover {t_take - t_release:.2f}s after the release"
    assert t_take - t_term < LEASE, f"takeover {t_take - t_term:.2f}s after SIGTERM: that is expiry"
    assert "released lease kube-system/acr-helper" in leader.logs()

    wait_for(lambda: follower.metric("acr_helper_leader") == 1, timeout=5, what="the follower says it leads")
    mark = time.monotonic()
    cluster.add_namespace("team-b")
    wait_for(converged(cluster, "team-b"), what="the new leader serves")
    assert {r.user for r in cluster.writes() if r.time >= mark} == {"replica-b" if leader is a else "replica-a"}


def test_sigterm_on_a_lone_leader_leaves_the_lease_released(
    cluster: Cluster, cloud: AliyunEmulator, run_controller: Callable[..., Controller],
) -> None:
    cluster.set_config(BASE)
    cluster.add_namespace("team-a")
    c = run_controller("--leader-elect", "--lease-duration", str(LEASE), "--grace-period", str(GRACE))
    wait_for(converged(cluster, "team-a"), what="converged")
    wait_for(lambda: holder(cluster) == identity_of(c), what="it holds the lease")
    t_term = time.monotonic()
    c.proc.send_signal(signal.SIGTERM)
    rc, t_exit = wait_exit(c, GRACE + 5)
    assert rc == 0, c.logs()[-3000:]
    assert t_exit - t_term < GRACE + 2
    lease = cluster.api.get(*LEASE_ID)
    assert lease is not None
    assert lease["spec"].get("holderIdentity") in ("", None), lease["spec"]
    assert lease["spec"].get("leaseDurationSeconds") == 1  # so whoever comes next takes it at once


def _signal_log(c: Controller) -> list[dict[str, Any]]:
    import json

    out = []
    for line in c.logs().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "signal" in str(rec.get("msg", "")):
            out.append(rec)
    return out


def test_a_second_sigterm_during_a_long_pass_exits_at_once(
    cluster: Cluster, cloud: AliyunEmulator, run_controller: Callable[..., Controller],
) -> None:
    long_pass(cluster)
    # a grace period longer than the test: only the second signal can make it exit quickly
    c = run_controller("--grace-period", "60", wait_ready=False)
    wait_for(lambda: secret_creates(cluster) >= 2, timeout=30, what="the long pass is under way")
    c.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    assert c.proc.poll() is None, "the first SIGTERM alone must not end a pass with grace left"
    t_second = time.monotonic()
    c.proc.send_signal(signal.SIGTERM)
    rc, t_exit = wait_exit(c, 5)
    assert rc is not None, "still running 5 s after the second SIGTERM"
    took = t_exit - t_second
    print(f"second SIGTERM -> gone in {took:.3f}s, exit code {rc}, {secret_creates(cluster)}/{MANY} creates")
    assert took < 1.0, f"gone {took:.2f}s after the second SIGTERM"
    assert rc != 0, "an immediate exit is not a clean one"
    assert secret_creates(cluster) < MANY, "the pass had finished: the test proved nothing"
    msgs = [r["msg"] for r in _signal_log(c)]
    assert any("finishing the current pass" in m for m in msgs), msgs
    assert any("second signal" in m for m in msgs), msgs


def test_the_first_sigterm_stops_applying_after_the_grace_period(
    cluster: Cluster, cloud: AliyunEmulator, run_controller: Callable[..., Controller],
) -> None:
    names = long_pass(cluster)
    grace = 1.0
    c = run_controller("--grace-period", str(grace), wait_ready=False)
    wait_for(lambda: secret_creates(cluster) >= 2, timeout=30, what="the long pass is under way")
    before = secret_creates(cluster)
    t_term = time.monotonic()
    c.proc.send_signal(signal.SIGTERM)
    rc, t_exit = wait_exit(c, grace + 10)
    assert rc is not None, "still running 10 s after the grace period"
    took = t_exit - t_term
    after = secret_creates(cluster)
    print(f"SIGTERM (grace {grace}s) -> exit {took:.2f}s, code {rc}; creates {before} -> {after} of {MANY}")
    assert rc == 0, c.logs()[-3000:]
    assert took < grace + 3, f"exited {took:.2f}s after SIGTERM with a {grace}s grace period"
    # it kept applying during the grace period (~grace / 0.5 s creates), then skipped the rest
    assert after < before + grace / SLOW_CREATE + 3, (before, after)
    assert after < MANY // 2, f"{after} of {MANY} creates: the plan was not far from done"
    missing = [n for n in names if cluster.secret(n) is None]
    assert len(missing) >= MANY // 2  # what was skipped stayed undone (the next leader does it)
    time.sleep(0.5)
    assert secret_creates(cluster) == after, "a request after exit?"
