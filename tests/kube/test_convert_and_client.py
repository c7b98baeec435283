"""convert (raw objects -> core values), the store, the rate limiter and the client helpers."""

from __future__ import annotations

import base64
import hashlib
import json
import threading

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from acr_helper.core.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from acr_helper.kube import convert
from acr_helper.kube.client import classify_request, error_message, is_too_large_rv, iter_lines
from acr_helper.kube.ratelimit import TokenBucket
from acr_helper.kube.store import Store

DOCKERCFG = '{"auths":{"r.example.com":{"auth":"ZmFrZTpmYWtl"}}}'


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


# ---------------------------------------------------------------------------------------- convert


def test_namespace_info_reads_labels_and_terminating() -> None:
    live = convert.namespace_info({"metadata": {"name": "a", "labels": {"acr-helper/exclude": "true"}},
                                   "status": {"phase": "Active"}})
    assert live.name == "a" and live.labels["acr-helper/exclude"] == "true" and not live.terminating
    assert convert.namespace_info({"metadata": {"name": "b"}, "status": {"phase": "Terminating"}}).terminating
    assert convert.namespace_info(
        {"metadata": {"name": "c", "deletionTimestamp": "2024-01-01T00:00:00Z"}}
    ).terminating
    with pytest.raises(TypeError):
        live.labels["x"] = "y"  # type: ignore[index]


def test_service_account_info_keeps_pull_secret_order_and_skips_nameless_entries() -> None:
    sa = convert.service_account_info({
        "metadata": {"namespace": "ns", "name": "default", "resourceVersion": "7"},
        "imagePullSecrets": [{"name": "theirs"}, {}, {"name": "acr-credential-helper"}, {"name": "z"}],
    })
    assert sa.image_pull_secrets == ("theirs", "acr-credential-helper", "z")
    assert (sa.namespace, sa.name, sa.resource_version) == ("ns", "default", "7")
    bare = convert.service_account_info({"metadata": {"namespace": "n", "name": "x"}})
    assert bare.image_pull_secrets == ()


