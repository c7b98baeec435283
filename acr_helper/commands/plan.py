"""`acr-helper plan`: print what the controller would do, with placeholder tokens.

Offline: `-f CONFIGMAP.yaml [--state OBJECTS.yaml]`. Live and read-only: `--kubeconfig PATH`
lists the ConfigMap (unless `-f` is given), Namespaces, ServiceAccounts and the Secrets with the
managed name through the same list/watch cache the controller uses, then stops; it writes nothing.
Everything after "load the config data and the view" is `plan_output`, which both forms share.
Exit codes: 0 config valid, 1 config has errors (a manifest that is not valid YAML or holds no
ConfigMap included), 2 usage error (missing arguments, a file that cannot be read, a bad state
file or kubeconfig).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from acr_helper.core.config import (
    AcrConfig,
    ConfigMessage,
    ConfigResult,
    RegistryConfig,
    load_configmap_manifest,
    parse_config,
    personal_default_domains,
)
from acr_helper.core.desired import desired_state
from acr_helper.core.diff import plan
from acr_helper.core.model import (
    DIGEST_ANNOTATION,
    EXPIRY_ANNOTATION,
    REGISTRIES_ANNOTATION,
    Action,
    ClusterView,
    Conflict,
    DesiredSecret,
    DesiredState,
    NamespaceInfo,
    Plan,
    RegistryToken,
    SecretInfo,
    Sensitive,
    ServiceAccountInfo,
)
from acr_helper.state import StateError, parse_state_documents

PLACEHOLDER = "placeholder"
PLACEHOLDER_REGION = "cluster-region"
PLACEHOLDER_LIFETIME = timedelta(hours=1)
NO_STATE_WARNING = (
    "no --state given: assuming a cluster with just namespace default and its ServiceAccount default"
)
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad file path, unreadable manifest, missing arguments: exit code 2."""


# ----------------------------------------------------------------------------------------------
# Inputs


def load_config(text: str, secret_name: str) -> ConfigResult:
    """Parse a ConfigMap manifest; the manifest's own messages come first.

    A manifest from which no ConfigMap data can be read (not valid YAML, no ConfigMap in it) is a
    configuration error like any other: the result has no config and the manifest's line-precise
    errors. (A file that cannot be read at all is the caller's `UsageError`.)
    """
    data, messages = load_configmap_manifest(text)
    errors = tuple(m for m in messages if m.severity == "error")
    warnings = tuple(m for m in messages if m.severity == "warning")
    if data is None:
        if not errors:  # defensive: load_configmap_manifest always says why
            errors = (ConfigMessage(severity="error", key="manifest", message="no ConfigMap data found"),)
        return ConfigResult(config=None, errors=errors, warnings=warnings)
    result = parse_config(data, secret_name=secret_name)
    if not errors and not warnings:
        return result
    return ConfigResult(
        config=result.config,
        errors=errors + result.errors,
        warnings=warnings + result.warnings,
    )


def default_view() -> ClusterView:
    return ClusterView.build(
        namespaces=[NamespaceInfo(name="default")],
        service_accounts=[ServiceAccountInfo(namespace="default", name="default")],
    )


