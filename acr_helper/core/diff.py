"""From desired state and the cluster view to an ordered plan of actions, each with a reason. Pure.

Order: Secret creates/updates (by namespace), ServiceAccount `add`, ServiceAccount `remove`,
Secret deletes. Rules:

* Only Secrets with our name *and* our label (`app.kubernetes.io/managed-by=acr-helper`) are ever
  updated or deleted; a Secret with our name but without the label belongs to someone else and
  becomes a `Conflict` (and its namespace's ServiceAccounts are left alone).
* Deletes and `remove`s happen only for namespaces out of scope (or ServiceAccounts no longer
  selected), only when the view is synced, and never in a terminating namespace (the namespace
  deletion takes care of its contents).
* When no token is valid there is no desired Secret, and nothing in scope is modified.
* ServiceAccount edits only ever add or remove our own entry; `merge_pull_secrets` keeps every
  other entry, in order.
"""

from __future__ import annotations

from collections.abc import Sequence

from acr_helper.core.model import (
    DIGEST_ANNOTATION,
    EXCLUDE_LABEL,
    EXPIRY_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    REGISTRIES_ANNOTATION,
    Action,
    ClusterView,
    Conflict,
    DesiredSecret,
    DesiredState,
    NamespaceInfo,
    Plan,
    SecretInfo,
)


def merge_pull_secrets(existing: Sequence[str], add: str | None, remove: str | None) -> tuple[str, ...]:
    """The imagePullSecrets names after removing `remove` and appending `add` (if missing).

    Every other entry is kept, in order (duplicates of others' entries included: they are not ours).
    """
    out = [name for name in existing if remove is None or name != remove]
    if add is not None and add not in out:
        out.append(add)
    return tuple(out)


def _split(value: str) -> set[str]:
    return {part for part in value.split(",") if part}


def _plural(items: list[str], one: str, many: str) -> str:
    return f"{one if len(items) == 1 else many} {', '.join(items)}"


def _update_reasons(desired: DesiredSecret, existing: SecretInfo) -> list[str]:
    """Why an owned Secret must be rewritten; empty when it already matches."""
    reasons: list[str] = []
    if existing.type != desired.type:
        reasons.append(f"type is {existing.type or '(none)'}, expected {desired.type}")
    if existing.data_digest != desired.digest:
        want = _split(desired.annotations.get(REGISTRIES_ANNOTATION, ""))
        have = _split(existing.annotations.get(REGISTRIES_ANNOTATION, ""))
        recorded = existing.annotations.get(DIGEST_ANNOTATION, "")
        if not existing.data_digest:
            reasons.append("the Secret has no .dockerconfigjson data")
        elif recorded and recorded != existing.data_digest:
            reasons.append("the Secret's content was changed outside acr-helper")
        elif REGISTRIES_ANNOTATION not in existing.annotations:
            reasons.append(f"content differs and the Secret has no {REGISTRIES_ANNOTATION} annotation")
        elif want != have:
            parts = []
            if want - have:
                parts.append("added " + ", ".join(sorted(want - have)))
            if have - want:
                parts.append("removed " + ", ".join(sorted(have - want)))
            reasons.append("registries changed: " + "; ".join(parts))
        elif existing.annotations.get(EXPIRY_ANNOTATION) != desired.annotations.get(EXPIRY_ANNOTATION):
            reasons.append(_plural(sorted(want), "token for", "tokens for") + " rotated")
        else:
            reasons.append("pull Secret content changed (credentials or registry domains)")
    wrong_labels = sorted(k for k, v in desired.labels.items() if existing.labels.get(k) != v)
    if wrong_labels:
        reasons.append("labels out of date: " + ", ".join(wrong_labels))
    if existing.data_digest == desired.digest or not reasons:
        stale = sorted(k for k, v in desired.annotations.items() if existing.annotations.get(k) != v)
        if stale:
            reasons.append("annotations out of date: " + ", ".join(stale))
    return reasons


