"""`acr-helper check -f CONFIGMAP.yaml`: validate, resolve credentials, fetch a token per registry.

`--offline` validates and lists the resolved registries without calling anything. The token
itself is never printed. Exit codes: 0 every registry ok, 1 invalid config or a registry
failed, 2 usage error (unreadable file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from acr_helper.core.config import (
    AcrConfig,
    ConfigMessage,
    RegistryConfig,
    load_configmap_manifest,
    parse_config,
)
from acr_helper.settings import TokenSettings
from acr_helper.tokens import TokenError, TokenService
from acr_helper.tokens.acr import pe_default_domains
from acr_helper.tokens.credentials import ADDON_SECRET

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ENV_REGION = "ALIBABA_CLOUD_REGION_ID"
UNKNOWN_REGION = "cluster-region"
ALL_INSTANCE_DOMAINS = "all instance domains"

SecretReader = Callable[[str], Mapping[str, str] | None]


@dataclass
class RegistryReport:
    key: str
    edition: str
    instance_id: str
    region: str
    credential_source: str
    domains: list[str]
    status: str = "unchecked"  # "ok" | "error" | "unchecked" (offline)
    expires_at: str | None = None
    username: str | None = None
    error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "registry": self.key,
            "edition": self.edition,
            "instanceId": self.instance_id,
            "region": self.region,
            "credentialSource": self.credential_source,
            "domains": self.domains,
            "status": self.status,
        }
        if self.expires_at is not None:
            out["expiresAt"] = self.expires_at
        if self.username is not None:
            out["username"] = self.username
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class CheckReport:
    valid: bool
    offline: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    registries: list[RegistryReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.valid and all(r.status != "error" for r in self.registries)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "valid": self.valid,
            "offline": self.offline,
            "errors": self.errors,
            "warnings": self.warnings,
            "registries": [r.to_json() for r in self.registries],
        }


def _error_json(err: TokenError) -> dict[str, Any]:
    return {
        "code": err.code,
        "message": err.summary(),
        "advice": err.advice,
        "retryable": err.retryable,
        "requestId": err.request_id,
        "httpStatus": err.http_status,
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def token_settings(args: argparse.Namespace) -> TokenSettings:
    return TokenSettings(
        region=getattr(args, "region", None) or None,
        use_vpc_endpoints=bool(getattr(args, "use_vpc_endpoints", False)),
        cr_endpoint=getattr(args, "cr_endpoint", None) or None,
        sts_endpoint=getattr(args, "sts_endpoint", None) or None,
        ecs_metadata_endpoint=getattr(args, "ecs_metadata_endpoint", None) or "http://100.100.100.200",
        imds_v1_fallback=bool(getattr(args, "imds_v1_fallback", True)),
    )


def kube_secret_reader(kubeconfig: str, context: str | None, namespace: str) -> SecretReader:
    """Reads Secrets from a cluster through acr_helper.kube (the only package importing kubernetes)."""
    from acr_helper.kube.secrets import read_secret_data

    cache: dict[str, Mapping[str, str] | None] = {}

    def read(name: str) -> Mapping[str, str] | None:
        if name not in cache:
            try:
                cache[name] = read_secret_data(kubeconfig, context, namespace, name)
            except Exception as exc:  # a forbidden/unreachable read is reported, not fatal
                status = getattr(exc, "status", None)
                why = f"HTTP {status}" if status else type(exc).__name__
                raise TokenError(
                    "*",
                    f"cannot read the Secret {namespace}/{name} ({why})",
                    code="SecretUnreadable",
                    retryable=True,
                    advice=f"check --kubeconfig/--context and that you may get Secrets in {namespace}",
                ) from None
        return cache[name]

    return read


def _no_secrets(name: str) -> Mapping[str, str] | None:
    """Without --kubeconfig: no alibaba-addon-secret; a referenced Secret cannot be read."""
    if name == ADDON_SECRET:
        return None
    raise TokenError(
        "*",
        f"the Secret {name} named by accessKeySecretRef cannot be read without --kubeconfig",
        code="SecretUnreadable",
        advice="pass --kubeconfig (and --context) so check can read the Secret from the cluster",
    )


def _offline_source(service: TokenService, registry: RegistryConfig, rrsa_enabled: bool) -> str:
    try:
        return service.credential_source(registry, rrsa_enabled=rrsa_enabled)
    except TokenError:
        hint = registry.credential_hint(rrsa_enabled=rrsa_enabled)
        return hint.replace("secret-ref(", "secret-ref(Secret ") if hint.startswith("secret-ref(") else hint


def run_check(
    config: AcrConfig,
    settings: TokenSettings,
    *,
    offline: bool,
    secret_reader: SecretReader = _no_secrets,
    environ: Mapping[str, str] | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[RegistryReport]:
    environ = dict(os.environ if environ is None else environ)
    service = TokenService(settings, secret_reader=secret_reader, environ=environ)
    try:
        rrsa = config.rrsa.enable
        default_region: str | None = settings.region or (environ.get(ENV_REGION) or "").strip() or None
        region_error: TokenError | None = None
        if default_region is None and not offline:
            try:
                default_region = service.default_region()
            except TokenError as exc:
                region_error = exc
        fallback = default_region or UNKNOWN_REGION
        reports: list[RegistryReport] = []
        for key, registry in config.registry_keys(fallback).items():
            region = registry.region_id or fallback
            if registry.domains:
                domains = list(registry.domains)
            elif registry.edition == "personal":
                domains = list(pe_default_domains(region))
            else:
                domains = [ALL_INSTANCE_DOMAINS]
            source = _offline_source(service, registry, rrsa)
            rep = RegistryReport(key, registry.edition, registry.instance_id, region, source, domains)
            reports.append(rep)
            if offline:
                continue
            if region_error is not None and not registry.region_id:
                rep.status = "error"
                rep.error = _error_json(region_error.with_registry(key))
                continue
            try:
                token = service.fetch(key, registry, rrsa_enabled=rrsa, now=now())
            except TokenError as exc:
                rep.status = "error"
                rep.error = _error_json(exc.with_registry(key))
                continue
            rep.status = "ok"
            rep.credential_source = token.source or source
            rep.domains = list(token.domains)
            rep.expires_at = _iso(token.expires_at)
            rep.username = token.username
        return reports
    finally:
        service.close()


# ----------------------------------------------------------------------------------------------
# Output


def render_text(report: CheckReport, out: TextIO) -> None:
    if report.valid:
        n = len(report.registries)
        out.write(f"configuration: valid ({n} registr{'y' if n == 1 else 'ies'})\n")
    else:
        out.write("configuration: INVALID\n")
    for msg in report.errors:
        out.write(f"  error: {msg}\n")
    for msg in report.warnings:
        out.write(f"  warning: {msg}\n")
    for r in report.registries:
        out.write("\n")
        out.write(f"registry {r.key}\n")
        out.write(f"  edition:     {r.edition}\n")
        if r.instance_id:
            out.write(f"  instance:    {r.instance_id}\n")
        out.write(f"  region:      {r.region}\n")
        out.write(f"  credentials: {r.credential_source}\n")
        out.write(f"  domains:     {', '.join(r.domains) if r.domains else '(none)'}\n")
        if r.status == "ok":
            out.write(f"  token:       ok (user {r.username}, expires {r.expires_at})\n")
        elif r.status == "error" and r.error is not None:
            out.write(f"  token:       FAILED: {r.error['message']}\n")
            if r.error.get("advice"):
                out.write(f"  advice:      {r.error['advice']}\n")
        else:
            out.write("  token:       not checked (--offline)\n")
    if report.registries and not report.offline:
        failed = sum(1 for r in report.registries if r.status == "error")
        out.write("\n")
        out.write(
            f"{len(report.registries) - failed} ok, {failed} failed\n" if failed else "all registries ok\n"
        )


def _messages(msgs: list[ConfigMessage] | tuple[ConfigMessage, ...], severity: str) -> list[str]:
    return [str(m) for m in msgs if m.severity == severity]


def main(args: argparse.Namespace) -> int:
    out: TextIO = sys.stdout
    path = args.filename
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
    except OSError as exc:
        print(f"acr-helper check: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE

    data, load_msgs = load_configmap_manifest(text)
    report = CheckReport(valid=False, offline=bool(args.offline))
    report.errors += _messages(load_msgs, "error")
    report.warnings += _messages(load_msgs, "warning")
    config: AcrConfig | None = None
    if data is not None and not report.errors:
        result = parse_config(data)
        report.errors += [str(m) for m in result.errors]
        report.warnings += [str(m) for m in result.warnings]
        if result.ok:
            config = result.config
    report.valid = config is not None and not report.errors

    if config is not None and report.valid:
        reader: SecretReader = _no_secrets
        if args.kubeconfig:
            try:
                reader = kube_secret_reader(args.kubeconfig, args.context, args.config_namespace)
            except ImportError:
                report.errors.append(
                    "--kubeconfig is not supported by this build (acr_helper.kube.secrets missing)"
                )
                report.valid = False
        if report.valid:
            report.registries = run_check(
                config, token_settings(args), offline=bool(args.offline), secret_reader=reader
            )

    if args.output == "json":
        json.dump(report.to_json(), out, indent=2)
        out.write("\n")
    else:
        render_text(report, out)
    return EXIT_OK if report.ok else EXIT_FAILED