def _read(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {what} {path}: {reason}") from None


# ----------------------------------------------------------------------------------------------
# Placeholder tokens


def placeholder_domains(registry: RegistryConfig, region: str) -> tuple[str, ...]:
    if registry.domains:
        return tuple(sorted(set(registry.domains)))
    if registry.instance_id:
        return (f"{registry.instance_id}.instance-domains.invalid",)
    return tuple(sorted(personal_default_domains(region)))


def placeholder_tokens(config: AcrConfig, now: datetime, default_region: str) -> dict[str, RegistryToken]:
    """One placeholder token per configured registry, in configuration order."""
    out: dict[str, RegistryToken] = {}
    for key, reg in config.registry_keys(default_region).items():
        out[key] = RegistryToken(
            registry=key,
            username=PLACEHOLDER,
            password=Sensitive(PLACEHOLDER),
            expires_at=now + PLACEHOLDER_LIFETIME,
            obtained_at=now,
            domains=placeholder_domains(reg, reg.region(default_region)),
            source="placeholder",
        )
    return out


# ----------------------------------------------------------------------------------------------
# Secrets that hold live tokens


def live_tokens_note(count: int) -> str:
    secrets = "1 Secret holds" if count == 1 else f"{count} Secrets hold"
    return (
        f"{secrets} live tokens that plan cannot compare; shown as current while their registries "
        "match and they are not due"
    )


def _parse_expiry(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def holds_live_tokens(existing: SecretInfo, want: DesiredSecret, due: datetime) -> bool:
    """True when `existing` differs from `want` only because plan renders placeholder tokens.

    That is: the Secret is ours and of the right type, with our labels; its content is what
    acr-helper last wrote (recorded digest = actual digest); it holds the registries `want` would
    hold; and its earliest token expiry is later than `due` (now + expiring-threshold), so the
    controller would not rewrite it either.
    """
    if not existing.owned or existing.type != want.type or not existing.data_digest:
        return False
    if any(existing.labels.get(k) != v for k, v in want.labels.items()):
        return False
    if existing.annotations.get(DIGEST_ANNOTATION) != existing.data_digest:
        return False

    def registries(annotations: Mapping[str, str]) -> set[str]:
        return {r for r in annotations.get(REGISTRIES_ANNOTATION, "").split(",") if r}

    have = registries(existing.annotations)
    if not have or have != registries(want.annotations):
        return False
    expiry = _parse_expiry(existing.annotations.get(EXPIRY_ANNOTATION, ""))
    return expiry is not None and expiry > due


def without_live_token_updates(
    the_plan: Plan, desired: DesiredState, view: ClusterView, now: datetime, threshold: timedelta
) -> tuple[Plan, int]:
    """The plan without the Secret updates that only placeholder tokens cause, and their count.

    Placeholder content never equals a real token's, so against real state every owned Secret
    would otherwise be planned as `update` ("tokens rotated") and a converged cluster would never
    plan nothing. An owned Secret whose registries match and which is not due is reported current.
    """
    kept: list[Action] = []
    live = 0
    for action in the_plan.actions:
        if action.kind == "Secret" and action.action == "update":
            existing = view.secrets.get(action.namespace)
            want = desired.secrets.get(action.namespace)
            if (
                existing is not None
                and want is not None
                and existing.name == action.name
                and holds_live_tokens(existing, want, now + threshold)
            ):
                live += 1
                continue
        kept.append(action)
    if not live:
        return the_plan, 0
    return dataclasses.replace(the_plan, actions=tuple(kept)), live


# ----------------------------------------------------------------------------------------------
# Output


def _conflict_text(c: Conflict) -> str:
    return f"conflict: {c.reason}"


def _report(result: ConfigResult, the_plan: Plan | None, warnings: Sequence[str]) -> dict[str, Any]:
    return {
        "actions": [a.describe() for a in the_plan.actions] if the_plan else [],
        "errors": [str(e) for e in result.errors],
        "warnings": list(warnings),
    }


def _table(rows: list[dict[str, str]]) -> list[str]:
    cols = ("action", "kind", "namespace", "name", "reason")
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in cols).rstrip()]
    for r in rows:
        lines.append("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip())
    return lines


def _summary(actions: list[dict[str, str]]) -> str:
    if not actions:
        return "No changes: the cluster already matches the configuration."
    counts: dict[str, int] = {}
    for a in actions:
        label = f"{a['action']} {a['kind']}"
        counts[label] = counts.get(label, 0) + 1
    order = ["create Secret", "update Secret", "add ServiceAccount", "remove ServiceAccount", "delete Secret"]
    parts = [f"{counts[k]} {k}" for k in order if k in counts]
    return f"Plan: {len(actions)} action(s): " + ", ".join(parts) + "."


def render_text(report: Mapping[str, Any]) -> str:
    lines: list[str] = []
    errors: list[str] = report["errors"]
    actions: list[dict[str, str]] = report["actions"]
    if errors:
        lines.append(f"The configuration has {len(errors)} error(s); nothing would be done:")
        lines.extend(f"  error: {e}" for e in errors)
    else:
        if actions:
            lines.extend(_table(actions))
            lines.append("")
        lines.append(_summary(actions))
    warnings: list[str] = report["warnings"]
    if warnings:
        lines.append("")
        lines.extend(f"warning: {w}" for w in warnings)
    return "\n".join(lines) + "\n"


def plan_output(
    config_result: ConfigResult,
    view: ClusterView,
    now: datetime,
    fmt: str,
    *,
    default_region: str | None = None,
    notes: Sequence[str] = (),
) -> tuple[str, int]:
    """The plan for `view` under the parsed config, with placeholder tokens, rendered as `fmt`.

    `notes` are extra warnings from loading the inputs (e.g. the state file). Returns the text to
    print and the exit code (0 valid config, 1 config errors).
    """
    warnings = [str(w) for w in config_result.warnings]
    the_plan: Plan | None = None
    config = config_result.config
    if config_result.ok and config is not None:
        region = default_region or PLACEHOLDER_REGION
        if default_region is None and any(r.region_id is None for r in config.effective_registries()):
            warnings.append(
                f"no --region: registries without regionId use the placeholder region {PLACEHOLDER_REGION}"
            )
        tokens = placeholder_tokens(config, now, region)
        desired = desired_state(view, config, tokens, now)
        the_plan = plan(desired, view)
        the_plan, live = without_live_token_updates(the_plan, desired, view, now, config.expiring_threshold)
        if live:
            warnings.append(live_tokens_note(live))
        warnings.extend(desired.warnings)
        warnings.extend(_conflict_text(c) for c in the_plan.conflicts)
    warnings.extend(notes)
    report = _report(config_result, the_plan, warnings)
    code = EXIT_OK if config_result.ok else EXIT_INVALID
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n", code
    return render_text(report), code


# ----------------------------------------------------------------------------------------------
# Entry point


def _offline_inputs(args: argparse.Namespace) -> tuple[ConfigResult, ClusterView, list[str]]:
    secret_name: str = args.secret_name
    result = load_config(_read(args.filename, "the ConfigMap manifest"), secret_name)
    notes: list[str] = []
    if args.state:
        try:
            view, notes = parse_state_documents(_read(args.state, "the state file"), secret_name)
        except StateError as exc:
            raise UsageError(f"cannot read the state file {args.state}: {exc}") from None
    else:
        view = default_view()
        notes = [NO_STATE_WARNING]
    return result, view, notes


LIVE_SYNC_TIMEOUT = 60.0


def _live_inputs(args: argparse.Namespace) -> tuple[ConfigResult, ClusterView, list[str]]:
    """Read the cluster once, read-only, through the controller's own cache."""
    from acr_helper.kube.cache import ClusterCache
    from acr_helper.kube.client import KubeClients, KubeConfigError
    from acr_helper.settings import KubeSettings

    settings = KubeSettings(
        kubeconfig=args.kubeconfig,
        context=getattr(args, "context", None),
        config_namespace=args.config_namespace,
        config_name=args.config_name,
        secret_name=args.secret_name,
        extra_secret_names=(),
    )
    try:
        clients = KubeClients(settings)
    except KubeConfigError as exc:
        raise UsageError(f"cannot load kubeconfig {args.kubeconfig}: {exc}") from None
    cache = ClusterCache(clients, settings, on_change=lambda: None)
    try:
        cache.start()
        if not cache.wait_synced(LIVE_SYNC_TIMEOUT):
            raise UsageError(
                f"could not list the cluster within {LIVE_SYNC_TIMEOUT:.0f}s (check the kubeconfig, "
                "network and RBAC: namespaces, serviceaccounts, configmaps and the managed Secrets)"
            )
        view = cache.snapshot()
        cm = cache.config_map()
    finally:
        cache.stop()
        clients.close()
    notes: list[str] = []
    if getattr(args, "filename", None):
        result = load_config(_read(args.filename, "the ConfigMap manifest"), args.secret_name)
    elif cm is None:
        result = parse_config(None, secret_name=args.secret_name)
        notes.append(
            f"no ConfigMap {args.config_namespace}/{args.config_name} in the cluster: the add-on's defaults apply"
        )
    else:
        result = parse_config(cm.data, secret_name=args.secret_name)
    return result, view, notes


def main(args: argparse.Namespace) -> int:
    fmt: str = getattr(args, "output", "text") or "text"
    try:
        if getattr(args, "kubeconfig", None):
            result, view, notes = _live_inputs(args)
        elif not getattr(args, "filename", None):
            raise UsageError("plan needs -f CONFIGMAP.yaml (or --kubeconfig for the live form)")
        else:
            result, view, notes = _offline_inputs(args)
    except UsageError as exc:
        sys.stderr.write(f"acr-helper plan: {exc}\n")
        return EXIT_USAGE
    now = datetime.now(UTC)
    text, code = plan_output(
        result, view, now, fmt, default_region=getattr(args, "region", None), notes=notes
    )
    sys.stdout.write(text)
    return code
