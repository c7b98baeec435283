"""A registry whose refresh fails is never stripped from Secrets that still hold a valid token for it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from acr_helper.core.config import AcrConfig, NamespaceSelector
from acr_helper.core.desired import desired_state
from acr_helper.core.diff import plan
from acr_helper.core.model import (
    EXPIRY_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    REGISTRIES_ANNOTATION,
    ClusterView,
    NamespaceInfo,
    RegistryToken,
    SecretInfo,
    Sensitive,
    ServiceAccountInfo,
)

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
CFG = AcrConfig(watch_namespaces=NamespaceSelector(include=("all",)))


def token(key: str, domain: str) -> RegistryToken:
    return RegistryToken(key, "u", Sensitive(f"fake-{key}"), NOW + timedelta(hours=1), NOW, (domain,))


def owned(ns: str, registries: str, expiry: datetime) -> SecretInfo:
    return SecretInfo(ns, "acr-credential-helper", labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE},
                      annotations={REGISTRIES_ANNOTATION: registries,
                                   EXPIRY_ANNOTATION: expiry.strftime("%Y-%m-%dT%H:%M:%SZ")},
                      data_digest="old", resource_version="7")


def view(*secrets: SecretInfo) -> ClusterView:
    return ClusterView.build(
        namespaces=[NamespaceInfo("a"), NamespaceInfo("b"), NamespaceInfo("c")],
        service_accounts=[ServiceAccountInfo("a", "default"), ServiceAccountInfo("c", "default")],
        secrets=list(secrets),
    )


def test_secret_holding_a_valid_token_for_a_failing_registry_is_kept():
    v = view(owned("a", "ee,pe", NOW + timedelta(minutes=40)))
    d = desired_state(v, CFG, {"pe": token("pe", "pe.example")}, NOW, expected_registries=("ee", "pe"))
    assert d.held == frozenset({"a"})
    assert "a" not in d.secrets and "b" in d.secrets  # new namespaces still get what we have
    assert ("a", "default") in d.pull_secret_refs
    p = plan(d, v)
    assert [(x.action, x.namespace) for x in p.actions if x.kind == "Secret"] == [("create", "b"), ("create", "c")]
    assert any("kept as they are" in w for w in d.warnings)


def test_expired_secret_is_not_held():
    v = view(owned("a", "ee,pe", NOW - timedelta(minutes=1)))
    d = desired_state(v, CFG, {"pe": token("pe", "pe.example")}, NOW, expected_registries=("ee", "pe"))
    assert d.held == frozenset()
    assert "a" in d.secrets


def test_secret_without_the_failing_registry_is_updated_normally():
    v = view(owned("a", "pe", NOW + timedelta(minutes=40)))
    d = desired_state(v, CFG, {"pe": token("pe", "pe.example")}, NOW, expected_registries=("ee", "pe"))
    assert d.held == frozenset() and "a" in d.secrets


def test_without_expected_registries_nothing_is_held():
    v = view(owned("a", "ee,pe", NOW + timedelta(minutes=40)))
    d = desired_state(v, CFG, {"pe": token("pe", "pe.example")}, NOW)
    assert d.held == frozenset()


def test_no_removals_under_defaults():
    cfg = AcrConfig()  # watch-namespace default: only "default"
    v = ClusterView.build(
        namespaces=[NamespaceInfo("default"), NamespaceInfo("team-a")],
        service_accounts=[ServiceAccountInfo("team-a", "default", ("acr-credential-helper",))],
        secrets=[owned("team-a", "pe", NOW + timedelta(minutes=40))],
    )
    d = desired_state(v, cfg, {"pe": token("pe", "pe.example")}, NOW)
    assert {a.action for a in plan(d, v).actions} >= {"delete", "remove"}
    assert {a.action for a in plan(d, v, allow_removals=False).actions} == {"create"}


def test_also_refresh_keeps_managed_secrets_outside_scope_fresh():
    cfg = AcrConfig()  # defaults: watch-namespace default
    v = ClusterView.build(
        namespaces=[NamespaceInfo("default"), NamespaceInfo("team-a"), NamespaceInfo("team-b")],
        service_accounts=[ServiceAccountInfo("team-a", "default", ("acr-credential-helper",))],
        secrets=[owned("team-a", "pe", NOW + timedelta(minutes=40))],
    )
    d = desired_state(v, cfg, {"pe": token("pe", "pe.example")}, NOW, also_refresh=("team-a", "team-b"))
    assert sorted(d.secrets) == ["default", "team-a"]  # team-b holds no Secret of ours: not created
    assert ("team-a", "default") not in d.pull_secret_refs  # ServiceAccounts follow the real scope only
    actions = plan(d, v, allow_removals=False).actions
    assert {(a.action, a.namespace) for a in actions} == {("create", "default"), ("update", "team-a")}
