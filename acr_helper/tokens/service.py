"""`TokenService`: one token attempt for one registry entry (credentials, token call, domains)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from acr_helper.core.config import RegistryConfig
from acr_helper.core.model import RegistryToken
from acr_helper.settings import TokenSettings
from acr_helper.tokens.acr import AcrClient, RawToken, pe_default_domains
from acr_helper.tokens.credentials import CredentialResolver, SecretReader, _read_text_file
from acr_helper.tokens.errors import TokenError
from acr_helper.tokens.imds import ImdsClient, ImdsError
from acr_helper.tokens.sdk import Endpoint, parse_endpoint
from acr_helper.tokens.sdk_logging import quiet_sdk_loggers

ENV_REGION = "ALIBABA_CLOUD_REGION_ID"


@dataclass(frozen=True)
class _DomainCacheEntry:
    domains: tuple[str, ...]
    fetched_at: datetime


def _no_secret(name: str) -> Mapping[str, str] | None:
    return None


class TokenService:
    """Fetches tokens. Thread-compatible (one caller at a time); no threads, no sleeping."""

    def __init__(
        self,
        settings: TokenSettings,
        *,
        secret_reader: SecretReader = _no_secret,
        environ: Mapping[str, str] | None = None,
        read_file: Callable[[str], str] = _read_text_file,
    ) -> None:
        quiet_sdk_loggers()
        self.settings = settings
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self.imds = ImdsClient(
            settings.ecs_metadata_endpoint,
            v1_fallback=settings.imds_v1_fallback,
            timeout=(min(settings.connect_timeout, 2.0), min(settings.read_timeout, 5.0)),
        )
        self.credentials = CredentialResolver(
            settings, secret_reader=secret_reader, environ=self.environ, imds=self.imds, read_file=read_file
        )
        self.cr_endpoint: Endpoint | None = parse_endpoint(settings.cr_endpoint)
        self._region: str | None = None
        self._domains: dict[tuple[str, str], _DomainCacheEntry] = {}
        #: CR calls made, by action (for tests and diagnostics)
        self.cr_calls: dict[str, int] = {
            "GetAuthorizationToken": 0,
            "ListInstanceEndpoint": 0,
            "PersonalTokens": 0,
        }

    # ------------------------------------------------------------------------------------------

    def default_region(self) -> str:
        """--region, then ALIBABA_CLOUD_REGION_ID, then the metadata service's region-id (cached)."""
        if self.settings.region:
            return self.settings.region
        env = (self.environ.get(ENV_REGION) or "").strip()
        if env:
            return env
        if self._region is None:
            try:
                self._region = self.imds.region_id()
            except ImdsError as exc:
                raise TokenError(
                    "*",
                    f"cannot determine the cluster's region: {exc}",
                    code="RegionUnknown",
                    retryable=exc.retryable,
                    action="ECS metadata",
                    advice=(
                        f"pass --region (or set {ENV_REGION}) or set regionId on each acr-registry-info entry"
                    ),
                ) from None
        return self._region

    def region_for(self, registry: RegistryConfig) -> str:
        return registry.region_id or self.default_region()

    def credential_source(self, registry: RegistryConfig, *, rrsa_enabled: bool) -> str:
        """`access-key`|`secret-ref`|`rrsa`|`addon-secret`|`worker-role`, plus ` + assume-role(<arn>)`.

        Raises TokenError when the entry's credential configuration is unusable (e.g. a missing Secret).
        """
        key = registry.instance_id or "personal"
        return self.credentials.source_label(key, registry, rrsa_enabled=rrsa_enabled)

    def credential_fingerprint(self, key: str, registry: RegistryConfig, *, rrsa_enabled: bool) -> str:
        """A secret-free digest that changes when the entry or its credential identity changes."""
        return self.credentials.fingerprint(key, registry, rrsa_enabled=rrsa_enabled)

    # ------------------------------------------------------------------------------------------

    def fetch(
        self, key: str, registry: RegistryConfig, *, rrsa_enabled: bool, now: datetime
    ) -> RegistryToken:
        """One attempt: credentials, the token call and (EE without `domains`) the domain list."""
        try:
            region = self.region_for(registry)
        except TokenError as exc:
            raise exc.with_registry(key) from None
        source = self.credentials.source_label(key, registry, rrsa_enabled=rrsa_enabled)
        try:
            cred = self.credentials.resolve(key, registry, rrsa_enabled=rrsa_enabled, region=region, now=now)
            client = AcrClient(
                key=key,
                region=region,
                credential=cred,
                endpoint=self.cr_endpoint,
                use_vpc=self.settings.use_vpc_endpoints,
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
            )
            raw: RawToken
            if registry.edition == "enterprise":
                self.cr_calls["GetAuthorizationToken"] += 1
                raw = client.ee_token(registry.instance_id)
                domains = self._ee_domains(client, registry, region, now)
            else:
                self.cr_calls["PersonalTokens"] += 1
                raw = client.pe_token()
                domains = tuple(registry.domains) if registry.domains else pe_default_domains(region)
        except TokenError as exc:
            if exc.invalidates_credentials:
                self.credentials.invalidate()
            raise
        if raw.expires_at <= now:
            raise TokenError(
                key,
                f"the API returned a token that already expired at {raw.expires_at.isoformat()}",
                code="TokenExpired",
                retryable=True,
                request_id=raw.request_id,
                advice="check the clocks of this host and of the endpoint (NTP)",
            )
        norm = tuple(sorted({d.strip().lower() for d in domains if d and d.strip()}))
        return RegistryToken(
            registry=key,
            username=raw.username,
            password=raw.password,
            expires_at=raw.expires_at,
            obtained_at=now,
            domains=norm,
            source=source,
        )

    def _ee_domains(
        self, client: AcrClient, registry: RegistryConfig, region: str, now: datetime
    ) -> tuple[str, ...]:
        if registry.domains:
            return tuple(registry.domains)
        cache_key = (registry.instance_id, region)
        cached = self._domains.get(cache_key)
        ttl = timedelta(seconds=self.settings.endpoint_cache_seconds)
        if cached is not None and now - cached.fetched_at < ttl and now >= cached.fetched_at:
            return cached.domains
        self.cr_calls["ListInstanceEndpoint"] += 1
        try:
            domains = client.ee_domains(registry.instance_id)
        except TokenError as exc:
            if cached is not None and exc.retryable:
                return cached.domains  # a stale list beats no token
            raise
        if not domains:
            raise TokenError(
                client.key,
                f"instance {registry.instance_id} has no enabled registry endpoint",
                code="NoEnabledDomain",
                action="ListInstanceEndpoint",
                advice="enable the instance's internet or VPC endpoint, or list the domains in `domains`",
            )
        self._domains[cache_key] = _DomainCacheEntry(domains, now)
        return domains

    def close(self) -> None:
        self.imds.close()
