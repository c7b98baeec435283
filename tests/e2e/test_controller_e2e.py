"""`acr-helper run` as a subprocess against the fake API server and the cloud emulator."""

from __future__ import annotations

import base64
import json
import time

import pytest

from .conftest import EE, EE_KEY, REGION, SECRET, decode_auths, sa, wait_for

pytestmark = [pytest.mark.e2e]

REGISTRY_INFO = f"""\
- instanceId: "{EE}"
  regionId: "{REGION}"
- instanceId: ""
"""
BASE = {
    "service-account": "default,builder",
    "watch-namespace": "all,!kube-system",
    "expiring-threshold": "15m",
    "acr-registry-info": REGISTRY_INFO,
}


def converged(cluster, namespace, sas=("default",)):
    def check():
        s = cluster.secret(namespace)
        if not s or (s["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") != "acr-helper":
            return False
        return all(SECRET in (cluster.pulls(namespace, n) or []) for n in sas)
    return check


def test_namespaces_and_service_accounts_get_secret_and_entry(cluster, cloud, run_controller):
    cluster.set_config(BASE)
    cluster.add_namespace("team-a", sas=("default", "builder", "other"))
    ctl = run_controller()
    wait_for(converged(cluster, "team-a", ("default", "builder")), what="team-a converged")
    secret = cluster.secret("team-a")
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    auths = decode_auths(secret)
    assert "e2e-registry.cn-hangzhou.cr.aliyuncs.com" in auths
    assert "e2e-registry-vpc.cn-hangzhou.cr.aliyuncs.com" in auths
    assert f"registry.{REGION}.aliyuncs.com" in auths
    for entry in auths.values():
        assert base64.b64decode(entry["auth"]).decode() == f"{entry['username']}:{entry['password']}"
        assert cloud.is_valid_registry_login(entry["username"], entry["password"])
    assert cluster.pulls("team-a", "other") == []  # not selected
    assert cluster.secret("kube-system") is None  # excluded by !kube-system
    # a namespace created later is served within a moment
    t0 = time.monotonic()
    cluster.add_namespace("team-new")
    wait_for(converged(cluster, "team-new"), what="new namespace converged")
    assert time.monotonic() - t0 < 5
    # a ServiceAccount created later too
    cluster.api.create(sa("team-a", "builder2"))
    cluster.api.create(sa("team-new", "builder"))
    wait_for(lambda: SECRET in (cluster.pulls("team-new", "builder") or []), what="new SA patched")
    assert ctl.metric("acr_helper_managed_secrets") is not None
    assert ctl.metric("acr_helper_token_expiration_timestamp_seconds", registry=EE_KEY) > time.time()
    assert ctl.metric("acr_helper_config_valid") == 1
    assert ctl.metric("acr_helper_leader") == 1


def test_idle_resync_writes_nothing_and_tokens_are_fetched_once(cluster, cloud, run_controller):
    cluster.set_config(BASE)
    for i in range(5):
        cluster.add_namespace(f"ns-{i}")
    run_controller("--resync-period", "1s")
    for i in range(5):
        wait_for(converged(cluster, f"ns-{i}"), what=f"ns-{i}")
    time.sleep(0.5)
    writes_before = len(cluster.writes())
    ee_calls = cloud.calls("GetAuthorizationToken")
    time.sleep(3.5)  # three resyncs
    assert len(cluster.writes()) == writes_before
    assert cloud.calls("GetAuthorizationToken") == ee_calls == 1


def test_others_pull_secrets_are_kept_and_foreign_secret_left_alone(cluster, cloud, run_controller):
    cluster.set_config(BASE)
    cluster.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
    cluster.api.create(sa("team-b", "default", ["corp-registry", "other-one"]))
    cluster.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-f"}})
    cluster.api.create(sa("team-f"))
    foreign = cluster.api.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                  "metadata": {"name": SECRET, "namespace": "team-f"},
                                  "data": {"x": base64.b64encode(b"theirs").decode()}})
    ctl = run_controller()
    wait_for(lambda: cluster.pulls("team-b") == ["corp-registry", "other-one", SECRET], what="merged entries")
    time.sleep(1.0)
    now = cluster.secret("team-f")
    assert now["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert now["data"] == foreign["data"]
    assert SECRET not in (cluster.pulls("team-f") or [])
    assert "SecretConflict" in ctl.logs() or "conflict" in ctl.logs().lower()


def test_config_edit_and_scope_shrink(cluster, cloud, run_controller):
    cluster.set_config({**BASE, "watch-namespace": "team-a,team-b"})
    cluster.add_namespace("team-a")
    cluster.add_namespace("team-b")
    cluster.add_namespace("team-c")
    cluster.api.update({**cluster.api.get("serviceaccounts", "team-b", "default"),
                        "imagePullSecrets": [{"name": "corp-registry"}]})
    run_controller()
    wait_for(converged(cluster, "team-a"), what="team-a")
    wait_for(converged(cluster, "team-b"), what="team-b")
    assert cluster.secret("team-c") is None
    # widen: team-c joins
    cluster.set_config({**BASE, "watch-namespace": "team-*"})
    wait_for(converged(cluster, "team-c"), what="team-c after config edit")
    # shrink: team-b leaves -> our Secret and our entry go, theirs stays
    cluster.set_config({**BASE, "watch-namespace": "team-*,!team-b"})
    wait_for(lambda: cluster.secret("team-b") is None, what="team-b secret deleted")
    wait_for(lambda: cluster.pulls("team-b") == ["corp-registry"], what="team-b entry removed")
    # the exclude label on a namespace also shrinks scope
    nsobj = cluster.api.get("namespaces", None, "team-c")
    nsobj["metadata"].setdefault("labels", {})["acr-helper/exclude"] = "true"
    cluster.api.update(nsobj)
    wait_for(lambda: cluster.secret("team-c") is None, what="team-c secret deleted on exclude label")
    wait_for(lambda: cluster.pulls("team-c") == [], what="team-c entry removed")
    assert cluster.secret("team-a") is not None
    # a ServiceAccount leaving the service-account list loses our entry
    cluster.set_config({**BASE, "watch-namespace": "team-*,!team-b", "service-account": "builder"})
    wait_for(lambda: cluster.pulls("team-a") == [], what="team-a default SA entry removed")


def test_bad_config_edit_changes_nothing(cluster, cloud, run_controller):
    cluster.set_config(BASE)
    cluster.add_namespace("team-a")
    ctl = run_controller()
    wait_for(converged(cluster, "team-a"), what="team-a")
    before = cluster.secret("team-a")
    writes = len(cluster.writes())
    cluster.set_config({**BASE, "watch-namespace": "team-zzz", "acr-registry-info": "- instanceId: [oops\n"})
    wait_for(lambda: ctl.metric("acr_helper_config_valid") == 0, what="config_valid 0")
    time.sleep(1.0)
    assert cluster.secret("team-a")["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert len(cluster.writes()) == writes
    events = [e for e in cluster.api.list("events", "kube-system") if e.get("reason") == "ConfigInvalid"]
    assert events, "a Warning Event on the ConfigMap"
    assert "acr-registry-info" in events[0]["message"]
    # deleting the ConfigMap keeps the last good config too
    cluster.api.delete("configmaps", "kube-system", "acr-configuration")
    time.sleep(1.0)
    assert cluster.secret("team-a") is not None


def test_refresh_before_expiry(cluster, cloud, run_controller):
    cloud.set_token_lifetime(12)
    cluster.set_config({**BASE, "expiring-threshold": "8s"})
    cluster.add_namespace("team-a")
    ctl = run_controller()
    wait_for(converged(cluster, "team-a"), what="team-a")
    first = decode_auths(cluster.secret("team-a"))
    wait_for(lambda: decode_auths(cluster.secret("team-a")) != first, timeout=20, what="rotation")
    second = decode_auths(cluster.secret("team-a"))
    for entry in second.values():
        assert cloud.is_valid_registry_login(entry["username"], entry["password"])
    assert ctl.metric("acr_helper_token_refresh_total", registry=EE_KEY, result="success") >= 2


def test_token_failure_keeps_secrets(cluster, cloud, run_controller):
    cluster.set_config({**BASE, "acr-registry-info": f'- instanceId: "{EE}"\n'})
    cluster.add_namespace("team-a")
    cloud.set_token_lifetime(12)
    cluster.set_config({**BASE, "acr-registry-info": f'- instanceId: "{EE}"\n', "expiring-threshold": "8s"})
    ctl = run_controller()
    wait_for(converged(cluster, "team-a"), what="team-a")
    rv = cluster.secret("team-a")["metadata"]["resourceVersion"]
    cloud.inject_fault("GetAuthorizationToken", "503", times=None)
    wait_for(lambda: (ctl.metric("acr_helper_token_refresh_total", registry=EE, result="error") or 0) >= 1,
             timeout=20, what="refresh error counted")
    assert cluster.secret("team-a")["metadata"]["resourceVersion"] == rv
    # the counter moves during the pass; the state gauges are published when the pass ends
    wait_for(lambda: (ctl.metric("acr_helper_token_refresh_failures", registry=EE) or 0) >= 1,
             what="failures gauge")
    events = [e for e in cluster.api.list("events", "kube-system") if e.get("reason") == "TokenRefreshFailed"]
    assert events
    cloud.clear_faults()
    wait_for(lambda: cluster.secret("team-a")["metadata"]["resourceVersion"] != rv, timeout=40,
             what="recovered and rotated")


def test_once_exits_zero_when_converged(cluster, cloud, run_controller):
    cluster.set_config(BASE)
    cluster.add_namespace("team-a")
    ctl = run_controller("--once")
    assert ctl.proc.wait(60) == 0, ctl.logs()[-3000:]
    assert converged(cluster, "team-a")()


def test_once_exits_nonzero_on_invalid_config(cluster, cloud, run_controller):
    cluster.set_config({**BASE, "expiring-threshold": "soon"})
    cluster.add_namespace("team-a")
    ctl = run_controller("--once")
    assert ctl.proc.wait(60) == 1
    assert cluster.secret("team-a") is None


def test_sigterm_exits_zero_and_logs_are_json_without_secrets(cluster, cloud, run_controller):
    cluster.set_config(BASE)
    cluster.add_namespace("team-a")
    ctl = run_controller()
    wait_for(converged(cluster, "team-a"), what="team-a")
    auths = decode_auths(cluster.secret("team-a"))
    assert ctl.stop() == 0
    logs = ctl.logs()
    for line in logs.splitlines():
        if line.startswith("{"):
            json.loads(line)
    for entry in auths.values():
        assert entry["password"] not in logs
        assert entry["auth"] not in logs


def test_region_comes_from_the_metadata_service_when_not_given(cluster, cloud, run_controller):
    cluster.set_config({**BASE, "acr-registry-info": '- instanceId: ""\n'})
    cluster.add_namespace("team-a")
    run_controller(region=None)
    wait_for(converged(cluster, "team-a"), what="team-a")
    assert f"registry.{cloud.region}.aliyuncs.com" in decode_auths(cluster.secret("team-a"))


def test_no_cluster_region_is_needed_when_every_entry_names_one(cluster, cloud, run_controller):
    cluster.set_config({**BASE, "acr-registry-info": f'- instanceId: "{EE}"\n  regionId: "{REGION}"\n'})
    cluster.add_namespace("team-a")
    cloud.inject_fault("imds-region", "500", times=None)
    run_controller(region=None)
    wait_for(converged(cluster, "team-a"), what="team-a")
    assert cloud.calls("imds-region") >= 1  # it was asked, failed, and was not needed


def test_restart_with_one_registry_failing_keeps_its_domains(cluster, cloud, run_controller):
    cluster.set_config(BASE)
    cluster.add_namespace("team-a")
    first = run_controller()
    wait_for(converged(cluster, "team-a"), what="team-a")
    assert first.stop() == 0
    # a Secret without the tokens index (as an older version wrote it) cannot be adopted from,
    # so the new process must fetch — and the EE call fails
    stripped = cluster.secret("team-a")
    del stripped["metadata"]["annotations"]["acr-helper/tokens"]
    cluster.api.update(stripped)
    before = cluster.secret("team-a")
    cloud.inject_fault("GetAuthorizationToken", "500", times=None)
    second = run_controller()
    wait_for(lambda: (second.metric("acr_helper_token_refresh_total", registry=EE_KEY, result="error") or 0) >= 1,
             what="EE refresh failing")
    time.sleep(1.0)
    after = cluster.secret("team-a")
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert decode_auths(after) == decode_auths(before)
    # a namespace created meanwhile still gets what works now
    cluster.add_namespace("team-new")
    wait_for(converged(cluster, "team-new"), what="team-new")
    assert f"registry.{REGION}.aliyuncs.com" in decode_auths(cluster.secret("team-new"))


def test_configmap_deleted_then_restart_removes_nothing(cluster, cloud, run_controller):
    cluster.set_config({**BASE, "watch-namespace": "all,!kube-system"})
    cluster.add_namespace("team-a")
    first = run_controller()
    wait_for(converged(cluster, "team-a"), what="team-a")
    assert first.stop() == 0
    cluster.api.delete("configmaps", "kube-system", "acr-configuration")
    run_controller()  # starts under the add-on's defaults (watch-namespace default)
    time.sleep(1.5)
    assert cluster.secret("team-a") is not None
    assert SECRET in cluster.pulls("team-a")


def test_restart_adopts_the_tokens_secrets_hold_and_rewrites_nothing(cluster, cloud, run_controller):
    cluster.set_config(BASE)
    for name in ("team-a", "team-b"):
        cluster.add_namespace(name)
    first = run_controller()
    for name in ("team-a", "team-b"):
        wait_for(converged(cluster, name), what=name)
    time.sleep(0.5)
    assert first.stop() == 0
    versions = {n: cluster.secret(n)["metadata"]["resourceVersion"] for n in ("team-a", "team-b")}
    token_calls = cloud.calls("GetAuthorizationToken") + cloud.calls("PersonalToken")
    writes = len(cluster.writes())
    second = run_controller()
    time.sleep(1.5)
    assert {n: cluster.secret(n)["metadata"]["resourceVersion"] for n in ("team-a", "team-b")} == versions
    assert len(cluster.writes()) == writes
    assert cloud.calls("GetAuthorizationToken") + cloud.calls("PersonalToken") == token_calls
    assert "adopted the tokens" in second.logs()
    # and the adopted tokens serve new namespaces too
    cluster.add_namespace("team-c")
    wait_for(converged(cluster, "team-c"), what="team-c")
    assert decode_auths(cluster.secret("team-c")) == decode_auths(cluster.secret("team-a"))


FORGED_USER = "mallory"


def converge_then_stop(cluster, run_controller, names):
    cluster.set_config(BASE)
    for name in names:
        cluster.add_namespace(name)
    first = run_controller()
    for name in names:
        wait_for(converged(cluster, name), what=name)
    assert first.stop() == 0


def forge_copy(secret, domains):
    """Replace a managed Secret's content with someone else's credential, self-consistently
    (the digest annotation matches the forged data)."""
    import hashlib

    pw = b"fake-forged-password"
    doc = {"auths": {d: {"username": FORGED_USER, "password": pw.decode(),
                         "auth": base64.b64encode(FORGED_USER.encode() + b":" + pw).decode()} for d in domains}}
    content = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    secret["metadata"]["annotations"]["acr-helper/content-digest"] = hashlib.sha256(content.encode()).hexdigest()
    secret["data"][".dockerconfigjson"] = base64.b64encode(content.encode()).decode()
    return secret


def test_a_tampered_secret_is_never_adopted_and_spread(cluster, cloud, run_controller):
    names = ("team-a", "team-b", "team-c")
    converge_then_stop(cluster, run_controller, names)
    # someone who may edit Secrets in team-a forges a complete, self-consistent copy there
    forged = forge_copy(cluster.secret("team-a"), decode_auths(cluster.secret("team-b")))
    ann = forged["metadata"]["annotations"]
    index = json.loads(ann["acr-helper/tokens"])
    for entry in index.values():
        entry["expires"] = "2099-01-01T00:00:00Z"
    ann["acr-helper/tokens"] = json.dumps(index, sort_keys=True, separators=(",", ":"))
    ann["acr-helper/earliest-expiry"] = "2099-01-01T00:00:00Z"
    cluster.api.update(forged)
    run_controller()

    def repaired():
        auths = [decode_auths(cluster.secret(n)) for n in names]
        return all(a == auths[0] for a in auths) and all(
            e["username"] != FORGED_USER for a in auths for e in a.values())

    wait_for(repaired, what="every namespace holds the controller's own content")
    for entry in decode_auths(cluster.secret("team-b")).values():
        assert cloud.is_valid_registry_login(entry["username"], entry["password"])


def test_an_edited_tokens_annotation_in_one_namespace_is_not_adopted(cluster, cloud, run_controller):
    cluster.set_config(BASE)
    names = ("aaa", "team-b", "team-c")
    for name in names:
        cluster.add_namespace(name)
    first = run_controller()
    for name in names:
        wait_for(converged(cluster, name), what=name)
    assert first.stop() == 0
    calls = cloud.calls("GetAuthorizationToken")
    forged = cluster.secret("aaa")  # the alphabetically first namespace; its data left untouched
    index = json.loads(forged["metadata"]["annotations"]["acr-helper/tokens"])
    for entry in index.values():
        entry["expires"] = "2099-01-01T00:00:00Z"
    forged["metadata"]["annotations"]["acr-helper/tokens"] = json.dumps(index, sort_keys=True,
                                                                        separators=(",", ":"))
    cluster.api.update(forged)
    second = run_controller()
    wait_for(lambda: cloud.calls("GetAuthorizationToken") > calls, what="fresh tokens fetched")
    wait_for(lambda: "2099" not in cluster.secret("aaa")["metadata"]["annotations"]["acr-helper/tokens"],
             what="aaa repaired")
    assert (second.metric("acr_helper_token_expiration_timestamp_seconds", registry=EE_KEY) or 0) < time.time() + 7200
    for name in names:
        assert "2099" not in json.dumps(cluster.secret(name)["metadata"]["annotations"])


def test_a_changed_credential_identity_is_not_masked_by_adoption(cluster, cloud, run_controller):
    role = "acs:ram::1234567890123456:role/acr-puller"
    cloud.add_role(role)
    cluster.set_config(BASE)
    cluster.add_namespace("team-a")
    first = run_controller()
    wait_for(converged(cluster, "team-a"), what="team-a")
    assert first.stop() == 0
    before = decode_auths(cluster.secret("team-a"))
    assume = cloud.calls("AssumeRole")
    cluster.set_config({**BASE, "acr-registry-info": REGISTRY_INFO.replace(
        f'  regionId: "{REGION}"\n', f'  regionId: "{REGION}"\n  assumeRoleARN: "{role}"\n')})
    run_controller()
    wait_for(lambda: cloud.calls("AssumeRole") > assume, what="AssumeRole with the new identity")
    wait_for(lambda: decode_auths(cluster.secret("team-a")) != before, what="new credential written")


def test_a_lone_forged_copy_is_never_adopted(cluster, cloud, run_controller):
    """Only one copy left (the others deleted while the controller was down) and it is forged: the
    new Secrets must not be made from it."""
    names = ("team-a", "team-b", "team-c")
    converge_then_stop(cluster, run_controller, names)
    for name in ("team-b", "team-c"):
        cluster.api.delete("secrets", name, SECRET)
    secret = cluster.secret("team-a")
    cluster.api.update(forge_copy(secret, list(decode_auths(secret))))
    run_controller()
    for name in names:
        wait_for(converged(cluster, name), what=name)
    wait_for(lambda: all(e["username"] != FORGED_USER for n in names for e in decode_auths(cluster.secret(n)).values()),
             what="no forged credential anywhere")