def _out_of_scope_reason(ns: NamespaceInfo) -> str:
    if ns.labels.get(EXCLUDE_LABEL, "").lower() == "true":
        return f"namespace {ns.name} is excluded by label {EXCLUDE_LABEL}=true"
    return f"namespace {ns.name} is not selected by watch-namespace"


def plan(desired: DesiredState, view: ClusterView, *, allow_removals: bool = True) -> Plan:
    """The ordered actions that take `view` to `desired`, and the conflicts found on the way.

    With `allow_removals=False` the plan only creates, updates and adds: nothing is deleted and no
    entry removed (the runtime uses it while the config in force is only the add-on's defaults
    because no ConfigMap exists, so a deleted ConfigMap never takes credentials away)."""
    name = desired.secret_name
    ours: dict[str, SecretInfo] = {}
    foreign: dict[str, SecretInfo] = {}
    for secret_ns, secret in view.secrets.items():
        if secret.name != name:
            continue
        (ours if secret.owned else foreign)[secret_ns] = secret

    writes: list[Action] = []
    conflicts: list[Conflict] = []
    for target in sorted(desired.secrets):
        want = desired.secrets[target]
        if target in foreign:
            conflicts.append(
                Conflict(
                    kind="Secret",
                    namespace=target,
                    name=name,
                    reason=(
                        f"Secret {target}/{name} exists without label {MANAGED_BY_LABEL}={MANAGED_BY_VALUE}: "
                        "it belongs to someone else and is left alone (its ServiceAccounts too)"
                    ),
                )
            )
            continue
        have = ours.get(target)
        if have is None:
            writes.append(
                Action(
                    action="create",
                    kind="Secret",
                    namespace=target,
                    name=name,
                    reason=f"namespace {target} is watched and has no pull Secret",
                    secret=want,
                )
            )
            continue
        reasons = _update_reasons(want, have)
        if reasons:
            writes.append(
                Action(
                    action="update",
                    kind="Secret",
                    namespace=target,
                    name=name,
                    reason="; ".join(reasons),
                    secret=want,
                    resource_version=have.resource_version,
                )
            )

    adds: list[Action] = []
    removes: list[Action] = []
    for key in sorted(view.service_accounts):
        sa = view.service_accounts[key]
        ns_name, sa_name = key
        ns = view.namespaces.get(ns_name)
        if ns is None:
            continue  # the namespace is gone; so is the ServiceAccount, soon
        has_entry = name in sa.image_pull_secrets
        if key in desired.pull_secret_refs:
            if not has_entry and (ns_name in desired.secrets or ns_name in desired.held) and ns_name not in foreign:
                adds.append(
                    Action(
                        action="add",
                        kind="ServiceAccount",
                        namespace=ns_name,
                        name=sa_name,
                        reason=f"ServiceAccount {sa_name} is selected and lacks {name} in imagePullSecrets",
                        resource_version=sa.resource_version,
                        pull_secret=name,
                    )
                )
            continue
        if not allow_removals or not has_entry or not view.synced or ns.terminating or ns_name in foreign:
            continue
        if ns_name in desired.namespaces_in_scope:
            if ns_name not in desired.secrets and ns_name not in desired.held:
                continue  # no valid token: leave everything in scope as it is
            reason = f"ServiceAccount {sa_name} is no longer selected by service-account"
        else:
            reason = _out_of_scope_reason(ns)
        removes.append(
            Action(
                action="remove",
                kind="ServiceAccount",
                namespace=ns_name,
                name=sa_name,
                reason=reason,
                resource_version=sa.resource_version,
                pull_secret=name,
            )
        )

    deletes: list[Action] = []
    if view.synced and allow_removals:
        for ns_name in sorted(ours):
            ns = view.namespaces.get(ns_name)
            if ns_name in desired.namespaces_in_scope or ns is None or ns.terminating:
                continue
            deletes.append(
                Action(
                    action="delete",
                    kind="Secret",
                    namespace=ns_name,
                    name=name,
                    reason=_out_of_scope_reason(ns),
                    resource_version=ours[ns_name].resource_version,
                )
            )

    return Plan(actions=(*writes, *adds, *removes, *deletes), conflicts=tuple(conflicts))
