"""What the cluster must look like, given the view, the config and the tokens. Pure; `now` is passed in.

`desired_state` decides, for every namespace in scope, the one managed Secret it must hold, and
for every selected ServiceAccount there, that its imagePullSecrets must carry our entry. It
never decides deletions: `core.diff.plan` derives them from what is in scope.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType

from acr_helper.core.config import AcrConfig
from acr_helper.core.dockercfg import render, token_index
from acr_helper.core.model import (
    DIGEST_ANNOTATION,
    DOCKERCONFIGJSON_TYPE,
    EXPIRY_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    REGISTRIES_ANNOTATION,
    TOKENS_ANNOTATION,
    ClusterView,
    DesiredSecret,
    DesiredState,
    RegistryToken,
)
from acr_helper.core.policy import refresh_at

MANAGED_LABELS: Mapping[str, str] = MappingProxyType({MANAGED_BY_LABEL: MANAGED_BY_VALUE})
NO_USABLE_CREDENTIAL_MESSAGE = (
    "no valid registry token: no pull Secret is created or changed, existing ones are kept as they are"
)


def format_rfc3339(moment: datetime) -> str:
    """`2026-11-28T23:00:00Z` (UTC, whole seconds). A naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def namespaces_in_scope(view: ClusterView, config: AcrConfig) -> frozenset[str]:
    """Selected by `watch-namespace`, not labelled `acr-helper/exclude=true`, not terminating."""
    return frozenset(
        ns.name
        for ns in view.namespaces.values()
        if not ns.terminating and config.watch_namespaces.matches(ns.name, ns.labels)
    )


def _next_wakeup(tokens: list[RegistryToken], config: AcrConfig, now: datetime) -> datetime | None:
    """The earliest future moment at which a token becomes due for refresh or expires."""
    times: list[datetime] = []
    for token in tokens:
        due = refresh_at(token, config.expiring_threshold)
        if due > now:
            times.append(due)
        if token.expires_at > now:
            times.append(token.expires_at)
    return min(times) if times else None


def desired_state(
    view: ClusterView,
    config: AcrConfig,
    tokens: Mapping[str, RegistryToken],
    now: datetime,
    *,
    expected_registries: Collection[str] | None = None,
    also_refresh: Collection[str] | None = None,
) -> DesiredState:
    """The managed Secret for every namespace in scope and the ServiceAccounts that must use it.

    `tokens` is keyed by registry key and iterated in its own order (the runtime passes them in
    configuration order), which decides who wins when two registries claim the same domain.
    Only tokens valid at `now` are used. With no usable token at all there is no desired Secret
    anywhere (an existing Secret is never emptied) and a warning says so.

    `expected_registries` are the configured registry keys. When one of them has no valid token,
    an owned Secret that still holds an unexpired token for it is `held`: kept as it is rather
    than rewritten without that registry.

    `also_refresh` names namespaces outside the scope whose existing Secrets must still be kept
    fresh (the runtime passes the namespaces it already manages while only the add-on's defaults
    apply, because no ConfigMap exists: nothing is removed then, and nothing may silently expire).
    """
    warnings: list[str] = []
    valid: list[RegistryToken] = []
    for key, token in tokens.items():
        if token.registry != key:
            # the dict key is authoritative (it is what the config calls the registry)
            token = replace(token, registry=key)
        if token.valid_at(now):
            valid.append(token)
        elif token.password and token.username:
            warnings.append(f"token for {key} expired at {format_rfc3339(token.expires_at)}; left out")
        else:
            warnings.append(f"token for {key} is empty; left out")

    scope = namespaces_in_scope(view, config)
    kept = frozenset(
        ns for ns in (also_refresh or ())
        if ns in view.namespaces and not view.namespaces[ns].terminating and ns in view.secrets
        and view.secrets[ns].owned
    )
    secret_scope = scope | kept
    result = render(valid)
    warnings.extend(result.warnings)
    for registry, domains in result.contributions:
        if not domains:
            warnings.append(f"token for {registry} contributes no registry domain; left out")

    held = _held(view, secret_scope, config.secret_name, expected_registries, {t.registry for t in valid}, now)
    if held:
        warnings.append(
            f"{len(held)} pull Secret(s) kept as they are: registry "
            f"{', '.join(sorted(set(expected_registries or ()) - {t.registry for t in valid}))} has no valid "
            "token right now and those Secrets still hold an unexpired one"
        )
    secrets: dict[str, DesiredSecret] = {}
    refs: set[tuple[str, str]] = set()
    if result.empty:
        warnings.append(NO_USABLE_CREDENTIAL_MESSAGE)
    else:
        contributing = set(result.registries)
        used = [t for t in valid if t.registry in contributing]
        annotations = MappingProxyType(
            {
                DIGEST_ANNOTATION: result.digest,
                EXPIRY_ANNOTATION: format_rfc3339(min(t.expires_at for t in used)),
                REGISTRIES_ANNOTATION: ",".join(sorted(contributing)),
                TOKENS_ANNOTATION: token_index(used, result),
            }
        )
        for ns in sorted(secret_scope - held):
            secrets[ns] = DesiredSecret(
                namespace=ns,
                name=config.secret_name,
                dockerconfigjson=result.content,
                digest=result.digest,
                labels=MANAGED_LABELS,
                annotations=annotations,
                type=DOCKERCONFIGJSON_TYPE,
            )
    for ns_name, sa_name in view.service_accounts:
        if ns_name in scope and (ns_name in secrets or ns_name in held) and config.service_accounts.matches(sa_name):
            refs.add((ns_name, sa_name))

    return DesiredState(
        secret_name=config.secret_name,
        secrets=MappingProxyType(secrets),
        pull_secret_refs=frozenset(refs),
        namespaces_in_scope=scope,
        next_wakeup=_next_wakeup(valid, config, now),
        warnings=tuple(warnings),
        held=held,
    )


def _parse_rfc3339(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def _held(
    view: ClusterView,
    scope: frozenset[str],
    secret_name: str,
    expected: Collection[str] | None,
    have: set[str],
    now: datetime,
) -> frozenset[str]:
    """Namespaces whose owned Secret must not be rewritten while `expected - have` lack tokens."""
    missing = set(expected or ()) - have
    if not missing:
        return frozenset()
    out = set()
    for ns in scope:
        secret = view.secrets.get(ns)
        if secret is None or not secret.owned or secret.name != secret_name:
            continue
        listed = {r for r in secret.annotations.get(REGISTRIES_ANNOTATION, "").split(",") if r}
        expiry = _parse_rfc3339(secret.annotations.get(EXPIRY_ANNOTATION, ""))
        if listed & missing and expiry is not None and expiry > now:
            out.add(ns)
    return frozenset(out)
