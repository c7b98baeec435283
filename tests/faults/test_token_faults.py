"""Alibaba Cloud faults during token refresh: ACR throttling (with and without
`x-acs-retry-after`), 403, 5xx, replies slower than the read timeout, STS AssumeRole failing, the
metadata service down. Existing Secrets stay untouched while the fault lasts (and are never
emptied or deleted after the token expires); the refresh recovers once the fault clears; the
backoff shows in the metrics.

The controller runs in-process (`run_inproc`): the CLI does not expose the token read timeout or
the token backoff (5 s doubling to 5 min), which would make these tests minutes long. The settings
used: read timeout 1 s, backoff 0.3 s doubling to 2 s; registry tokens live 4 s (refreshed at 2 s).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import pytest

from acr_helper.tokens.emulator import AliyunEmulator

from .conftest import BASE, EE, EE_DOMAINS, Cluster, InProc, converged, valid_logins, wait_for

ROLE = "acs:ram::1234567890123456:role/acr-puller"
LIFETIME = 4.0


def _config(assume_role: bool) -> dict[str, str]:
    info = f'- instanceId: "{EE}"\n' + (f"  assumeRoleARN: {ROLE}\n" if assume_role else "")
    return {**BASE, "acr-registry-info": info, "expiring-threshold": "3s"}


def _failed_at(cloud: AliyunEmulator, action: str) -> list[float]:
    return [r.at for r in cloud.requests if r.action == action and r.status != 200]


CASES = {
    # name: (action to fault, fault kind, retry_after_ms, delay, assume-role config)
    "acr-throttle": ("GetAuthorizationToken", "throttle", None, 0.0, False),
    "acr-throttle-retry-after": ("GetAuthorizationToken", "throttle-retry-after", 1500, 0.0, False),
    "acr-429": ("GetAuthorizationToken", "429", None, 0.0, False),
    "acr-403": ("GetAuthorizationToken", "403", None, 0.0, False),
    "acr-500": ("GetAuthorizationToken", "500", None, 0.0, False),
    "acr-503": ("GetAuthorizationToken", "503", None, 0.0, False),
    "acr-slow": ("GetAuthorizationToken", "slow", None, 1.6, False),
    "sts-500": ("AssumeRole", "500", None, 0.0, True),
    "sts-403": ("AssumeRole", "403", None, 0.0, True),
    "metadata-down": (None, "stopped", None, 0.0, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_token_fault_keeps_secrets_backs_off_and_recovers(
    cluster: Cluster, cloud: AliyunEmulator, run_inproc: Callable[..., InProc], case: str
) -> None:
    action, kind, retry_after_ms, delay, assume_role = CASES[case]
    cloud.set_token_lifetime(LIFETIME)
    if assume_role:
        cloud.add_role(ROLE)
        cloud.set_sts_lifetime(LIFETIME, force=True)  # the assumed keys expire with the token
    cluster.set_config(_config(assume_role))
    cluster.add_namespace("team-a")
    ctl = run_inproc()
    wait_for(converged(cluster, "team-a"), what="converged")
    secret = cluster.secret("team-a")
    assert valid_logins(cloud, secret, EE_DOMAINS)
    rv, data = secret["metadata"]["resourceVersion"], secret["data"]
    expires = ctl.metric("acr_helper_token_expiration_timestamp_seconds", registry=EE)
    assert expires is not None and expires > time.time()

    # the fault
    t_fault = time.time()
    if kind == "stopped":
        cloud.stop()  # the metadata service (and every other endpoint: one port) is down
    else:
        cloud.inject_fault(action, kind, times=None, retry_after_ms=retry_after_ms, delay=delay)

    wait_for(lambda: (ctl.metric("acr_helper_token_refresh_failures", registry=EE) or 0) >= 2,
             timeout=15, what="two failed refreshes")
    errors = ctl.metric("acr_helper_token_refresh_total", registry=EE, result="error") or 0
    assert errors >= 2
    next_retry = ctl.metric("acr_helper_token_next_retry_timestamp_seconds", registry=EE)
    assert next_retry is not None and next_retry > t_fault
    # the Secret is untouched while its token is valid ...
    while time.time() < expires + 0.5:
        live = cluster.secret("team-a")
        assert live is not None, "the Secret was deleted during a token fault"
        assert live["metadata"]["resourceVersion"] == rv and live["data"] == data
        time.sleep(0.05)
    # ... and, its token expired, it is still neither emptied nor deleted
    assert cluster.secret("team-a")["data"] == data
    assert "TokenRefreshFailed" in {e.get("reason") for e in cluster.api.list("events", "kube-system")}

    # backoff: failed attempts are spaced out, more and more (capped at 2 s), and honour a
    # server-sent retry-after
    if action is not None and kind != "slow":
        failed = _failed_at(cloud, action)
        gaps = [b - a for a, b in itertools.pairwise(failed)]
        assert len(gaps) >= (1 if retry_after_ms else 2), failed
        assert min(gaps) >= 0.25, gaps
        assert gaps[-1] >= gaps[0], gaps
        if retry_after_ms:
            assert min(gaps) >= retry_after_ms / 1000 - 0.05, gaps
    failures = ctl.metric("acr_helper_token_refresh_failures", registry=EE) or 0

    # recovery
    if kind == "stopped":
        cloud.start()
    else:
        cloud.clear_faults()
    wait_for(lambda: cluster.secret("team-a")["metadata"]["resourceVersion"] != rv, timeout=15,
             what="recovered and rewritten")
    assert valid_logins(cloud, cluster.secret("team-a"), EE_DOMAINS)
    wait_for(lambda: ctl.metric("acr_helper_token_refresh_failures", registry=EE) == 0, what="failures reset")
    assert ctl.metric("acr_helper_token_next_retry_timestamp_seconds", registry=EE) is None
    assert (ctl.metric("acr_helper_token_expiration_timestamp_seconds", registry=EE) or 0) > time.time()
    assert failures >= 2
    assert ctl.thread.is_alive()


def test_a_throttle_with_retry_after_delays_the_retry_from_the_failure(
    cluster: Cluster, cloud: AliyunEmulator, run_inproc: Callable[..., InProc]
) -> None:
    """At start-up the metadata service answers slowly (0.6 s, below the read timeout), then the
    token call is throttled with `x-acs-retry-after: 1500`: the retry must come >= 1.5 s after
    the throttled call."""
    cloud.inject_fault("imds-credentials", "slow", times=1, delay=0.6)
    cloud.inject_fault("GetAuthorizationToken", "throttle-retry-after", times=1, retry_after_ms=1500)
    cluster.set_config(_config(False))
    cluster.add_namespace("team-a")
    run_inproc()
    wait_for(converged(cluster, "team-a"), timeout=15, what="converged after the throttle")
    assert valid_logins(cloud, cluster.secret("team-a"), EE_DOMAINS)
    calls = [r for r in cloud.requests if r.action == "GetAuthorizationToken"]
    assert calls[0].fault == "throttle-retry-after" and calls[1].status == 200
    gap = calls[1].at - calls[0].at
    # TokenCache counts the backoff from the failure (its clock), not from the pass's `now`
    assert gap >= 1.45, f"retried {gap:.2f}s after a throttle asking for 1.5s"
