"""plan(desired, view): the ordered actions, their reasons, ownership rules and merge_pull_secrets."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from acr_helper.core.config import AcrConfig, NamespaceSelector, ServiceAccountSelector
from acr_helper.core.desired import desired_state
from acr_helper.core.diff import merge_pull_secrets, plan
from acr_helper.core.model import (
    DIGEST_ANNOTATION,
    EXCLUDE_LABEL,
    EXPIRY_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    REGISTRIES_ANNOTATION,
    ClusterView,
    DesiredSecret,
    NamespaceInfo,
    Plan,
    RegistryToken,
    SecretInfo,
    Sensitive,
    ServiceAccountInfo,
)

NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
NAME = "acr-credential-helper"
OURS = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}


def token(
    registry: str, *domains: str, password: str = "fake-token", expires: timedelta = timedelta(hours=1)
) -> RegistryToken:
    return RegistryToken(
        registry=registry,
        username="cr_temp_user",
        password=Sensitive(password),
        expires_at=NOW + expires,
        obtained_at=NOW + expires - timedelta(hours=1),
        domains=tuple(domains),
    )


TOKENS = {"cri-x": token("cri-x", "x.example.com")}


def config(
    namespaces: tuple[str, ...] = ("all",), exclude: tuple[str, ...] = (), sas: tuple[str, ...] = ("default",)
) -> AcrConfig:
    return AcrConfig(
        watch_namespaces=NamespaceSelector(include=namespaces, exclude=exclude),
        service_accounts=ServiceAccountSelector(include=sas),
    )


def secret_from(desired: DesiredSecret, **changes: object) -> SecretInfo:
    """The SecretInfo a cluster holds after writing `desired` (what the watch would report)."""
    info = SecretInfo(
        namespace=desired.namespace,
        name=desired.name,
        labels=dict(desired.labels),
        annotations=dict(desired.annotations),
        type=desired.type,
        data_digest=desired.digest,
        resource_version="7",
    )
    return replace(info, **changes)  # type: ignore[arg-type]


def rows(p: Plan) -> list[tuple[str, str, str, str]]:
    return [(a.action, a.kind, a.namespace, a.name) for a in p.actions]


def run(
    view: ClusterView, cfg: AcrConfig | None = None, tokens: dict[str, RegistryToken] | None = None
) -> Plan:
    return plan(desired_state(view, cfg or config(), TOKENS if tokens is None else tokens, NOW), view)


def converged(
    namespaces: list[NamespaceInfo], sas: list[ServiceAccountInfo], cfg: AcrConfig | None = None
) -> ClusterView:
    """A view in which every desired Secret exists exactly as rendered."""
    view = ClusterView.build(namespaces=namespaces, service_accounts=sas)
    d = desired_state(view, cfg or config(), TOKENS, NOW)
    return replace(view, secrets={ns: secret_from(s) for ns, s in d.secrets.items()})


# ----------------------------------------------------------------------------------------------


def test_a_fresh_namespace_gets_a_secret_and_its_service_account_our_entry():
    view = ClusterView.build(
        namespaces=[NamespaceInfo("team-a")],
        service_accounts=[ServiceAccountInfo("team-a", "default", ("theirs",), "11")],
    )
    p = run(view)
    assert rows(p) == [("create", "Secret", "team-a", NAME), ("add", "ServiceAccount", "team-a", "default")]
    create, add = p.actions
    assert create.reason == "namespace team-a is watched and has no pull Secret"
    assert create.secret is not None and create.secret.namespace == "team-a"
    assert add.reason == f"ServiceAccount default is selected and lacks {NAME} in imagePullSecrets"
    assert add.pull_secret == NAME and add.resource_version == "11"
    assert p.conflicts == ()


def test_a_converged_cluster_gives_an_empty_plan():
    view = converged(
        [NamespaceInfo("a"), NamespaceInfo("b")],
        [ServiceAccountInfo("a", "default", (NAME,)), ServiceAccountInfo("b", "default", ("x", NAME))],
    )
    assert run(view).empty


def test_order_is_secret_writes_then_adds_then_removes_then_deletes():
    base = converged([NamespaceInfo("a"), NamespaceInfo("z")], [])
    view = ClusterView.build(
        namespaces=[NamespaceInfo("a"), NamespaceInfo("c"), NamespaceInfo("z"), NamespaceInfo("kube-system")],
        service_accounts=[
            ServiceAccountInfo("a", "default"),
            ServiceAccountInfo("kube-system", "default", (NAME,)),
            ServiceAccountInfo("z", "default"),
        ],
        secrets=[
            replace(base.secrets["z"], data_digest="stale"),
            replace(base.secrets["a"], namespace="kube-system"),
        ],
    )
    p = run(view, config(exclude=("kube-system",)))
    assert rows(p) == [
        ("create", "Secret", "a", NAME),
        ("create", "Secret", "c", NAME),
        ("update", "Secret", "z", NAME),
        ("add", "ServiceAccount", "a", "default"),
        ("add", "ServiceAccount", "z", "default"),
        ("remove", "ServiceAccount", "kube-system", "default"),
        ("delete", "Secret", "kube-system", NAME),
    ]
    assert p.actions[-1].reason == "namespace kube-system is not selected by watch-namespace"
    assert p.actions[-1].resource_version == "7"


def test_a_rotated_token_updates_the_secret_with_a_reason():
    view = converged([NamespaceInfo("a")], [])
    rotated = {"cri-x": token("cri-x", "x.example.com", password="fake-token-2", expires=timedelta(hours=2))}
    p = run(view, tokens=rotated)
    assert rows(p) == [("update", "Secret", "a", NAME)]
    assert p.actions[0].reason == "token for cri-x rotated"
    assert p.actions[0].resource_version == "7"
    assert p.actions[0].secret is not None and p.actions[0].secret.digest != view.secrets["a"].data_digest


def test_added_and_removed_registries_are_named():
    view = converged([NamespaceInfo("a")], [])
    tokens = {"cri-y": token("cri-y", "y.example.com")}
    assert run(view, tokens=tokens).actions[0].reason == "registries changed: added cri-y; removed cri-x"


def test_content_edited_by_someone_else_is_restored():
    view = converged([NamespaceInfo("a")], [])
    view = replace(view, secrets={"a": replace(view.secrets["a"], data_digest="0" * 64)})
    p = run(view)
    assert rows(p) == [("update", "Secret", "a", NAME)]
    assert p.actions[0].reason == "the Secret's content was changed outside acr-helper"


def test_missing_data_wrong_type_and_stale_annotations_update():
    view = converged([NamespaceInfo("a")], [])
    s = view.secrets["a"]
    assert run(replace(view, secrets={"a": replace(s, data_digest="")})).actions[0].reason == (
        "the Secret has no .dockerconfigjson data"
    )
    assert run(replace(view, secrets={"a": replace(s, type="Opaque")})).actions[0].reason == (
        "type is Opaque, expected kubernetes.io/dockerconfigjson"
    )
    stale = replace(s, annotations={**s.annotations, EXPIRY_ANNOTATION: "2020-01-01T00:00:00Z"})
    assert run(replace(view, secrets={"a": stale})).actions[0].reason == (
        f"annotations out of date: {EXPIRY_ANNOTATION}"
    )


def test_extra_labels_and_annotations_of_others_do_not_cause_updates():
    view = converged([NamespaceInfo("a")], [])
    s = view.secrets["a"]
    extra = replace(s, labels={**s.labels, "team": "x"}, annotations={**s.annotations, "note": "hi"})
    assert run(replace(view, secrets={"a": extra})).empty


def test_a_foreign_secret_with_our_name_is_a_conflict_and_never_touched():
    foreign = SecretInfo("a", NAME, labels={"app": "theirs"}, data_digest="abc", resource_version="3")
    view = ClusterView.build(
        namespaces=[NamespaceInfo("a")],
        service_accounts=[ServiceAccountInfo("a", "default", ("other",))],
        secrets=[foreign],
    )
    p = run(view)
    assert p.actions == ()
    assert len(p.conflicts) == 1
    c = p.conflicts[0]
    assert (c.kind, c.namespace, c.name) == ("Secret", "a", NAME)
    assert "without label app.kubernetes.io/managed-by=acr-helper" in c.reason


def test_a_foreign_secret_out_of_scope_is_never_deleted_and_its_sa_entry_kept():
    foreign = SecretInfo("kube-system", NAME, labels={}, data_digest="abc")
    view = ClusterView.build(
        namespaces=[NamespaceInfo("kube-system")],
        service_accounts=[ServiceAccountInfo("kube-system", "default", (NAME,))],
        secrets=[foreign],
    )
    assert run(view, config(exclude=("kube-system",))) == Plan()


def test_excluded_namespace_loses_our_secret_and_entry_with_label_reason():
    view = converged([NamespaceInfo("team-c")], [ServiceAccountInfo("team-c", "default", ("a", NAME, "b"))])
    view = replace(view, namespaces={"team-c": NamespaceInfo("team-c", labels={EXCLUDE_LABEL: "true"})})
    p = run(view)
    assert rows(p) == [
        ("remove", "ServiceAccount", "team-c", "default"),
        ("delete", "Secret", "team-c", NAME),
    ]
    assert {a.reason for a in p.actions} == {"namespace team-c is excluded by label acr-helper/exclude=true"}


def test_a_service_account_no_longer_selected_loses_only_our_entry():
    view = converged(
        [NamespaceInfo("a")],
        [ServiceAccountInfo("a", "default", (NAME,)), ServiceAccountInfo("a", "builder", ("x", NAME))],
        cfg=config(sas=("*",)),
    )
    p = run(view, config(sas=("default",)))
    assert rows(p) == [("remove", "ServiceAccount", "a", "builder")]
    assert p.actions[0].reason == "ServiceAccount builder is no longer selected by service-account"
    assert merge_pull_secrets(("x", NAME), None, p.actions[0].pull_secret) == ("x",)


def test_nothing_is_deleted_or_removed_while_the_view_is_not_synced():
    view = converged([NamespaceInfo("gone")], [ServiceAccountInfo("gone", "default", (NAME,))])
    view = replace(view, synced=False)
    assert run(view, config(namespaces=("other",))).empty


def test_terminating_namespaces_are_left_to_the_namespace_deletion():
    view = converged([NamespaceInfo("a")], [ServiceAccountInfo("a", "default", (NAME,))])
    view = replace(view, namespaces={"a": NamespaceInfo("a", terminating=True)})
    assert run(view).empty


def test_objects_of_namespaces_missing_from_the_view_are_left_alone():
    view = converged([NamespaceInfo("a")], [ServiceAccountInfo("a", "default", (NAME,))])
    view = replace(view, namespaces={})
    assert run(view).empty


def test_no_valid_token_keeps_secrets_and_entries_in_scope_but_still_cleans_up_out_of_scope():
    view = converged(
        [NamespaceInfo("a"), NamespaceInfo("old")],
        [
            ServiceAccountInfo("a", "default", (NAME,)),
            ServiceAccountInfo("a", "builder", (NAME,)),
            ServiceAccountInfo("old", "default", (NAME,)),
        ],
    )
    expired = {"cri-x": token("cri-x", "x.example.com", expires=timedelta(0))}
    p = run(view, config(namespaces=("a",)), tokens=expired)
    assert rows(p) == [("remove", "ServiceAccount", "old", "default"), ("delete", "Secret", "old", NAME)]
    # and a fresh in-scope namespace gets nothing (no empty Secret)
    p = run(ClusterView.build(namespaces=[NamespaceInfo("new")]), tokens=expired)
    assert p.empty


def test_secrets_with_another_name_are_ignored():
    other = SecretInfo("a", "something-else", labels=OURS)
    view = ClusterView.build(namespaces=[NamespaceInfo("a")], secrets=[other])
    assert rows(run(view, config(namespaces=("b",)))) == []


@pytest.mark.parametrize(
    ("existing", "add", "remove", "expected"),
    [
        ((), NAME, None, (NAME,)),
        (("a", "b"), NAME, None, ("a", "b", NAME)),
        (("a", NAME, "b"), NAME, None, ("a", NAME, "b")),
        (("a", NAME, "b"), None, NAME, ("a", "b")),
        (("a", NAME, "b", NAME), None, NAME, ("a", "b")),
        (("b", "a", "b"), None, NAME, ("b", "a", "b")),
        (("b", "a"), None, None, ("b", "a")),
        ((), None, NAME, ()),
    ],
)
def test_merge_pull_secrets_keeps_others_in_order(existing, add, remove, expected):
    assert merge_pull_secrets(existing, add, remove) == expected


def test_annotations_registries_digest_are_compared():
    view = converged([NamespaceInfo("a")], [])
    s = view.secrets["a"]
    for key in (REGISTRIES_ANNOTATION, DIGEST_ANNOTATION):
        changed = replace(s, annotations={**s.annotations, key: "zzz"})
        assert rows(run(replace(view, secrets={"a": changed}))) == [("update", "Secret", "a", NAME)]


def test_an_owned_secret_without_our_annotations_is_rewritten():
    view = converged([NamespaceInfo("a")], [])
    bare = replace(view.secrets["a"], annotations={}, data_digest="1" * 64)
    p = run(replace(view, secrets={"a": bare}))
    assert rows(p) == [("update", "Secret", "a", NAME)]
    assert p.actions[0].reason == f"content differs and the Secret has no {REGISTRIES_ANNOTATION} annotation"
