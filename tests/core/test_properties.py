"""Hypothesis properties of the pure core: convergence, determinism, ownership."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from acr_helper.core.config import AcrConfig, NamespaceSelector, ServiceAccountSelector
from acr_helper.core.desired import desired_state
from acr_helper.core.diff import merge_pull_secrets, plan
from acr_helper.core.dockercfg import render
from acr_helper.core.model import (
    DIGEST_ANNOTATION,
    DOCKERCONFIGJSON_TYPE,
    EXCLUDE_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    REGISTRIES_ANNOTATION,
    ClusterView,
    NamespaceInfo,
    Plan,
    RegistryToken,
    SecretInfo,
    Sensitive,
    ServiceAccountInfo,
)

NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
NAME = "acr-credential-helper"
NS_NAMES = ["default", "team-a", "team-b", "kube-system", "prod-x"]
SA_NAMES = ["default", "builder", "ci"]
PULL_NAMES = [NAME, "other", "regcred", "acr-credential-helper-old"]
DOMAINS = ["a.example.com", "b.example.com", "shared.example.com", "registry.cn-hangzhou.aliyuncs.com"]
REGISTRY_KEYS = ["cri-a", "cri-b", "personal/cn-hangzhou"]

# ----------------------------------------------------------------------------------------------
# strategies

namespace_st = st.builds(
    NamespaceInfo,
    name=st.sampled_from(NS_NAMES),
    labels=st.sampled_from([{}, {EXCLUDE_LABEL: "true"}, {EXCLUDE_LABEL: "false"}, {"env": "prod"}]),
    terminating=st.booleans(),
)

secret_st = st.builds(
    SecretInfo,
    namespace=st.sampled_from([*NS_NAMES, "ghost"]),
    name=st.sampled_from([NAME, NAME, "other-secret"]),
    labels=st.sampled_from(
        [{}, {MANAGED_BY_LABEL: MANAGED_BY_VALUE}, {MANAGED_BY_LABEL: "someone-else"}, {"app": "x"}]
    ),
    annotations=st.sampled_from([{}, {REGISTRIES_ANNOTATION: "cri-a"}, {DIGEST_ANNOTATION: "0" * 64}]),
    type=st.sampled_from([DOCKERCONFIGJSON_TYPE, DOCKERCONFIGJSON_TYPE, "Opaque"]),
    data_digest=st.sampled_from(["", "0" * 64, "f" * 64]),
    resource_version=st.sampled_from(["1", "2"]),
)

service_account_st = st.builds(
    ServiceAccountInfo,
    namespace=st.sampled_from([*NS_NAMES, "ghost"]),
    name=st.sampled_from(SA_NAMES),
    image_pull_secrets=st.lists(st.sampled_from(PULL_NAMES), max_size=4).map(tuple),
    resource_version=st.sampled_from(["1", "2"]),
)


@st.composite
def views(draw: st.DrawFn) -> ClusterView:
    return ClusterView.build(
        namespaces=draw(st.lists(namespace_st, max_size=5, unique_by=lambda n: n.name)),
        service_accounts=draw(
            st.lists(service_account_st, max_size=8, unique_by=lambda s: (s.namespace, s.name))
        ),
        secrets=draw(st.lists(secret_st, max_size=5, unique_by=lambda s: s.namespace)),
        synced=draw(st.booleans()),
    )


configs = st.builds(
    lambda inc, exc, sas: AcrConfig(
        watch_namespaces=NamespaceSelector(include=tuple(inc), exclude=tuple(exc)),
        service_accounts=ServiceAccountSelector(include=tuple(sas)),
    ),
    st.lists(st.sampled_from(["all", "default", "team-*", "kube-system", "prod-?"]), min_size=1, max_size=3),
    st.lists(st.sampled_from(["kube-*", "team-b", "default"]), max_size=2),
    st.lists(st.sampled_from(["default", "*", "build*", "ci"]), min_size=1, max_size=2),
)


@st.composite
def token_maps(draw: st.DrawFn) -> dict[str, RegistryToken]:
    keys = draw(st.lists(st.sampled_from(REGISTRY_KEYS), max_size=3, unique=True))
    out: dict[str, RegistryToken] = {}
    for key in keys:
        lifetime = draw(st.sampled_from([timedelta(minutes=10), timedelta(hours=1), timedelta(hours=12)]))
        age = draw(st.sampled_from([timedelta(0), timedelta(minutes=30), timedelta(hours=2)]))
        out[key] = RegistryToken(
            registry=key,
            username=draw(st.sampled_from(["cr_temp_user", "", "aliyun$user"])),
            password=Sensitive(draw(st.sampled_from(["fake-token-1", "fake-token-2", ""]))),
            expires_at=NOW - age + lifetime,
            obtained_at=NOW - age,
            domains=tuple(draw(st.lists(st.sampled_from(DOMAINS), max_size=3))),
        )
    return out


# ----------------------------------------------------------------------------------------------
# the pure "apply" used by the properties


def apply_plan_to_view(p: Plan, view: ClusterView) -> ClusterView:
    """What the cluster looks like after the apply layer executed every action of `p`."""
    secrets = dict(view.secrets)
    sas = dict(view.service_accounts)
    for a in p.actions:
        if a.kind == "Secret" and a.action in ("create", "update"):
            assert a.secret is not None
            secrets[a.namespace] = SecretInfo(
                namespace=a.namespace,
                name=a.name,
                labels=MappingProxyType(dict(a.secret.labels)),
                annotations=MappingProxyType(dict(a.secret.annotations)),
                type=a.secret.type,
                data_digest=a.secret.digest,
                resource_version="applied",
            )
        elif a.kind == "Secret" and a.action == "delete":
            del secrets[a.namespace]
        else:
            sa = sas[(a.namespace, a.name)]
            add = a.pull_secret if a.action == "add" else None
            remove = a.pull_secret if a.action == "remove" else None
            sas[(a.namespace, a.name)] = replace(
                sa, image_pull_secrets=merge_pull_secrets(sa.image_pull_secrets, add, remove)
            )
    return ClusterView(
        namespaces=view.namespaces,
        service_accounts=MappingProxyType(sas),
        secrets=MappingProxyType(secrets),
        synced=view.synced,
    )


def _not_ours(entries: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(e for e in entries if e != NAME)


# ----------------------------------------------------------------------------------------------
# properties

COMMON = settings(max_examples=200, deadline=None)


@COMMON
@given(view=views(), config=configs, tokens=token_maps())
def test_planning_again_after_applying_the_plan_gives_an_empty_plan(view, config, tokens):
    first = plan(desired_state(view, config, tokens, NOW), view)
    after = apply_plan_to_view(first, view)
    second = plan(desired_state(after, config, tokens, NOW), after)
    assert second.actions == (), second.actions
    assert second.conflicts == first.conflicts


@COMMON
@given(view=views(), config=configs, tokens=token_maps())
def test_no_plan_edits_or_deletes_what_we_do_not_own(view, config, tokens):
    desired = desired_state(view, config, tokens, NOW)
    p = plan(desired, view)
    for a in p.actions:
        if a.kind == "Secret":
            existing = view.secrets.get(a.namespace)
            if a.action == "create":
                assert existing is None or existing.name != NAME
            else:
                assert existing is not None and existing.name == NAME and existing.owned, a
            if a.action == "delete":
                assert view.synced
                assert a.namespace not in desired.namespaces_in_scope
        else:
            assert a.pull_secret == NAME
            sa = view.service_accounts[(a.namespace, a.name)]
            merged = merge_pull_secrets(
                sa.image_pull_secrets,
                a.pull_secret if a.action == "add" else None,
                a.pull_secret if a.action == "remove" else None,
            )
            assert _not_ours(merged) == _not_ours(sa.image_pull_secrets)
            foreign = view.secrets.get(a.namespace)
            assert foreign is None or foreign.name != NAME or foreign.owned
            if a.action == "remove":
                assert view.synced


@COMMON
@given(view=views(), config=configs, tokens=token_maps())
def test_written_secrets_are_never_empty_and_carry_our_label(view, config, tokens):
    p = plan(desired_state(view, config, tokens, NOW), view)
    for a in p.actions:
        if a.action in ("create", "update"):
            assert a.secret is not None
            auths = json.loads(a.secret.dockerconfigjson.reveal())["auths"]
            assert auths
            assert a.secret.labels[MANAGED_BY_LABEL] == MANAGED_BY_VALUE
            assert a.reason


@COMMON
@given(view=views(), config=configs, tokens=token_maps())
def test_without_a_valid_token_nothing_in_scope_is_written_or_removed(view, config, tokens):
    expired = {k: replace(t, expires_at=NOW) for k, t in tokens.items()}
    desired = desired_state(view, config, expired, NOW)
    p = plan(desired, view)
    assert desired.secrets == {}
    for a in p.actions:
        assert a.action in ("remove", "delete")
        assert a.namespace not in desired.namespaces_in_scope


@COMMON
@given(view=views(), config=configs, tokens=token_maps())
def test_actions_are_in_the_documented_order(view, config, tokens):
    p = plan(desired_state(view, config, tokens, NOW), view)
    rank = {"create": 0, "update": 0, "add": 1, "remove": 2, "delete": 3}
    ranks = [rank[a.action] for a in p.actions]
    assert ranks == sorted(ranks)
    writes = [a.namespace for a in p.actions if rank[a.action] == 0]
    assert writes == sorted(writes)


@COMMON
@given(tokens=token_maps(), data=st.data())
def test_rendering_is_deterministic_and_independent_of_domain_order(tokens, data):
    valid = list(tokens.values())
    shuffled = [replace(t, domains=tuple(data.draw(st.permutations(t.domains)))) for t in valid]
    one, two = render(valid), render(shuffled)
    assert one.content.reveal() == two.content.reveal()
    assert one.digest == two.digest
    assert render(valid) == one


@COMMON
@given(data=st.data())
def test_rendering_of_disjoint_registries_is_independent_of_their_order(data):
    domain_sets = data.draw(
        st.lists(st.sets(st.sampled_from(DOMAINS), min_size=1), min_size=1, max_size=3).filter(
            lambda sets: sum(len(s) for s in sets) == len(set().union(*sets))
        )
    )
    tokens = [
        RegistryToken(
            registry=f"cri-{i}",
            username=f"user{i}",
            password=Sensitive(f"fake-{i}"),
            expires_at=NOW + timedelta(hours=1),
            obtained_at=NOW,
            domains=tuple(domains),
        )
        for i, domains in enumerate(domain_sets)
    ]
    order = data.draw(st.permutations(tokens))
    assert render(tokens).content.reveal() == render(order).content.reveal()
