"""RBAC enforcement of the fake API server, driven by the official `kubernetes` client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from acr_helper.kube.fakeserver import FakeKubeAPI

SA_USER = "system:serviceaccount:kube-system:acr-helper"
NAME = "acr-credential-helper"

# The least-privilege shape of issue 5, inline so these tests do not move with manifests/.
RBAC: list[dict[str, Any]] = [
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "acr-helper"},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
            {
                "apiGroups": [""],
                "resources": ["serviceaccounts"],
                "verbs": ["get", "list", "watch", "update", "patch"],
            },
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
            {
                "apiGroups": [""],
                "resources": ["secrets"],
                "resourceNames": [NAME],
                "verbs": ["get", "list", "watch", "update", "patch", "delete"],
            },
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "acr-helper"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "acr-helper"},
        "subjects": [{"kind": "ServiceAccount", "name": "acr-helper", "namespace": "kube-system"}],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "acr-helper", "namespace": "kube-system"},
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["acr-configuration"],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {
                "apiGroups": ["coordination.k8s.io"],
                "resources": ["leases"],
                "resourceNames": ["acr-helper"],
                "verbs": ["get", "update"],
            },
        ],
    },
    {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "acr-helper", "namespace": "kube-system"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "acr-helper"},
        "subjects": [{"kind": "ServiceAccount", "name": "acr-helper", "namespace": "kube-system"}],
    },
    # not RBAC: ignored
    {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "acr-helper", "namespace": "kube-system"},
    },
]


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    server = FakeKubeAPI(system_namespaces=True).start()
    server.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
    for ns in ("team-a", "default"):
        server.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": NAME, "namespace": ns}})
        server.create(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-password", "namespace": ns}}
        )
    server.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "acr-configuration", "namespace": "kube-system"},
            "data": {"watch-namespace": "all"},
        }
    )
    assert server.enable_rbac(RBAC) == 4
    try:
        yield server
    finally:
        server.stop()


def user_client(api: FakeKubeAPI, tmp_path: Path, user: str = SA_USER, groups: tuple[str, ...] = ()) -> Any:
    path = api.write_kubeconfig(tmp_path / f"kc-{abs(hash(user))}", user=user, groups=groups)
    return config.new_client_from_config(config_file=path)


@pytest.fixture
def core(api: FakeKubeAPI, tmp_path: Path) -> client.CoreV1Api:
    return client.CoreV1Api(user_client(api, tmp_path))


def forbidden(exc: ApiException) -> str:
    assert exc.status == 403
    body = json.loads(exc.body)
    assert body["reason"] == "Forbidden" and body["code"] == 403 and body["kind"] == "Status"
    return str(body["message"])


def test_unfiltered_secret_list_is_denied_with_the_real_message(
    api: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    with pytest.raises(ApiException) as e:
        core.list_secret_for_all_namespaces()
    assert forbidden(e.value) == (
        'secrets is forbidden: User "system:serviceaccount:kube-system:acr-helper" cannot list resource '
        '"secrets" in API group "" at the cluster scope'
    )
    [rec] = api.denied
    assert (rec.verb, rec.resource, rec.code, rec.user) == ("list", "secrets", 403, SA_USER)


def test_list_and_watch_allowed_exactly_with_the_name_field_selector(
    api: FakeKubeAPI, core: client.CoreV1Api
) -> None:
    items = core.list_secret_for_all_namespaces(field_selector=f"metadata.name={NAME}").items
    assert sorted(s.metadata.namespace for s in items) == ["default", "team-a"]
    events = list(
        watch.Watch().stream(
            core.list_secret_for_all_namespaces,
            field_selector=f"metadata.name={NAME}",
            resource_version="0",
            timeout_seconds=1,
        )
    )
    assert len(events) == 2
    with pytest.raises(ApiException) as e:
        core.list_secret_for_all_namespaces(field_selector="metadata.name=db-password")
    assert forbidden(e.value).startswith('secrets "db-password" is forbidden: User')
    with pytest.raises(ApiException) as e:
        core.list_secret_for_all_namespaces(field_selector=f"metadata.name!={NAME}")
    forbidden(e.value)
    with pytest.raises(ApiException) as e:
        list(watch.Watch().stream(core.list_secret_for_all_namespaces, timeout_seconds=1))
    assert "cannot watch resource" in forbidden(e.value)
    assert [r.verb for r in api.denied] == ["list", "list", "watch"]


def test_resource_names_gate_get_update_delete(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    ours = core.read_namespaced_secret(NAME, "team-a")
    core.replace_namespaced_secret(NAME, "team-a", ours)
    with pytest.raises(ApiException) as e:
        core.read_namespaced_secret("db-password", "team-a")
    assert forbidden(e.value) == (
        'secrets "db-password" is forbidden: User "system:serviceaccount:kube-system:acr-helper" '
        'cannot get resource "secrets" in API group "" in the namespace "team-a"'
    )
    with pytest.raises(ApiException) as e:
        core.delete_namespaced_secret("db-password", "team-a")
    assert "cannot delete resource" in forbidden(e.value)
    core.delete_namespaced_secret(NAME, "team-a")
    assert api.get("secrets", "team-a", NAME) is None
    assert api.get("secrets", "team-a", "db-password") is not None


def test_create_is_never_restricted_by_resource_names(api: FakeKubeAPI, tmp_path: Path) -> None:
    api.enable_rbac(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "named-create"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "resourceNames": ["x"],
                        "verbs": ["create"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "named-create"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "named-create",
                },
                "subjects": [{"kind": "User", "name": "alice"}],
            },
        ]
    )
    alice = client.CoreV1Api(user_client(api, tmp_path, "alice"))
    with pytest.raises(ApiException) as e:  # POST has no name for the authorizer: the rule cannot match
        alice.create_namespaced_config_map("team-a", {"metadata": {"name": "x"}})
    assert forbidden(e.value) == (
        'configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" '
        'in the namespace "team-a"'
    )
    # while the unrestricted create rule of the controller works for any name
    sa = client.CoreV1Api(user_client(api, tmp_path))
    sa.create_namespaced_secret("team-a", {"metadata": {"name": "anything"}})


def test_role_binding_scopes_to_its_namespace(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    assert core.read_namespaced_config_map("acr-configuration", "kube-system").data == {
        "watch-namespace": "all"
    }
    items = core.list_namespaced_config_map(
        "kube-system", field_selector="metadata.name=acr-configuration"
    ).items
    assert len(items) == 1
    with pytest.raises(ApiException) as e:
        core.list_namespaced_config_map("kube-system")
    assert "cannot list resource" in forbidden(e.value)
    api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "acr-configuration", "namespace": "team-a"},
        }
    )
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("acr-configuration", "team-a")
    assert 'in the namespace "team-a"' in forbidden(e.value)
    with pytest.raises(ApiException) as e:  # a cluster-wide list is not granted by a Role
        core.list_config_map_for_all_namespaces(field_selector="metadata.name=acr-configuration")
    assert "at the cluster scope" in forbidden(e.value)


def test_api_groups_matter_for_leases_and_events(api: FakeKubeAPI, tmp_path: Path) -> None:
    c = user_client(api, tmp_path)
    coord = client.CoordinationV1Api(c)
    lease = coord.create_namespaced_lease("kube-system", {"metadata": {"name": "acr-helper"}, "spec": {}})
    coord.replace_namespaced_lease("acr-helper", "kube-system", lease)
    with pytest.raises(ApiException) as e:
        coord.read_namespaced_lease("acr-helper", "default")
    assert forbidden(e.value) == (
        'leases.coordination.k8s.io "acr-helper" is forbidden: User "system:serviceaccount:kube-system:'
        'acr-helper" cannot get resource "leases" in API group "coordination.k8s.io" '
        'in the namespace "default"'
    )
    with pytest.raises(ApiException) as e:
        coord.delete_namespaced_lease("acr-helper", "kube-system")
    forbidden(e.value)
    client.EventsV1Api(c).create_namespaced_event(
        "team-a",
        {
            "metadata": {"name": "e"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "x",
            "reportingInstance": "y",
            "action": "a",
            "reason": "r",
            "type": "Normal",
        },
    )
    client.CoreV1Api(c).create_namespaced_event(
        "team-a", {"metadata": {"name": "e"}, "involvedObject": {"kind": "Secret", "name": NAME}}
    )
    with pytest.raises(ApiException) as e:
        client.CoreV1Api(c).list_namespaced_event("team-a")
    forbidden(e.value)


def test_namespace_get_uses_the_namespace_itself_as_scope(api: FakeKubeAPI, tmp_path: Path) -> None:
    api.enable_rbac(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "view-ns", "namespace": "team-a"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "ns-reader",
                },
                "subjects": [{"kind": "Group", "name": "readers"}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "ns-reader"},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get"]}],
            },
        ]
    )
    bob = client.CoreV1Api(user_client(api, tmp_path, "bob", groups=("readers",)))
    assert bob.read_namespace("team-a").metadata.name == "team-a"
    assert bob.read_namespaced_secret("db-password", "team-a").metadata.name == "db-password"
    with pytest.raises(ApiException) as e:
        bob.read_namespace("default")
    assert forbidden(e.value).endswith('in the namespace "default"')
    with pytest.raises(ApiException) as e:
        bob.list_namespace()
    forbidden(e.value)


def test_server_side_apply_that_creates_also_needs_create(api: FakeKubeAPI, tmp_path: Path) -> None:
    api.enable_rbac(
        [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "patcher"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]}],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "patcher"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "patcher",
                },
                "subjects": [{"kind": "User", "name": "carol"}],
            },
        ]
    )
    carol = client.CoreV1Api(user_client(api, tmp_path, "carol"))
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new"}, "data": {"k": "v"}}
    with pytest.raises(ApiException) as e:
        carol.patch_namespaced_config_map(
            "new", "team-a", body, field_manager="carol", _content_type="application/apply-patch+yaml"
        )
    assert "cannot create resource" in forbidden(e.value)
    api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "new", "namespace": "team-a"}})
    out = carol.patch_namespaced_config_map(
        "new", "team-a", body, field_manager="carol", _content_type="application/apply-patch+yaml"
    )
    assert out.data == {"k": "v"}


def test_admin_bypasses_rbac_and_unbound_users_get_nothing(api: FakeKubeAPI, tmp_path: Path) -> None:
    admin = client.CoreV1Api(client.ApiClient(client.Configuration(host=api.url)))
    assert len(admin.list_secret_for_all_namespaces().items) == 4
    nobody = client.CoreV1Api(user_client(api, tmp_path, "system:serviceaccount:default:nobody"))
    with pytest.raises(ApiException) as e:
        nobody.list_namespace()
    forbidden(e.value)
    # discovery stays open to every authenticated user, like the default system:discovery role
    assert client.CoreApi(nobody.api_client).get_api_versions().versions == ["v1"]
    api.disable_rbac()
    assert nobody.list_namespace().items


def test_denied_is_empty_when_everything_is_allowed(api: FakeKubeAPI, core: client.CoreV1Api) -> None:
    core.list_namespace()
    core.list_service_account_for_all_namespaces()
    core.patch_namespaced_secret(NAME, "team-a", {"metadata": {"labels": {"x": "y"}}})
    assert api.denied == []
