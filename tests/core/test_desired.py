"""desired_state: which namespaces get the Secret, what it holds, which ServiceAccounts use it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from acr_helper.core.config import AcrConfig, NamespaceSelector, ServiceAccountSelector
from acr_helper.core.desired import desired_state, format_rfc3339
from acr_helper.core.dockercfg import render
from acr_helper.core.model import (
    DIGEST_ANNOTATION,
    DOCKERCONFIGJSON_TYPE,
    EXCLUDE_LABEL,
    EXPIRY_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    REGISTRIES_ANNOTATION,
    TOKENS_ANNOTATION,
    ClusterView,
    NamespaceInfo,
    RegistryToken,
    Sensitive,
    ServiceAccountInfo,
)
from acr_helper.core.policy import refresh_at

NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)


def token(
    registry: str,
    *domains: str,
    expires: timedelta = timedelta(hours=1),
    password: str = "fake-token",
    obtained: timedelta = timedelta(0),
) -> RegistryToken:
    return RegistryToken(
        registry=registry,
        username="cr_temp_user",
        password=Sensitive(password),
        expires_at=NOW + expires,
        obtained_at=NOW + obtained,
        domains=tuple(domains),
    )


def config(
    namespaces: tuple[str, ...] = ("all",),
    exclude: tuple[str, ...] = (),
    sas: tuple[str, ...] = ("default",),
    secret_name: str = "acr-credential-helper",
) -> AcrConfig:
    return AcrConfig(
        watch_namespaces=NamespaceSelector(include=namespaces, exclude=exclude),
        service_accounts=ServiceAccountSelector(include=sas),
        secret_name=secret_name,
    )


VIEW = ClusterView.build(
    namespaces=[
        NamespaceInfo("default"),
        NamespaceInfo("team-a"),
        NamespaceInfo("team-b", labels={"env": "prod"}),
        NamespaceInfo("team-c", labels={EXCLUDE_LABEL: "true"}),
        NamespaceInfo("kube-system"),
        NamespaceInfo("leaving", terminating=True),
    ],
    service_accounts=[
        ServiceAccountInfo("default", "default"),
        ServiceAccountInfo("team-a", "default"),
        ServiceAccountInfo("team-a", "builder"),
        ServiceAccountInfo("team-c", "default"),
        ServiceAccountInfo("kube-system", "default"),
        ServiceAccountInfo("leaving", "default"),
    ],
)
TOKENS = {"cri-a": token("cri-a", "a.example.com", "a-vpc.example.com")}


def test_every_selected_namespace_gets_the_one_secret():
    d = desired_state(VIEW, config(exclude=("kube-*",)), TOKENS, NOW)
    assert sorted(d.secrets) == ["default", "team-a", "team-b"]
    assert d.namespaces_in_scope == frozenset({"default", "team-a", "team-b"})
    s = d.secrets["team-a"]
    assert s.namespace == "team-a"
    assert s.name == "acr-credential-helper"
    assert s.type == DOCKERCONFIGJSON_TYPE
    assert dict(s.labels) == {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
    assert s.digest == render(TOKENS.values()).digest
    assert set(json.loads(s.dockerconfigjson.reveal())["auths"]) == {"a.example.com", "a-vpc.example.com"}


def test_excluded_by_label_and_terminating_namespaces_are_out_of_scope():
    d = desired_state(VIEW, config(), TOKENS, NOW)
    assert "team-c" not in d.namespaces_in_scope
    assert "leaving" not in d.namespaces_in_scope
    assert "kube-system" in d.namespaces_in_scope


def test_glob_and_list_selection():
    d = desired_state(VIEW, config(namespaces=("team-*",), exclude=("team-b",)), TOKENS, NOW)
    assert sorted(d.secrets) == ["team-a"]


def test_annotations_hold_expiry_registries_and_digest():
    tokens = {
        "cri-b": token("cri-b", "b.example.com", expires=timedelta(hours=2)),
        "cri-a": token("cri-a", "a.example.com", expires=timedelta(hours=1)),
    }
    d = desired_state(VIEW, config(namespaces=("default",)), tokens, NOW)
    ann = dict(d.secrets["default"].annotations)
    index = json.loads(ann.pop(TOKENS_ANNOTATION))
    assert index == {
        "cri-a": {"domains": ["a.example.com"], "expires": "2026-11-28T23:00:00Z", "obtained": "2026-11-28T22:00:00Z"},
        "cri-b": {"domains": ["b.example.com"], "expires": "2026-11-29T00:00:00Z", "obtained": "2026-11-28T22:00:00Z"},
    }
    assert "fake" not in json.dumps(index) and "password" not in json.dumps(index)
    assert ann == {
        EXPIRY_ANNOTATION: "2026-11-28T23:00:00Z",
        REGISTRIES_ANNOTATION: "cri-a,cri-b",
        DIGEST_ANNOTATION: d.secrets["default"].digest,
    }


def test_selected_service_accounts_in_scope_must_carry_the_entry():
    d = desired_state(VIEW, config(exclude=("kube-system",)), TOKENS, NOW)
    assert d.pull_secret_refs == frozenset({("default", "default"), ("team-a", "default")})
    d = desired_state(VIEW, config(sas=("*",), exclude=("kube-system",)), TOKENS, NOW)
    assert d.pull_secret_refs == frozenset(
        {("default", "default"), ("team-a", "default"), ("team-a", "builder")}
    )
    d = desired_state(VIEW, config(sas=("build*",)), TOKENS, NOW)
    assert d.pull_secret_refs == frozenset({("team-a", "builder")})


def test_expired_tokens_are_left_out_with_a_warning():
    tokens = {
        "cri-old": token(
            "cri-old", "old.example.com", expires=timedelta(seconds=-1), obtained=timedelta(hours=-1)
        ),
        "cri-a": token("cri-a", "a.example.com"),
    }
    d = desired_state(VIEW, config(namespaces=("default",)), tokens, NOW)
    assert set(json.loads(d.secrets["default"].dockerconfigjson.reveal())["auths"]) == {"a.example.com"}
    assert d.secrets["default"].annotations[REGISTRIES_ANNOTATION] == "cri-a"
    assert "token for cri-old expired at 2026-11-28T21:59:59Z; left out" in d.warnings


def test_no_valid_token_means_no_desired_secret_anywhere_and_a_warning():
    tokens = {"cri-a": token("cri-a", "a.example.com", expires=timedelta(0), obtained=timedelta(hours=-1))}
    d = desired_state(VIEW, config(), tokens, NOW)
    assert d.secrets == {}
    assert d.pull_secret_refs == frozenset()
    assert "default" in d.namespaces_in_scope
    assert any("no valid registry token" in w for w in d.warnings)
    assert d.next_wakeup is None
    d = desired_state(VIEW, config(), {}, NOW)
    assert d.secrets == {} and d.next_wakeup is None
    assert any("no valid registry token" in w for w in d.warnings)


def test_a_token_without_domains_alone_does_not_make_an_empty_secret():
    d = desired_state(VIEW, config(), {"cri-x": token("cri-x")}, NOW)
    assert d.secrets == {}
    assert "token for cri-x contributes no registry domain; left out" in d.warnings


def test_domain_conflicts_are_warned_and_the_first_registry_wins():
    tokens = {
        "cri-first": token("cri-first", "shared.example.com", password="fake-first"),
        "cri-second": token("cri-second", "shared.example.com", "own.example.com", password="fake-second"),
    }
    d = desired_state(VIEW, config(namespaces=("default",)), tokens, NOW)
    auths = json.loads(d.secrets["default"].dockerconfigjson.reveal())["auths"]
    assert auths["shared.example.com"]["password"] == "fake-first"
    assert any("shared.example.com" in w and "cri-first" in w for w in d.warnings)


def test_next_wakeup_is_the_earliest_refresh_time():
    a = token("cri-a", "a.example.com", expires=timedelta(hours=1))
    b = token("cri-b", "b.example.com", expires=timedelta(minutes=40))
    cfg = config()
    d = desired_state(VIEW, cfg, {"cri-a": a, "cri-b": b}, NOW)
    assert d.next_wakeup == min(refresh_at(a, cfg.expiring_threshold), refresh_at(b, cfg.expiring_threshold))
    assert NOW < d.next_wakeup < NOW + timedelta(minutes=40)


def test_next_wakeup_falls_back_to_expiry_when_the_refresh_time_has_passed():
    # obtained an hour ago, expires in 5 minutes: refresh time (15m threshold) is in the past
    t = token("cri-a", "a.example.com", expires=timedelta(minutes=5), obtained=timedelta(hours=-1))
    d = desired_state(VIEW, config(), {"cri-a": t}, NOW)
    assert d.next_wakeup == NOW + timedelta(minutes=5)


def test_the_dict_key_names_the_registry():
    t = token("something-else", "a.example.com")
    d = desired_state(VIEW, config(namespaces=("default",)), {"cri-a": t}, NOW)
    assert d.secrets["default"].annotations[REGISTRIES_ANNOTATION] == "cri-a"


def test_custom_secret_name():
    d = desired_state(VIEW, config(secret_name="my-pull"), TOKENS, NOW)
    assert d.secret_name == "my-pull"
    assert {s.name for s in d.secrets.values()} == {"my-pull"}


def test_desired_state_is_deterministic():
    cfg = config()
    assert desired_state(VIEW, cfg, TOKENS, NOW) == desired_state(VIEW, cfg, TOKENS, NOW)


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 11, 28, 23, 0, tzinfo=UTC), "2026-11-28T23:00:00Z"),
        (datetime(2026, 11, 28, 23, 0, 0, 999999, tzinfo=UTC), "2026-11-28T23:00:00Z"),
        (
            datetime(2026, 11, 29, 7, 0, tzinfo=datetime.fromisoformat("2026-01-01T00:00+08:00").tzinfo),
            "2026-11-28T23:00:00Z",
        ),
        (datetime(2026, 11, 28, 23, 0), "2026-11-28T23:00:00Z"),
    ],
)
def test_rfc3339_formatting(moment: datetime, text: str):
    assert format_rfc3339(moment) == text
