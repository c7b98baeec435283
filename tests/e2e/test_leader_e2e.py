"""Two replicas with leader election: one writer at a time, takeover within the lease duration."""

from __future__ import annotations

import signal
import time

import pytest

from .conftest import SECRET, wait_for
from .test_controller_e2e import BASE, converged

pytestmark = [pytest.mark.e2e]


def writers(cluster, since: float = 0.0) -> set[str]:
    return {r.user for r in cluster.writes() if r.time >= since}


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_two_replicas_one_writer_and_takeover(cluster, cloud, run_controller, how):
    cluster.set_config(BASE)
    cluster.add_namespace("team-a")
    a = run_controller("--leader-elect", "--lease-duration", "3", user="replica-a")
    b = run_controller("--leader-elect", "--lease-duration", "3", user="replica-b")
    wait_for(converged(cluster, "team-a"), what="converged")
    wait_for(lambda: (a.metric("acr_helper_leader"), b.metric("acr_helper_leader")) in ((1, 0), (0, 1)),
             what="exactly one leader")
    leader, follower = (a, b) if a.metric("acr_helper_leader") == 1 else (b, a)
    assert len(writers(cluster)) == 1
    assert follower.ready()  # followers keep warm caches and are ready
    assert follower.metric("acr_helper_token_expiration_timestamp_seconds") is None  # no stale token series
    lease = cluster.api.get("leases.coordination.k8s.io", "kube-system", "acr-helper")
    assert lease is not None and lease["spec"]["holderIdentity"]
    t_stop = time.monotonic()
    leader.stop(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
    wait_for(lambda: follower.metric("acr_helper_leader") == 1, timeout=10, what="takeover")
    took = time.monotonic() - t_stop
    assert took < 3 + 2.5, took  # within the lease duration (+ retry period)
    mark = cluster.api.requests[-1].time if cluster.api.requests else 0
    cluster.add_namespace("team-b")
    wait_for(converged(cluster, "team-b"), what="new leader serves")
    assert writers(cluster, mark) == {"replica-b" if leader is a else "replica-a"}
    assert SECRET in cluster.pulls("team-b")