def test_secret_info_keeps_a_digest_never_the_plaintext() -> None:
    obj = {
        "metadata": {"namespace": "ns", "name": "acr-credential-helper", "resourceVersion": "3",
                     "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}, "annotations": {"a": "b"}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(DOCKERCFG)},
    }
    info = convert.secret_info(obj)
    assert info.data_digest == hashlib.sha256(DOCKERCFG.encode()).hexdigest()
    assert info.owned and info.resource_version == "3" and info.annotations["a"] == "b"
    assert "ZmFrZTpmYWtl" not in repr(info) and DOCKERCFG not in repr(info)
    foreign = convert.secret_info({"metadata": {"namespace": "ns", "name": "x"}, "type": "Opaque",
                                   "data": {"other": b64("v")}})
    assert foreign.data_digest == "" and not foreign.owned and foreign.type == "Opaque"
    broken = convert.secret_info({"metadata": {"namespace": "ns", "name": "x"},
                                  "data": {".dockerconfigjson": "%%%not-base64"}})
    assert broken.data_digest == ""


def test_secret_data_decodes_and_hides_values_in_repr() -> None:
    data = convert.secret_data({"data": {"access-key-id": b64("FAKE-AK-ID"),
                                         "access-key-secret": b64("fake-secret-not-real"),
                                         "binary": base64.b64encode(b"\xff\xfe").decode()}})
    assert data.to_dict() == {"access-key-id": "FAKE-AK-ID", "access-key-secret": "fake-secret-not-real"}
    assert "fake-secret-not-real" not in repr(data) and "fake-secret-not-real" not in str(data)


def test_config_map_info() -> None:
    cm = convert.config_map_info({"metadata": {"namespace": "kube-system", "name": "acr-configuration",
                                               "uid": "u1", "resourceVersion": "9"},
                                  "data": {"watch-namespace": "all"}})
    assert (cm.namespace, cm.name) == ("kube-system", "acr-configuration")
    assert (cm.uid, cm.resource_version) == ("u1", "9")
    assert dict(cm.data) == {"watch-namespace": "all"}


def test_convert_accepts_client_models_too() -> None:
    model = k8s.V1ServiceAccount(
        metadata=k8s.V1ObjectMeta(namespace="ns", name="sa", resource_version="5"),
        image_pull_secrets=[k8s.V1LocalObjectReference(name="one")],
    )
    sa = convert.service_account_info(model)
    assert (sa.namespace, sa.name, sa.image_pull_secrets, sa.resource_version) == ("ns", "sa", ("one",), "5")


# ------------------------------------------------------------------------------------------ store


def test_store_replace_upsert_delete_and_generation() -> None:
    s: Store[object] = Store("namespaces", convert.namespace_info)
    assert not s.synced
    s.replace_all([{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}])
    g = s.generation
    assert s.synced and len(s) == 2
    s.upsert({"metadata": {"name": "c"}})
    s.delete({"metadata": {"name": "a"}})
    s.delete({"metadata": {"name": "missing"}})
    assert sorted(v.name for v in s.values()) == ["b", "c"]  # type: ignore[attr-defined]
    assert s.generation == g + 2
    snapshot = s.items()
    s.upsert({"metadata": {"name": "d"}})
    assert len(snapshot) == 2  # readers hold immutable copies


# ------------------------------------------------------------------------------------ rate limiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.mark.parametrize(("qps", "burst"), [(20.0, 40), (5.0, 1), (50.0, 10)])
def test_rate_limiter_never_exceeds_qps_after_the_burst(qps: float, burst: int) -> None:
    t = FakeTime()
    bucket = TokenBucket(qps, burst, clock=t.clock, sleep=t.sleep)
    grants = []
    for _ in range(int(qps * 10) + burst):
        bucket.acquire()
        grants.append(t.now)
    assert grants[:burst] == [0.0] * burst  # the burst goes at once
    # sliding 1-second windows after the burst never hold more than qps (+1 for the edge)
    after = grants[burst:]
    for i, start in enumerate(after):
        in_window = sum(1 for g in after[i:] if g < start + 1.0)
        assert in_window <= qps + 1e-9 + 1
    total_time = grants[-1]
    assert total_time == pytest.approx(len(after) / qps, rel=1e-6)


def test_rate_limiter_refills_while_idle_up_to_burst_only() -> None:
    t = FakeTime()
    bucket = TokenBucket(10.0, 5, clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        assert bucket.acquire() == 0.0
    assert bucket.acquire() == pytest.approx(0.1)
    t.now += 100.0  # a long idle period refills to `burst`, not more
    waits = [bucket.acquire() for _ in range(7)]
    assert waits[:5] == [0.0] * 5 and waits[5] == pytest.approx(0.1)


def test_rate_limiter_is_fair_across_threads() -> None:
    t = FakeTime()
    lock = threading.Lock()
    bucket = TokenBucket(10.0, 1, clock=t.clock, sleep=lambda s: None)
    waits: list[float] = []

    def worker() -> None:
        for _ in range(10):
            w = bucket.reserve()
            with lock:
                waits.append(w)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    # with the clock frozen, 40 reservations must be spread 0.1 s apart: 0, 0.1, ..., 3.9
    assert sorted(round(w, 6) for w in waits) == [round(i * 0.1, 6) for i in range(40)]


def test_rate_limiter_disabled_with_zero_qps() -> None:
    bucket = TokenBucket(0, 1, clock=lambda: 0.0, sleep=lambda s: pytest.fail("slept"))
    assert all(bucket.acquire() == 0 for _ in range(1000))


# ---------------------------------------------------------------------------------- client helpers


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("GET", "https://h/api/v1/namespaces", ("list", "namespaces")),
        ("GET", "https://h/api/v1/namespaces/kube-system", ("get", "namespaces")),
        ("GET", "https://h/api/v1/namespaces?watch=true&resourceVersion=5", ("watch", "namespaces")),
        ("GET", "https://h/api/v1/serviceaccounts?watch=true", ("watch", "serviceaccounts")),
        ("GET", "https://h/api/v1/secrets?fieldSelector=metadata.name%3Dx", ("list", "secrets")),
        ("GET", "https://h/api/v1/namespaces/ns/secrets/x", ("get", "secrets")),
        ("POST", "https://h/api/v1/namespaces/ns/secrets", ("create", "secrets")),
        ("PUT", "https://h/api/v1/namespaces/ns/serviceaccounts/default", ("update", "serviceaccounts")),
        ("PATCH", "https://h/api/v1/namespaces/ns/events/e.1", ("patch", "events")),
        ("DELETE", "https://h/api/v1/namespaces/ns/secrets/x", ("delete", "secrets")),
        ("DELETE", "https://h/api/v1/namespaces/ns/secrets", ("deletecollection", "secrets")),
        ("PUT", "https://h/apis/coordination.k8s.io/v1/namespaces/ks/leases/l", ("update", "leases")),
        ("GET", "https://h/version", ("get", "discovery")),
    ],
)
def test_classify_request(method: str, url: str, expected: tuple[str, str]) -> None:
    assert classify_request(method, url) == expected


def test_iter_lines_reassembles_lines_split_across_chunks() -> None:
    chunks = [b'{"a":', b'1}\n{"b"', b":2}\n\n", b"", b'{"c":3}']
    assert list(iter_lines(chunks)) == [b'{"a":1}', b'{"b":2}', b"", b'{"c":3}']


def _exc(status: int, body: dict[str, object]) -> ApiException:
    e = ApiException(status=status, reason="X")
    e.body = json.dumps(body)
    return e


def test_too_large_rv_detection_and_error_message() -> None:
    assert is_too_large_rv(_exc(504, {"message": "Too large resource version: 10, current: 5"}))
    assert is_too_large_rv(_exc(504, {"message": "x", "details": {"causes": [
        {"reason": "ResourceVersionTooLarge"}]}}))
    assert not is_too_large_rv(_exc(504, {"message": "gateway timeout"}))
    assert not is_too_large_rv(ValueError("Too large resource version"))
    msg = error_message(_exc(403, {"reason": "Forbidden", "message": "namespaces \"x\"\n is forbidden"}))
    assert msg == '403 Forbidden: namespaces "x" is forbidden'
