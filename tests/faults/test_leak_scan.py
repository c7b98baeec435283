"""The secret-leak scan itself: it collects what the controller really received, and it would
notice a leak. (Every fault test that starts a controller is scanned at teardown by the
`faults_run` / `run_inproc` fixtures in conftest.py: logs at debug level, /metrics, Events.)"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from acr_helper.tokens.emulator import AliyunEmulator

from .conftest import (
    BASE,
    CONFIGURED_SECRETS,
    EE,
    STATS,
    Cluster,
    Controller,
    converged,
    decode_auths,
    emulator_secrets,
    scan_cluster_and_cloud,
    scan_for_leaks,
    wait_for,
)

ROLE = "acs:ram::1234567890123456:role/acr-puller"


@pytest.mark.e2e
def test_scan_collects_every_issued_secret_and_finds_a_planted_one(
    cluster: Cluster, cloud: AliyunEmulator, faults_run: Callable[..., Controller]
) -> None:
    # every credential path the controller has: worker role (IMDS), AssumeRole, a static AccessKey
    cloud.add_role(ROLE)
    cloud.add_instance("cri-second", name="second")
    cloud.add_access_key("FAKE-AK-2", "fake-secret-ak2-not-real")
    info = (f'- instanceId: "{EE}"\n'
            f'- instanceId: "cri-second"\n  assumeRoleARN: {ROLE}\n'
            '- instanceId: ""\n  customAccessKey: FAKE-AK-2\n  customAccessKeySecret: fake-secret-ak2-not-real\n')
    cluster.set_config({**BASE, "acr-registry-info": info})
    cluster.add_namespace("team-a")
    # a token failure and a bad config edit, so Events and warnings carry error text too
    cloud.inject_fault("GetAuthorizationToken", "403", times=1)
    ctl = faults_run("--resync-period", "1s")
    wait_for(converged(cluster, "team-a"), timeout=20, what="converged")
    wait_for(lambda: len(decode_auths(cluster.secret("team-a"))) >= 5, timeout=20, what="all registries")
    cluster.set_config({**BASE, "acr-registry-info": info + "- instanceId: [oops\n"})
    wait_for(lambda: ctl.metric("acr_helper_config_valid") == 0, what="invalid config noticed")

    secrets = emulator_secrets(cloud)
    auths = decode_auths(cluster.secret("team-a"))
    for entry in auths.values():  # what the controller wrote is among what the scan looks for
        assert entry["password"] in secrets
        assert entry["auth"] in secrets or base64.b64decode(entry["auth"]).decode().split(":", 1)[1] in secrets
    assert CONFIGURED_SECRETS <= secrets | CONFIGURED_SECRETS
    assert "fake-secret-ak2-not-real" in secrets
    assert any(k.security_token in secrets for k in cloud._sts_keys.values())
    # the scan finds a planted secret, and reports only a prefix of it
    some = next(iter(auths.values()))["password"]
    found = scan_for_leaks(secrets, {"logs": f"... token={some} ..."})
    assert found == [f"logs: {some[:4]}…"]
    assert some not in found[0]
    # (the real scan of this test's logs, /metrics and Events runs at teardown)


def test_teardown_scan_fails_on_a_secret_in_metrics_or_events(cluster: Cluster, cloud: AliyunEmulator) -> None:
    tests_before = STATS.tests
    with pytest.raises(AssertionError, match="metrics"):
        scan_cluster_and_cloud(cluster, cloud, {"metrics[0]": 'x{registry="fake-secret-not-real"} 1'})
    cluster.api.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1", "namespace": "kube-system"},
                        "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": "kube-system"},
                        "reason": "TokenRefreshFailed", "message": "key fake-secret-not-real rejected"})
    with pytest.raises(AssertionError, match="events"):
        scan_cluster_and_cloud(cluster, cloud, {})
    assert STATS.tests == tests_before + 2 and STATS.bytes_scanned > 0
