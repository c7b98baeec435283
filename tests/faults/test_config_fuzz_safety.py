"""Config fuzzing: a bad edit of the ConfigMap never crashes, never deletes, always says why.

Pure and fast (no subprocess, no sockets). Two layers are driven with the same examples:

* the model of the runtime's rule (`config_in_force`: the ConfigMap's config when it parses
  without errors, else the last good one), through `parse_config`, `desired_state` and `plan`;
* the real `acr_helper.runtime.Controller._config` with a stub cache and Event recorder, so the
  model cannot drift from the code it stands for.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acr_helper.core.config import KNOWN_KEYS, REGISTRY_FIELDS, AcrConfig, parse_config
from acr_helper.core.desired import desired_state
from acr_helper.core.diff import plan
from acr_helper.core.model import (
    EXCLUDE_LABEL,
    ClusterView,
    NamespaceInfo,
    Plan,
    RegistryToken,
    SecretInfo,
    Sensitive,
    ServiceAccountInfo,
)
from acr_helper.kube.convert import ConfigMapInfo
from acr_helper.runtime import Controller
from acr_helper.settings import ServerSettings, Settings

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SECRET_NAME = "acr-credential-helper"
SECRET_VALUE = "fake-secret-not-real"

GOOD: dict[str, str] = {
    "service-account": "default,builder",
    "watch-namespace": "team-*,prod-x",
    "expiring-threshold": "15m",
    "acr-registry-info": '- instanceId: "cri-good"\n  regionId: "cn-hangzhou"\n  domains: "a.example.com"\n',
}

FUZZ = settings(
    max_examples=1000,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

FRAGMENTS = [
    "- ", "-", "  ", "    ", " ", "\n", "\r\n", "\t", "\u00a0", "\ufeff", ":", ": ", ",", '"', "'",
    "# ", "[", "]", "{", "}", "*", "!", "&a ", "*a", "|", ">", "~", "null", "true", "no", "0", "-1",
    "900", "43200", "1e3", "15m", "1h", "soon", "all", "!kube-system", "team-*", "default", "*",
    "cri-", "cri-good", "cn-hangzhou", "a.example.com", "acs:ram::123:role/r", "acs:ram::.*:role/r",
    "\\", "%", "@", "`", "<<", "---", "...", "?", "\x00", "\x07", "é", "😀", "instanceId: ",
    "customAccessKey: FAKE-AK-ID", f"customAccessKeySecret: {SECRET_VALUE}",
    *[f"{k}: " for k in REGISTRY_FIELDS], *[f"- {k}: " for k in REGISTRY_FIELDS],
]
yamlish = st.lists(st.sampled_from(FRAGMENTS), max_size=30).map("".join)
values = st.one_of(yamlish, st.text(max_size=60), st.sampled_from(list(GOOD.values())))
keys = st.one_of(st.sampled_from(KNOWN_KEYS), st.text(max_size=16),
                 st.sampled_from(["Watch-Namespace", " rrsa"]))


@st.composite
def edited_configmaps(draw: st.DrawFn) -> dict[str, str]:
    """The good ConfigMap data after a random edit: values replaced, keys dropped or added."""
    data = dict(GOOD)
    for key in draw(st.lists(st.sampled_from(sorted(set(KNOWN_KEYS) | set(GOOD))), max_size=4, unique=True)):
        if draw(st.booleans()):
            data.pop(key, None)
        else:
            data[key] = draw(values)
    data.update(draw(st.dictionaries(keys, values, max_size=2)))
    return data


# ----------------------------------------------------------------------------------------------
# the cluster: converged for the good config, plus one of our Secrets the good config already drops


def token() -> RegistryToken:
    return RegistryToken(registry="cri-good", username="cr_temp_user", password=Sensitive("fake-token-x"),
                         expires_at=NOW + timedelta(hours=1), obtained_at=NOW, domains=("a.example.com",))


def tokens_for(config: AcrConfig) -> dict[str, RegistryToken]:
    # one token per configured registry key; the contents do not matter for deletions
    return {key: replace(token(), registry=key) for key in config.registry_keys("cn-hangzhou")}


def base_view() -> ClusterView:
    names = ["team-a", "team-b", "prod-x", "kube-system", "default", "other"]
    namespaces = [NamespaceInfo(name=n) for n in names] + [
        NamespaceInfo(name="team-ex", labels=MappingProxyType({EXCLUDE_LABEL: "true"}))]
    sas = [ServiceAccountInfo(namespace=n, name=s, image_pull_secrets=("theirs",), resource_version="1")
           for n in [*names, "team-ex"] for s in ("default", "builder", "ci")]
    return ClusterView.build(namespaces=namespaces, service_accounts=sas)


def apply(p: Plan, view: ClusterView) -> ClusterView:
    """What the apply layer leaves behind after executing every action of `p`."""
    secrets = dict(view.secrets)
    sas = dict(view.service_accounts)
    for a in p.actions:
        if a.kind == "Secret" and a.action in ("create", "update"):
            assert a.secret is not None
            secrets[a.namespace] = SecretInfo(
                namespace=a.namespace, name=a.name, labels=MappingProxyType(dict(a.secret.labels)),
                annotations=MappingProxyType(dict(a.secret.annotations)), type=a.secret.type,
                data_digest=a.secret.digest, resource_version="2")
        elif a.kind == "Secret":
            secrets.pop(a.namespace, None)
        else:
            sa = sas[(a.namespace, a.name)]
            pulls = [p for p in sa.image_pull_secrets if p != a.pull_secret]
            if a.action == "add":
                pulls.append(a.pull_secret)
            sas[(a.namespace, a.name)] = replace(sa, image_pull_secrets=tuple(pulls), resource_version="2")
    return ClusterView.build(namespaces=tuple(view.namespaces.values()), service_accounts=tuple(sas.values()),
                             secrets=tuple(secrets.values()))


GOOD_CONFIG = parse_config(GOOD).config
assert GOOD_CONFIG is not None
CONVERGED = apply(plan(desired_state(base_view(), GOOD_CONFIG, tokens_for(GOOD_CONFIG), NOW), base_view()),
                  base_view())
# an owned Secret (and our entry) in `other`, out of the good config's scope: the good config
# already implies removing them; an invalid edit must not add anything to that
_STRAY = next(iter(CONVERGED.secrets.values()))
STALE = ClusterView.build(
    namespaces=tuple(CONVERGED.namespaces.values()),
    service_accounts=tuple(
        replace(s, image_pull_secrets=(*s.image_pull_secrets, SECRET_NAME)) if s.namespace == "other" else s
        for s in CONVERGED.service_accounts.values()),
    secrets=(*CONVERGED.secrets.values(), replace(_STRAY, namespace="other")),
)


def removals(p: Plan) -> set[tuple[str, str, str, str]]:
    return {(a.action, a.kind, a.namespace, a.name) for a in p.actions if a.action in ("delete", "remove")}


def only_in_registry_info(data: dict[str, str]) -> bool:
    """The secret sits where secrets belong (acr-registry-info). A secret pasted as the value of
    another key (say `service-account`) is echoed in that key's error like any other bad value."""
    return all(SECRET_VALUE not in v for k, v in data.items() if k != "acr-registry-info")


