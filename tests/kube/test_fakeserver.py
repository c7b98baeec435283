"""The fake API server, driven by the official `kubernetes` client (v37, unchanged)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from acr_helper.kube.fakeserver import FakeKubeAPI


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    server = FakeKubeAPI(bookmark_interval=0.2).start()
    server.create(ns_obj("a"))
    server.create(ns_obj("b"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ac(api: FakeKubeAPI) -> Iterator[client.ApiClient]:
    c = client.ApiClient(client.Configuration(host=api.url))
    yield c
    c.close()


@pytest.fixture
def core(ac: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(ac)


def ns_obj(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def secret(ns: str, name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def sa(ns: str, name: str, pulls: list[str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": ns},
    }
    if pulls is not None:
        obj["imagePullSecrets"] = [{"name": p} for p in pulls]
    return obj


def status_of(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def raw_watch(api: FakeKubeAPI, path: str, timeout: float = 5.0) -> Iterator[dict[str, Any]]:
    """Read a watch stream line by line over plain urllib3 (to see ERROR events and stream ends)."""
    http = urllib3.PoolManager()
    resp = http.request("GET", api.url + path, preload_content=False, timeout=urllib3.Timeout(5, timeout))
    assert resp.status == 200
    buf = b""
    for chunk in resp.stream(1024):
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)


# ----------------------------------------------------------------------------- discovery


def test_discovery_documents_parse_in_the_official_client(ac: client.ApiClient) -> None:
    assert client.CoreApi(ac).get_api_versions().versions == ["v1"]
    groups = {g.name: g.preferred_version.group_version for g in client.ApisApi(ac).get_api_versions().groups}
    assert groups == {"coordination.k8s.io": "coordination.k8s.io/v1", "events.k8s.io": "events.k8s.io/v1"}
    core_resources = {r.name: r.namespaced for r in client.CoreV1Api(ac).get_api_resources().resources}
    assert core_resources == {
        "namespaces": False,
        "configmaps": True,
        "secrets": True,
        "serviceaccounts": True,
        "events": True,
    }
    assert [r.name for r in client.CoordinationV1Api(ac).get_api_resources().resources] == ["leases"]
    assert [r.name for r in client.EventsV1Api(ac).get_api_resources().resources] == ["events"]
    assert client.VersionApi(ac).get_code().major == "1"


def test_unknown_paths_are_404_status(api: FakeKubeAPI) -> None:
    resp = urllib3.PoolManager().request("GET", api.url + "/api/v1/pods")
    assert resp.status == 404
    assert json.loads(resp.data)["reason"] == "NotFound"


# ----------------------------------------------------------------------------- CRUD


def test_crud_namespaces(core: client.CoreV1Api, api: FakeKubeAPI) -> None:
    created = core.create_namespace({"metadata": {"name": "c"}})
    assert created.status.phase == "Active"
    assert created.metadata.labels["kubernetes.io/metadata.name"] == "c"
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert core.read_namespace("c").metadata.resource_version == created.metadata.resource_version
    created.metadata.labels["team"] = "x"
    updated = core.replace_namespace("c", created)
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    assert {n.metadata.name for n in core.list_namespace().items} == {"a", "b", "c"}
    core.delete_namespace("c")
    with pytest.raises(ApiException) as e:
        core.read_namespace("c")
    assert e.value.status == 404


def test_crud_secrets_with_string_data_merged_into_base64_data(core: client.CoreV1Api) -> None:
    s = core.create_namespaced_secret("a", {"metadata": {"name": "s"}, "data": {"x": "eA=="}, "stringData": {"y": "why"}})
    assert s.data == {"x": "eA==", "y": base64.b64encode(b"why").decode()}
    assert s.type == "Opaque" and s.string_data is None
    assert s.metadata.generation == 1
    s.data["x"] = base64.b64encode(b"new").decode()
    s2 = core.replace_namespaced_secret("s", "a", s)
    assert s2.metadata.generation == 2 and s2.metadata.uid == s.metadata.uid
    assert core.read_namespaced_secret("s", "a").data["x"] == base64.b64encode(b"new").decode()
    status = core.delete_namespaced_secret("s", "a")  # v37 hands V1Status back as a dict
    status = status if isinstance(status, dict) else client.ApiClient().sanitize_for_serialization(status)
    assert status["status"] == "Success" and status["details"]["name"] == "s"
    assert core.list_namespaced_secret("a").items == []


def test_crud_configmaps_and_serviceaccounts(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("a", {"metadata": {"name": "cm"}, "data": {"k": "v"}})
    assert core.read_namespaced_config_map("cm", "a").data == {"k": "v"}
    core.create_namespaced_service_account("a", {"metadata": {"name": "default"}})
    got = core.read_namespaced_service_account("default", "a")
    got.image_pull_secrets = [client.V1LocalObjectReference(name="p")]
    core.replace_namespaced_service_account("default", "a", got)
    assert [r.name for r in core.read_namespaced_service_account("default", "a").image_pull_secrets] == ["p"]
    core.delete_namespaced_service_account("default", "a")
    core.delete_namespaced_config_map("cm", "a")
    assert core.list_service_account_for_all_namespaces().items == []


def test_crud_leases(ac: client.ApiClient) -> None:
    coord = client.CoordinationV1Api(ac)
    lease = coord.create_namespaced_lease(
        "a", {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}}
    )
    assert lease.api_version == "coordination.k8s.io/v1"
    lease.spec.holder_identity = "you"
    coord.replace_namespaced_lease("leader", "a", lease)
    assert coord.read_namespaced_lease("leader", "a").spec.holder_identity == "you"
    with pytest.raises(ApiException) as e:  # the stale copy loses
        coord.replace_namespaced_lease("leader", "a", lease)
    assert e.value.status == 409 and status_of(e.value)["reason"] == "Conflict"
    coord.delete_namespaced_lease("leader", "a")
    assert coord.list_lease_for_all_namespaces().items == []


def test_events_in_both_apis(ac: client.ApiClient, core: client.CoreV1Api, api: FakeKubeAPI) -> None:
    core.create_namespaced_event(
        "a",
        {
            "metadata": {"generateName": "x."},
            "reason": "Tested",
            "message": "m",
            "type": "Warning",
            "involvedObject": {"kind": "ConfigMap", "name": "c", "namespace": "a"},
        },
    )
    [ev] = core.list_namespaced_event("a", field_selector="involvedObject.kind=ConfigMap").items
    assert ev.metadata.name.startswith("x.") and len(ev.metadata.name) == 7 and ev.reason == "Tested"
    events = client.EventsV1Api(ac)
    events.create_namespaced_event(
        "a",
        {
            "metadata": {"name": "e1"},
            "reason": "R",
            "note": "n",
            "action": "A",
            "reportingController": "acr-helper",
            "reportingInstance": "i",
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "type": "Normal",
        },
    )
    events.patch_namespaced_event("e1", "a", {"note": "patched"})
    assert events.read_namespaced_event("e1", "a").note == "patched"
    assert api.count(verb="create", resource="events") == 2


def test_404_409_and_missing_namespace_bodies(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as e:
        core.read_namespaced_secret("nope", "a")
    assert e.value.status == 404
    assert status_of(e.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'secrets "nope" not found',
        "reason": "NotFound",
        "code": 404,
        "details": {"name": "nope", "kind": "secrets"},
    }
    core.create_namespaced_secret("a", {"metadata": {"name": "s"}})
    with pytest.raises(ApiException) as e:
        core.create_namespaced_secret("a", {"metadata": {"name": "s"}})
    assert e.value.status == 409 and status_of(e.value)["reason"] == "AlreadyExists"
    assert status_of(e.value)["message"] == 'secrets "s" already exists'
    with pytest.raises(ApiException) as e:
        core.create_namespaced_secret("missing", {"metadata": {"name": "s"}})
    assert e.value.status == 404 and status_of(e.value)["message"] == 'namespaces "missing" not found'
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_secret("ghost", "a", {"metadata": {"name": "ghost"}})
    assert e.value.status == 404


def test_optimistic_concurrency_on_update(core: client.CoreV1Api) -> None:
    s = core.create_namespaced_secret("a", {"metadata": {"name": "s"}})
    core.patch_namespaced_secret("s", "a", {"metadata": {"labels": {"x": "1"}}})
    s.metadata.labels = {"y": "2"}
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_secret("s", "a", s)
    assert e.value.status == 409
    assert "the object has been modified" in status_of(e.value)["message"]
    s.metadata.resource_version = None  # an unconditional update is allowed
    assert core.replace_namespaced_secret("s", "a", s).metadata.labels == {"y": "2"}


def test_a_no_op_update_writes_nothing(core: client.CoreV1Api, api: FakeKubeAPI) -> None:
    s = core.create_namespaced_secret("a", {"metadata": {"name": "s"}, "data": {"k": "dg=="}})
    rv = api.resource_version
    again = core.replace_namespaced_secret("s", "a", s)
    assert again.metadata.resource_version == s.metadata.resource_version and api.resource_version == rv


def test_secret_validation_like_the_real_server(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as e:
        core.create_namespaced_secret(
            "a",
            {"metadata": {"name": "d"}, "type": "kubernetes.io/dockerconfigjson", "data": {"other": "eA=="}},
        )
    assert e.value.status == 422 and status_of(e.value)["reason"] == "Invalid"
    with pytest.raises(ApiException) as e:
        core.create_namespaced_secret("a", {"metadata": {"name": "Bad_Name"}})
    assert e.value.status == 422
    with pytest.raises(ApiException) as e:
        core.create_namespaced_secret("a", {"metadata": {"name": "b64"}, "data": {"k": "not base64!"}})
    assert e.value.status == 400
    core.create_namespaced_secret(
        "a",
        {
            "metadata": {"name": "t"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": '{"auths":{}}'},
        },
    )
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_secret("t", "a", {"type": "Opaque"})
    assert e.value.status == 422 and "field is immutable" in status_of(e.value)["message"]


# ----------------------------------------------------------------------------- selectors, paging


def test_label_and_field_selectors(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.create(secret("a", "one", {"app": "x", "tier": "web"}))
    api.create(secret("a", "two", {"app": "y"}))
    api.create(secret("b", "one", {"app": "z", "tier": "db"}))
    api.create(secret("b", "three", {}))

    def names(**kw: Any) -> list[str]:
        return [f"{s.metadata.namespace}/{s.metadata.name}" for s in core.list_secret_for_all_namespaces(**kw).items]

    assert names(label_selector="app=x") == ["a/one"]
    assert names(label_selector="app==y") == ["a/two"]
    assert names(label_selector="app!=x") == ["a/two", "b/one", "b/three"]
    assert names(label_selector="app in (x, z)") == ["a/one", "b/one"]
    assert names(label_selector="app notin (x,z)") == ["a/two", "b/three"]
    assert names(label_selector="tier") == ["a/one", "b/one"]
    assert names(label_selector="!tier") == ["a/two", "b/three"]
    assert names(label_selector="app in (x,z),tier=db") == ["b/one"]
    assert names(field_selector="metadata.name=one") == ["a/one", "b/one"]
    assert names(field_selector="metadata.name==one,metadata.namespace=b") == ["b/one"]
    assert names(field_selector="metadata.namespace!=a") == ["b/one", "b/three"]
    assert [s.metadata.name for s in core.list_namespaced_secret("b", field_selector="metadata.name=one").items] == ["one"]
    assert names(field_selector="type=Opaque") == ["a/one", "a/two", "b/one", "b/three"]
    with pytest.raises(ApiException) as e:
        core.list_secret_for_all_namespaces(field_selector="spec.foo=bar")
    assert e.value.status == 400 and "field label not supported" in status_of(e.value)["message"]
    with pytest.raises(ApiException) as e:
        core.list_secret_for_all_namespaces(label_selector="a in (b")
    assert e.value.status == 400


def test_list_metadata_and_items_shape(api: FakeKubeAPI, core: client.CoreV1Api, ac: client.ApiClient) -> None:
    api.create(secret("a", "one"))
    raw = json.loads(core.list_secret_for_all_namespaces(_preload_content=False).data)
    assert raw["kind"] == "SecretList" and raw["apiVersion"] == "v1"
    assert raw["metadata"]["resourceVersion"] == api.resource_version
    assert "kind" not in raw["items"][0]  # list items carry no kind/apiVersion, as on a real server


def test_paging_with_limit_and_continue(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    for i in range(7):
        api.create(sa("a" if i % 2 else "b", f"sa-{i}"))
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_service_account_for_all_namespaces(limit=3, _continue=token)
        pages += 1
        seen += [f"{x.metadata.namespace}/{x.metadata.name}" for x in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(seen)
    assert pages == 3
    assert seen == sorted(seen) and len(set(seen)) == 7


def test_list_with_a_future_resource_version_is_504(core: client.CoreV1Api, api: FakeKubeAPI) -> None:
    with pytest.raises(ApiException) as e:
        core.list_namespace(resource_version=str(int(api.resource_version) + 100))
    assert e.value.status == 504
    assert status_of(e.value)["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


# ----------------------------------------------------------------------------- watch


def test_watch_from_list_rv_sees_added_modified_deleted(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.create(secret("a", "before"))
    rv = core.list_secret_for_all_namespaces().metadata.resource_version

    def writer() -> None:
        api.wait_for_watches(1, "secrets")
        core.create_namespaced_secret("a", {"metadata": {"name": "s"}})
        core.patch_namespaced_secret("s", "a", {"metadata": {"labels": {"x": "1"}}})
        api.delete("secrets", "a", "s")

    t = threading.Thread(target=writer)
    t.start()
    events = []
    for ev in watch.Watch().stream(core.list_secret_for_all_namespaces, resource_version=rv, timeout_seconds=5):
        events.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.resource_version))
        if ev["type"] == "DELETED":
            break
    t.join()
    assert [e[:2] for e in events] == [("ADDED", "s"), ("MODIFIED", "s"), ("DELETED", "s")]
    rvs = [int(e[2]) for e in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3  # a deletion carries its own, new RV
    assert rvs[-1] == int(api.resource_version)


def test_watch_replays_history_after_the_given_rv(api: FakeKubeAPI) -> None:
    rv = api.resource_version
    api.create(sa("a", "x"))
    api.create(sa("b", "y"))
    api.create(sa("a", "z"))
    stream = raw_watch(api, f"/api/v1/namespaces/a/serviceaccounts?watch=true&resourceVersion={rv}&timeoutSeconds=1")
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in stream] == [("ADDED", "x"), ("ADDED", "z")]


def test_watch_without_rv_or_rv_0_starts_with_added_for_existing(api: FakeKubeAPI) -> None:
    api.create(sa("a", "x"))
    api.create(sa("b", "x"))
    for rv in ("", "&resourceVersion=0"):
        stream = raw_watch(api, f"/api/v1/serviceaccounts?watch=1&timeoutSeconds=1{rv}")
        assert [(e["type"], e["object"]["metadata"]["namespace"]) for e in stream] == [
            ("ADDED", "a"),
            ("ADDED", "b"),
        ]


def test_field_selected_watch_only_sees_that_name(api: FakeKubeAPI) -> None:
    rv = api.resource_version
    api.create(secret("a", "acr-credential-helper"))
    api.create(secret("a", "other"))
    api.create(secret("b", "acr-credential-helper"))
    stream = raw_watch(
        api,
        f"/api/v1/secrets?watch=true&fieldSelector=metadata.name%3Dacr-credential-helper&resourceVersion={rv}&timeoutSeconds=1",
    )
    assert [e["object"]["metadata"]["namespace"] for e in stream] == ["a", "b"]


def test_an_object_leaving_the_label_selector_is_deleted_for_the_watcher(api: FakeKubeAPI) -> None:
    rv = api.resource_version
    api.create(secret("a", "s", {"managed": "yes"}))
    api.patch("secrets", "a", "s", {"metadata": {"labels": {"managed": None}}})
    api.patch("secrets", "a", "s", {"metadata": {"labels": {"managed": "yes"}}})
    stream = raw_watch(api, f"/api/v1/secrets?watch=true&labelSelector=managed%3Dyes&resourceVersion={rv}&timeoutSeconds=1")
    events = [
        (
            e["type"],
            e["object"]["metadata"].get("labels", {}).get("managed"),
            e["object"]["metadata"]["resourceVersion"],
        )
        for e in stream
    ]
    assert [e[:2] for e in events] == [("ADDED", "yes"), ("DELETED", "yes"), ("ADDED", "yes")]
    assert int(events[1][2]) == int(rv) + 2  # the DELETED carries the old content with the new RV


def test_bookmarks_periodic_and_on_demand(api: FakeKubeAPI) -> None:
    api.bookmark_interval = 0.3
    rv = api.resource_version
    got: list[dict[str, Any]] = []
    start = time.monotonic()
    for ev in raw_watch(api, f"/api/v1/namespaces?watch=true&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds=2"):
        got.append(ev)
        if len(got) == 1:
            api.create(ns_obj("c"))
        if len(got) == 3:
            assert api.send_bookmarks("namespaces") == 1
        if len(got) == 4:
            break
    assert [e["type"] for e in got] == ["BOOKMARK", "ADDED", "BOOKMARK", "BOOKMARK"]
    assert got[0]["object"] == {"kind": "Namespace", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}
    assert got[2]["object"]["metadata"]["resourceVersion"] == api.resource_version
    assert time.monotonic() - start < 1.5  # the on-demand one did not wait for the interval


def test_no_bookmarks_unless_allowed(api: FakeKubeAPI) -> None:
    stream = raw_watch(api, f"/api/v1/namespaces?watch=true&resourceVersion={api.resource_version}&timeoutSeconds=1")
    assert list(stream) == []


def test_official_watch_handles_bookmarks(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    w = watch.Watch()
    types = [
        ev["type"]
        for ev in w.stream(
            core.list_namespace,
            resource_version=api.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=1,
        )
    ]
    assert types and set(types) == {"BOOKMARK"}


def test_too_old_rv_gets_an_in_stream_410_then_the_stream_ends(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    old = api.resource_version
    api.create(ns_obj("c"))
    api.expire_history()
    events = list(raw_watch(api, f"/api/v1/namespaces?watch=true&resourceVersion={old}"))
    assert len(events) == 1 and events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 410, "Expired")
    assert status["message"].startswith(f"too old resource version: {old}")
    with pytest.raises(ApiException) as e:  # the official client raises it at once with timeout_seconds
        list(watch.Watch().stream(core.list_namespace, resource_version=old, timeout_seconds=5))
    assert e.value.status == 410
    # the current RV is still fine after compaction
    assert list(raw_watch(api, f"/api/v1/namespaces?watch=true&resourceVersion={api.resource_version}&timeoutSeconds=1")) == []


def test_bounded_history_expires_old_rvs() -> None:
    with FakeKubeAPI(history_limit=3) as api:
        api.create(ns_obj("a"))
        rv = api.resource_version
        for i in range(3):
            api.create(sa("a", f"s{i}"))
        ok = list(raw_watch(api, f"/api/v1/serviceaccounts?watch=true&resourceVersion={rv}&timeoutSeconds=1"))
        assert len(ok) == 3
        api.create(sa("a", "s3"))
        [err] = list(raw_watch(api, f"/api/v1/serviceaccounts?watch=true&resourceVersion={rv}"))
        assert err["object"]["code"] == 410
        # history is per resource, like the watch cache: namespaces are unaffected
        assert list(raw_watch(api, f"/api/v1/namespaces?watch=true&resourceVersion={rv}&timeoutSeconds=1")) == []


def test_forced_410_mid_stream_events(api: FakeKubeAPI) -> None:
    got: list[dict[str, Any]] = []

    def poke() -> None:
        api.wait_for_watches(1, "namespaces")
        api.create(ns_obj("c"))
        time.sleep(0.1)
        api.force_watch_error_410()

    t = threading.Thread(target=poke)
    t.start()
    got = list(raw_watch(api, f"/api/v1/namespaces?watch=true&resourceVersion={api.resource_version}"))
    t.join()
    assert [e["type"] for e in got] == ["ADDED", "ERROR"]
    assert got[1]["object"]["code"] == 410
    assert api.open_watches() == 0


def test_timeout_seconds_ends_the_stream(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    start = time.monotonic()
    assert list(watch.Watch().stream(core.list_namespace, resource_version=api.resource_version, timeout_seconds=1)) == []
    assert 0.9 <= time.monotonic() - start < 3
    assert api.open_watches() == 0


def test_cut_watches_breaks_the_stream_abruptly(api: FakeKubeAPI) -> None:
    def cut() -> None:
        api.wait_for_watches(1)
        assert api.cut_watches("namespaces") == 1

    t = threading.Thread(target=cut)
    t.start()
    with pytest.raises(urllib3.exceptions.HTTPError):  # ProtocolError / InvalidChunkLength
        list(raw_watch(api, f"/api/v1/namespaces?watch=true&resourceVersion={api.resource_version}"))
    t.join()


def test_stopping_the_server_ends_watches() -> None:
    api = FakeKubeAPI().start()
    result: list[Any] = []

    def consume() -> None:
        try:
            result.append(list(raw_watch(api, "/api/v1/namespaces?watch=true&resourceVersion=0", timeout=10)))
        except Exception as e:  # a clean end or a closed connection are both fine
            result.append(e)

    t = threading.Thread(target=consume)
    t.start()
    assert api.wait_for_watches(1)
    start = time.monotonic()
    api.stop()
    t.join(5)
    assert not t.is_alive() and time.monotonic() - start < 3
    assert result


def test_watch_with_a_future_rv_is_an_error_event(api: FakeKubeAPI) -> None:
    [err] = list(raw_watch(api, f"/api/v1/namespaces?watch=true&resourceVersion={int(api.resource_version) + 5}"))
    assert err["type"] == "ERROR" and err["object"]["code"] == 504


# ----------------------------------------------------------------------------- patches


def test_merge_patch(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(
        "a", {"metadata": {"name": "c", "labels": {"x": "1", "y": "2"}}, "data": {"k": "v", "d": "e"}}
    )
    out = core.patch_namespaced_config_map(
        "c",
        "a",
        {"metadata": {"labels": {"x": None}}, "data": {"k": "w"}},
        _content_type="application/merge-patch+json",
    )
    assert out.metadata.labels == {"y": "2"} and out.data == {"k": "w", "d": "e"}


def test_json_patch_add_remove_replace_test(core: client.CoreV1Api) -> None:
    core.create_namespaced_service_account(
        "a", {"metadata": {"name": "s", "labels": {"a/b": "1"}}, "imagePullSecrets": [{"name": "theirs"}]}
    )
    out = core.patch_namespaced_service_account(
        "s",
        "a",
        [
            {"op": "test", "path": "/imagePullSecrets/0/name", "value": "theirs"},
            {"op": "add", "path": "/imagePullSecrets/-", "value": {"name": "ours"}},
            {"op": "replace", "path": "/metadata/labels/a~1b", "value": "2"},
            {"op": "remove", "path": "/imagePullSecrets/0"},
        ],
    )
    assert [r.name for r in out.image_pull_secrets] == ["ours"] and out.metadata.labels == {"a/b": "2"}
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_service_account("s", "a", [{"op": "test", "path": "/metadata/name", "value": "x"}])
    assert e.value.status == 422


def test_json_patch_with_a_resource_version_test_is_a_precondition(core: client.CoreV1Api) -> None:
    s = core.create_namespaced_secret("a", {"metadata": {"name": "s"}})
    core.patch_namespaced_secret("s", "a", {"metadata": {"labels": {"bump": "1"}}})
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_secret(
            "s", "a", {"metadata": {"resourceVersion": s.metadata.resource_version, "labels": {"x": "y"}}}
        )
    assert e.value.status == 409


def test_strategic_merge_patch_semantics_of_service_accounts(core: client.CoreV1Api) -> None:
    core.create_namespaced_service_account(
        "a",
        {
            "metadata": {"name": "s", "finalizers": ["f1"]},
            "secrets": [{"name": "tok"}],
            "imagePullSecrets": [{"name": "theirs"}],
        },
    )
    # ServiceAccount.imagePullSecrets has no patchMergeKey (listType=atomic): the list is REPLACED
    out = core.patch_namespaced_service_account("s", "a", {"imagePullSecrets": [{"name": "ours"}]})
    assert [r.name for r in out.image_pull_secrets] == ["ours"]
    # ServiceAccount.secrets merges by name; $patch: delete removes an element
    out = core.patch_namespaced_service_account("s", "a", {"secrets": [{"name": "new"}]})
    assert [r.name for r in out.secrets] == ["tok", "new"]
    out = core.patch_namespaced_service_account("s", "a", {"secrets": [{"name": "tok", "$patch": "delete"}]})
    assert [r.name for r in out.secrets] == ["new"]
    # metadata.finalizers is a merged primitive list
    out = core.patch_namespaced_service_account("s", "a", {"metadata": {"finalizers": ["f2"]}})
    assert out.metadata.finalizers == ["f1", "f2"]


def test_server_side_apply_creates_then_merges(core: client.CoreV1Api, api: FakeKubeAPI) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s", "namespace": "a", "labels": {"owner": "acr-helper"}},
        "type": "Opaque",
        "data": {"k": "dg=="},
    }
    created = core.patch_namespaced_secret(
        "s", "a", body, field_manager="acr-helper", _content_type="application/apply-patch+yaml"
    )
    assert created.data == {"k": "dg=="}
    assert api.requests[-1].code == 201
    core.patch_namespaced_secret("s", "a", {"metadata": {"labels": {"other": "x"}}})
    body["data"] = {"k": "dzI="}
    out = core.patch_namespaced_secret("s", "a", body, field_manager="acr-helper", _content_type="application/apply-patch+yaml")
    assert out.data == {"k": "dzI="} and out.metadata.labels == {"owner": "acr-helper", "other": "x"}
    with pytest.raises(ApiException) as e:
        core.patch_namespaced_secret("s", "a", body, _content_type="application/apply-patch+yaml")
    assert e.value.status == 422 and "fieldManager" in status_of(e.value)["message"]


def test_unsupported_patch_content_type_is_415(api: FakeKubeAPI) -> None:
    api.create(sa("a", "s"))
    resp = urllib3.PoolManager().request(
        "PATCH",
        api.url + "/api/v1/namespaces/a/serviceaccounts/s",
        body=b"{}",
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status == 415


# ----------------------------------------------------------------------------- deletion


def test_delete_preconditions(core: client.CoreV1Api) -> None:
    s = core.create_namespaced_secret("a", {"metadata": {"name": "s"}})
    core.patch_namespaced_secret("s", "a", {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_secret(
            "s",
            "a",
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=s.metadata.resource_version)),
        )
    assert e.value.status == 409 and "precondition" in status_of(e.value)["message"]
    cur = core.read_namespaced_secret("s", "a")
    core.delete_namespaced_secret(
        "s",
        "a",
        body=client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=cur.metadata.resource_version, uid=cur.metadata.uid)
        ),
    )
    assert core.list_namespaced_secret("a").items == []


def test_delete_collection_with_selector(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.create(secret("a", "x", {"del": "1"}))
    api.create(secret("a", "y"))
    core.delete_collection_namespaced_secret("a", label_selector="del=1")
    assert [s["metadata"]["name"] for s in api.list("secrets", "a")] == ["y"]
    assert api.count(verb="deletecollection") == 1


def test_deleting_a_namespace_deletes_its_contents_with_events(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.create(secret("a", "s"))
    api.create(sa("a", "default"))
    api.create(sa("b", "default"))
    rv = api.resource_version
    core.delete_namespace("a")
    assert api.list("secrets", "a") == [] and api.list("serviceaccounts") == [api.get("serviceaccounts", "b", "default")]
    events = list(raw_watch(api, f"/api/v1/serviceaccounts?watch=true&resourceVersion={rv}&timeoutSeconds=1"))
    assert [(e["type"], e["object"]["metadata"]["namespace"]) for e in events] == [("DELETED", "a")]
    ns_events = list(raw_watch(api, f"/api/v1/namespaces?watch=true&resourceVersion={rv}&timeoutSeconds=1"))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in ns_events] == [("DELETED", "a")]


def test_terminating_namespaces_mode() -> None:
    with FakeKubeAPI(terminating_namespaces=True, namespace_deletion_delay=0.3) as api:
        api.create(ns_obj("t"))
        api.create(sa("t", "default"))
        core = client.CoreV1Api(client.ApiClient(client.Configuration(host=api.url)))
        deleted = core.delete_namespace("t")
        deleted = deleted if isinstance(deleted, dict) else client.ApiClient().sanitize_for_serialization(deleted)
        assert deleted["status"]["phase"] == "Terminating" and deleted["metadata"]["deletionTimestamp"]
        with pytest.raises(ApiException) as e:
            core.create_namespaced_secret("t", {"metadata": {"name": "s"}})
        assert e.value.status == 403
        assert status_of(e.value)["details"]["causes"][0]["reason"] == "NamespaceTerminating"
        deadline = time.monotonic() + 5
        while api.get("namespaces", None, "t") is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert api.get("namespaces", None, "t") is None and api.list("serviceaccounts") == []


def test_auto_create_namespaces_and_default_service_accounts() -> None:
    with FakeKubeAPI(auto_create_namespaces=True, default_service_accounts=True, system_namespaces=True) as api:
        assert {n["metadata"]["name"] for n in api.list("namespaces")} >= {"default", "kube-system"}
        api.create(secret("fresh", "s"))
        assert api.get("namespaces", None, "fresh") is not None
        assert api.get("serviceaccounts", "fresh", "default") is not None


# ----------------------------------------------------------------------------- faults, log, auth


def test_injected_fault_with_retry_after(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    fault = api.inject(verb="create", resource="secrets", code=503, times=2, retry_after=7)
    for _ in range(2):
        with pytest.raises(ApiException) as e:
            core.create_namespaced_secret("a", {"metadata": {"name": "s"}})
        assert e.value.status == 503 and e.value.headers["Retry-After"] == "7"
        assert status_of(e.value)["reason"] == "ServiceUnavailable"
        assert status_of(e.value)["details"]["retryAfterSeconds"] == 7
    core.create_namespaced_secret("a", {"metadata": {"name": "s"}})
    assert fault.hits == 2
    assert api.count(verb="create", resource="secrets", code=503) == 2
    assert api.count(verb="create", resource="secrets", code=201) == 1


def test_a_429_with_retry_after_is_retried_by_the_official_client_on_reads(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.inject(verb="list", resource="secrets", code=429, times=1, retry_after=1)
    assert core.list_secret_for_all_namespaces().items == []  # urllib3 honours Retry-After on GET
    assert api.count(verb="list", resource="secrets", code=429) == 1
    assert api.count(verb="list", resource="secrets", code=200) == 1


def test_fault_targeting_and_latency(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.create(secret("a", "s"))
    api.create(secret("b", "s"))
    api.inject(verb="get", resource="secrets", namespace="b", code=503, times=None)
    api.inject(verb="get", resource="secrets", namespace="a", code=None, latency=0.3)
    start = time.monotonic()
    assert core.read_namespaced_secret("s", "a").metadata.name == "s"
    assert time.monotonic() - start >= 0.3
    for _ in range(3):
        with pytest.raises(ApiException) as e:
            core.read_namespaced_secret("s", "b")
        assert e.value.status == 503
    api.clear_faults()
    assert core.read_namespaced_secret("s", "b").metadata.name == "s"


def test_injected_watch_fault_is_an_http_error_on_connect(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.inject(verb="watch", resource="namespaces", code=410)
    with pytest.raises(ApiException) as e:
        list(watch.Watch().stream(core.list_namespace, resource_version="1", timeout_seconds=1))
    assert e.value.status == 410


def test_request_log(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    api.reset_log()
    core.list_namespace()
    core.list_secret_for_all_namespaces(field_selector="metadata.name=x", label_selector="a=b")
    core.create_namespaced_secret("a", {"metadata": {"name": "s"}})
    core.patch_namespaced_secret("s", "a", {"metadata": {"labels": {"x": "1"}}})
    with pytest.raises(ApiException):
        core.read_namespaced_secret("nope", "a")
    assert api.count() == 5
    assert api.count(resource="secrets") == 4 and api.count(verb="list") == 2
    assert api.count(code=404) == 1 and api.count(verb="get", resource="secrets", code=404) == 1
    rec = api.requests[1]
    assert (rec.verb, rec.resource, rec.namespace, rec.field_selector, rec.label_selector, rec.user) == (
        "list",
        "secrets",
        None,
        "metadata.name=x",
        "a=b",
        "admin",
    )
    assert rec.duration >= 0 and rec.time > 0
    assert (api.requests[3].verb, api.requests[3].namespace, api.requests[3].name) == ("patch", "a", "s")
    api.reset_log()
    assert api.count() == 0


def test_direct_writes_emit_watch_events(api: FakeKubeAPI) -> None:
    rv = api.resource_version
    obj = api.create(sa("a", "s"))
    obj["imagePullSecrets"] = [{"name": "p"}]
    api.update(obj)
    api.patch("serviceaccounts", "a", "s", [{"op": "remove", "path": "/imagePullSecrets"}], patch_type="json")
    api.delete("serviceaccounts", "a", "s")
    events = list(raw_watch(api, f"/api/v1/serviceaccounts?watch=true&resourceVersion={rv}&timeoutSeconds=1"))
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]
    assert api.delete("serviceaccounts", "a", "s") is None
    assert api.get("serviceaccounts", "a", "s") is None


def test_kubeconfig_tokens_and_require_auth(tmp_path: Path) -> None:
    with FakeKubeAPI(require_auth=True) as api:
        anon = client.CoreV1Api(client.ApiClient(client.Configuration(host=api.url)))
        with pytest.raises(ApiException) as e:
            anon.list_namespace()
        assert e.value.status == 401
        path = api.write_kubeconfig(tmp_path / "kc", user="system:serviceaccount:kube-system:acr-helper")
        c = config.new_client_from_config(config_file=path)
        assert client.CoreV1Api(c).list_namespace().items == []
        assert api.requests[-1].user == "system:serviceaccount:kube-system:acr-helper"
        resp = urllib3.PoolManager().request(
            "GET", api.url + "/api/v1/namespaces", headers={"Authorization": "Bearer not-a-known-token"}
        )
        assert resp.status == 401 and json.loads(resp.data)["reason"] == "Unauthorized"


def test_admin_kubeconfig_without_token(tmp_path: Path, api: FakeKubeAPI) -> None:
    path = api.write_kubeconfig(tmp_path / "kc")
    c = config.new_client_from_config(config_file=path)
    assert {n.metadata.name for n in client.CoreV1Api(c).list_namespace().items} == {"a", "b"}
    assert api.requests[-1].user == "admin"


def test_table_output_for_kubectl_get(api: FakeKubeAPI) -> None:
    api.create(secret("a", "s", k="v"))
    resp = urllib3.PoolManager().request(
        "GET",
        api.url + "/api/v1/secrets",
        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"},
    )
    table = json.loads(resp.data)
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Type", "Data", "Age"]
    [row] = table["rows"]
    assert row["cells"][:3] == ["s", "Opaque", 1]
    assert row["object"]["metadata"]["namespace"] == "a"


def test_protobuf_bodies_are_415(api: FakeKubeAPI) -> None:
    resp = urllib3.PoolManager().request(
        "POST",
        api.url + "/api/v1/namespaces",
        body=b"k8s\x00",
        headers={"Content-Type": "application/vnd.kubernetes.protobuf"},
    )
    assert resp.status == 415


def test_command_line_runs_the_server_and_writes_a_kubeconfig(tmp_path: Path) -> None:
    import subprocess
    import sys

    kc = tmp_path / "kc"
    proc = subprocess.Popen(
        [sys.executable, "-m", "acr_helper.kube.fakeserver", "--port", "0", "--kubeconfig", str(kc)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "fake Kubernetes API server at http://127.0.0.1:" in proc.stdout.readline()
        proc.stdout.readline()
        c = config.new_client_from_config(config_file=str(kc))
        assert client.CoreV1Api(c).list_namespace().items == []
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
