"""Kubernetes API errors on every verb the controller uses: 500, 503 and 429, each with a
`Retry-After: 2`. The controller (the real `acr-helper run` subprocess) must converge anyway and
lose nothing, and its retry of the failed request must come no sooner than the server asked.

Where a verb is used:
  list/watch  the namespace informer (start-up; a namespace created later)
  get         ServiceAccount read-modify-update (GET before PUT), after a 409 on the first write
  create      a new namespace's Secret
  update      a ServiceAccount's imagePullSecrets (PUT with resourceVersion), after a 409 on the
              first write (a merge patch with the resourceVersion seen in the cache)
  patch       a Secret whose content changes (JSON merge patch)
  delete      a Secret whose namespace leaves the scope
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .conftest import BASE, EE, SECRET, Cluster, Controller, converged, decode_auths, wait_for

pytestmark = [pytest.mark.e2e]

RETRY_AFTER = 2
EE_ONLY = f'- instanceId: "{EE}"\n'

#: (verb, code) whose retry comes sooner than Retry-After asked: known bugs (see
#: docs/reliability.md). The test still asserts convergence for them, then xfails; if the retry
#: is ever late enough, it fails and asks for the entry to be removed (xfail strict). None now.
KNOWN_EARLY: dict[tuple[str, int], str] = {}


def _where(verb: str) -> dict[str, Any]:
    return {
        "list": {"resource": "namespaces"},
        "watch": {"resource": "namespaces"},
        "get": {"resource": "serviceaccounts", "namespace": "team-a", "name": "default"},
        "create": {"resource": "secrets", "namespace": "team-a"},
        "update": {"resource": "serviceaccounts", "namespace": "team-a", "name": "default"},
        "patch": {"resource": "secrets", "namespace": "team-a", "name": SECRET},
        "delete": {"resource": "secrets", "namespace": "team-b", "name": SECRET},
    }[verb]


def _matching(cluster: Cluster, verb: str, where: dict[str, Any]) -> list[Any]:
    return [r for r in list(cluster.api.requests)
            if r.verb == verb and r.resource == where["resource"]
            and all(getattr(r, k) == v for k, v in where.items() if k != "resource")]


def _retry_gap(cluster: Cluster, verb: str, where: dict[str, Any], code: int) -> float:
    """Seconds from the faulted request to the next attempt on the same object (for the
    ServiceAccount GET/PUT path, the next attempt may be the optimistic PATCH of the next pass)."""
    family = ("patch", "get", "update") if verb in ("get", "update") else (verb,)
    reqs = sorted((r for v in family for r in _matching(cluster, v, where)), key=lambda r: r.time)
    idx = next(i for i, r in enumerate(reqs) if r.verb == verb and r.code == code)
    assert idx + 1 < len(reqs), f"no retry after the {code}: {reqs}"
    return reqs[idx + 1].time - reqs[idx].time


@pytest.mark.parametrize("code", [500, 503, 429])
@pytest.mark.parametrize("verb", ["list", "watch", "get", "create", "update", "patch", "delete"])
def test_api_error_on_each_verb_converges_and_honours_retry_after(
    cluster: Cluster, cloud: Any, faults_run: Callable[..., Controller], verb: str, code: int
) -> None:
    cluster.set_config({**BASE, "acr-registry-info": EE_ONLY})
    cluster.add_namespace("team-a")
    cluster.add_namespace("team-b")
    where = _where(verb)
    before = verb in ("list", "watch", "get", "create", "update")
    if verb in ("get", "update"):  # the GET+PUT path runs after the optimistic patch conflicts
        conflict = cluster.api.inject(verb="patch", resource="serviceaccounts", namespace="team-a",
                                      name="default", code=409, times=1)
    if before:
        fault = cluster.api.inject(verb=verb, code=code, times=1, retry_after=RETRY_AFTER, **where)
    ctl = faults_run("--resync-period", "1s")
    if verb == "watch":
        wait_for(lambda: fault.hits >= 1, what="the watch fault hit")
        cluster.add_namespace("team-late")  # only a working watch brings this one in
        wait_for(converged(cluster, "team-late"), timeout=20, what="namespace seen through the watch")
    wait_for(converged(cluster, "team-a"), timeout=20, what="team-a converged")
    wait_for(converged(cluster, "team-b"), timeout=20, what="team-b converged")
    if verb == "patch":
        rv = cluster.secret("team-a")["metadata"]["resourceVersion"]
        fault = cluster.api.inject(verb=verb, code=code, times=1, retry_after=RETRY_AFTER, **where)
        cluster.set_config({**BASE, "acr-registry-info": BASE["acr-registry-info"]})  # + Personal Edition
        wait_for(lambda: f"registry.{cloud.region}.aliyuncs.com" in decode_auths(cluster.secret("team-a")),
                 timeout=20, what="Secret content updated")
        assert cluster.secret("team-a")["metadata"]["resourceVersion"] != rv
    if verb == "delete":
        fault = cluster.api.inject(verb=verb, code=code, times=1, retry_after=RETRY_AFTER, **where)
        cluster.set_config({**BASE, "acr-registry-info": EE_ONLY, "watch-namespace": "all,!kube-system,!team-b"})
        wait_for(lambda: cluster.secret("team-b") is None, timeout=20, what="team-b Secret deleted")
        wait_for(lambda: cluster.pulls("team-b") == [], timeout=20, what="team-b entry removed")
        assert converged(cluster, "team-a")()
    assert fault.hits == 1, "the fault was exercised"
    if verb in ("get", "update"):
        assert conflict.hits == 1
    # nothing lost: every namespace in scope has a valid Secret and its ServiceAccount the entry
    for ns in ("team-a", *(("team-late",) if verb == "watch" else ()), *(() if verb == "delete" else ("team-b",))):
        for entry in decode_auths(cluster.secret(ns)).values():
            assert cloud.is_valid_registry_login(entry["username"], entry["password"])
    assert ctl.proc.poll() is None
    gap = _retry_gap(cluster, verb, where, code)
    if (verb, code) in KNOWN_EARLY:
        assert gap < RETRY_AFTER - 0.05, f"fixed? retried after {gap:.2f}s: drop it from KNOWN_EARLY"
        pytest.xfail(KNOWN_EARLY[(verb, code)] + f" (retried after {gap:.2f}s)")
    assert gap >= RETRY_AFTER - 0.05, f"retried {gap:.2f}s after a {code} with Retry-After: {RETRY_AFTER}"