def config_in_force(good: AcrConfig, data: dict[str, str]) -> tuple[AcrConfig, bool, list[str]]:
    """The runtime's rule: the ConfigMap's config when it parses without errors, else the last good."""
    result = parse_config(data, secret_name=SECRET_NAME)
    if result.config is not None and not result.errors:
        return result.config, True, [str(m) for m in result.warnings]
    return good, False, [str(m) for m in result.errors]


def test_the_fixture_is_meaningful() -> None:
    assert GOOD_CONFIG is not None
    assert not plan(desired_state(CONVERGED, GOOD_CONFIG, tokens_for(GOOD_CONFIG), NOW), CONVERGED).actions
    assert {s for s in CONVERGED.secrets} == {"team-a", "team-b", "prod-x"}
    stale_removals = removals(plan(desired_state(STALE, GOOD_CONFIG, tokens_for(GOOD_CONFIG), NOW), STALE))
    assert ("delete", "Secret", "other", SECRET_NAME) in stale_removals
    assert ("remove", "ServiceAccount", "other", "default") in stale_removals


@FUZZ
@given(edited_configmaps())
def test_a_config_edit_never_crashes_never_deletes_and_always_says_why(data: dict[str, str]) -> None:
    assert GOOD_CONFIG is not None
    config, valid, messages = config_in_force(GOOD_CONFIG, data)
    assert isinstance(config, AcrConfig)
    for view in (CONVERGED, STALE):
        the_plan = plan(desired_state(view, config, tokens_for(config), NOW), view)  # never raises
        good_plan = plan(desired_state(view, GOOD_CONFIG, tokens_for(GOOD_CONFIG), NOW), view)
        if not valid:
            # nothing is removed that the last good config did not already remove
            assert removals(the_plan) <= removals(good_plan)
            if view is CONVERGED:
                assert not the_plan.actions
    if not valid:
        assert messages and all(m.strip() for m in messages), "an invalid config always says why"
    if only_in_registry_info(data):
        for m in messages:
            assert SECRET_VALUE not in m


# ----------------------------------------------------------------------------------------------
# the real Controller._config, with a stub cache and recorder


class _Cache:
    def __init__(self) -> None:
        self.cm: ConfigMapInfo | None = None

    def config_map(self) -> ConfigMapInfo | None:
        return self.cm


class _Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def event(self, **kw: Any) -> None:
        self.events.append(kw)


CONTROLLER = Controller(Settings(server=ServerSettings(metrics_bind_address="0")), environ={},
                        install_signal_handlers=False)


@FUZZ
@given(edited_configmaps())
def test_runtime_config_rule_keeps_the_last_good_config_and_warns(data: dict[str, str]) -> None:
    ctl, cache, recorder = CONTROLLER, _Cache(), _Recorder()
    ctl.cache, ctl.recorder = cache, recorder  # type: ignore[assignment]
    ctl._good = ctl._good_rv = ctl._warned_rv = None
    ctl._config_valid = True
    cache.cm = ConfigMapInfo(namespace="kube-system", name="acr-configuration", uid="u1",
                             resource_version="1", data=MappingProxyType(dict(GOOD)))
    assert ctl._config() == GOOD_CONFIG and ctl._config_valid
    cache.cm = replace(cache.cm, resource_version="2", data=MappingProxyType(dict(data)))
    in_force = ctl._config()
    expected, valid, _ = config_in_force(GOOD_CONFIG, data)
    assert in_force == expected
    assert ctl._config_valid is valid
    if not valid:
        assert len(recorder.events) == 1
        ev = recorder.events[0]
        assert ev["type"] == "Warning" and ev["reason"] == "ConfigInvalid" and ev["message"].strip()
        assert "keeping the last good configuration" in ev["message"]
        if only_in_registry_info(data):
            assert SECRET_VALUE not in ev["message"]
        assert ctl._config() == GOOD_CONFIG and len(recorder.events) == 1  # warned once per version
    else:
        assert not recorder.events
    # the ConfigMap deleted: the config in force stays, nothing falls back to the defaults
    cache.cm = None
    assert ctl._config() == in_force
