"""The credential chain for one `acr-registry-info` entry, with STS credentials reused until stale.

Base credential, the first that applies:
  1. `customAccessKey` + `customAccessKeySecret`, or `accessKeySecretRef` (Secret keys
     `access-key-id` / `access-key-secret`, read through `secret_reader` at every resolution);
  2. RRSA when `rrsa.enable` is true (entry ARNs, else the pod identity webhook's environment);
  3. the Secret `alibaba-addon-secret`, when it exists;
  4. the node's worker RAM role from ECS instance metadata.
Then STS AssumeRole on top when `assumeRoleARN` is set. Every value is passed to the SDK
explicitly; the environment is read only through the `environ` mapping we were given.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from acr_helper.core.config import RegistryConfig
from acr_helper.core.model import Sensitive
from acr_helper.settings import TokenSettings
from acr_helper.tokens.errors import TokenError, classify
from acr_helper.tokens.imds import ImdsClient, ImdsError, parse_expiration
from acr_helper.tokens.sdk import Credential, Endpoint, make_config, parse_endpoint, runtime_options
from acr_helper.tokens.sdk_logging import quiet_sdk_loggers

# names of things, not secrets:
ADDON_SECRET = "alibaba-addon-secret"  # noqa: S105
AK_ID_KEY = "access-key-id"
AK_SECRET_KEY = "access-key-secret"  # noqa: S105
DEFAULT_OIDC_TOKEN_FILE = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens/token"  # noqa: S105 - a path

ENV_ROLE_ARN = "ALIBABA_CLOUD_ROLE_ARN"
ENV_OIDC_PROVIDER_ARN = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"
ENV_OIDC_TOKEN_FILE = "ALIBABA_CLOUD_OIDC_TOKEN_FILE"  # noqa: S105 - an environment variable name
ENV_STS_ENDPOINT = "ALIBABA_CLOUD_STS_ENDPOINT"

SourceKind = Literal["access-key", "secret-ref", "rrsa", "addon-secret", "worker-role"]

SecretReader = Callable[[str], Mapping[str, str] | None]
FileReader = Callable[[str], str]

_SESSION_CHARS = re.compile(r"[^A-Za-z0-9.@_-]+")


def session_name(label: str) -> str:
    """A valid RoleSessionName (2-64 chars of `[A-Za-z0-9.@_-]`) that says who we are."""
    name = _SESSION_CHARS.sub("-", f"acr-helper-{label}").strip("-")
    return (name[:64] or "acr-helper").ljust(2, "-")


def _read_text_file(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


@dataclass(frozen=True)
class BaseSource:
    """Which base credential an entry uses (resolved without any network call)."""

    kind: SourceKind
    #: identity, secret-free (e.g. "AccessKey FAKE-AK-ID (customAccessKey)")
    identity: str
    access_key_id: str = ""
    access_key_secret: Sensitive = field(default_factory=lambda: Sensitive(""))
    role_arn: str = ""
    oidc_provider_arn: str = ""
    oidc_token_file: str = ""

    def fingerprint_parts(self) -> tuple[str, ...]:
        secret_digest = hashlib.sha256(self.access_key_secret.reveal().encode()).hexdigest()
        return (
            self.kind,
            self.access_key_id,
            secret_digest,
            self.role_arn,
            self.oidc_provider_arn,
            self.oidc_token_file,
        )


class CredentialResolver:
    """Resolves credentials per registry entry; caches STS/metadata credentials until stale."""

    def __init__(
        self,
        settings: TokenSettings,
        *,
        secret_reader: SecretReader,
        environ: Mapping[str, str],
        imds: ImdsClient,
        read_file: FileReader = _read_text_file,
    ) -> None:
        self.settings = settings
        self.secret_reader = secret_reader
        self.environ = environ
        self.imds = imds
        self.read_file = read_file
        self._cache: dict[tuple[str, ...], Credential] = {}
        sts = settings.sts_endpoint or environ.get(ENV_STS_ENDPOINT) or None
        self.sts_endpoint: Endpoint | None = parse_endpoint(sts)
        #: STS calls made, by action (for tests and diagnostics)
        self.sts_calls: dict[str, int] = {"AssumeRole": 0, "AssumeRoleWithOIDC": 0}
        self.imds_calls = 0

    # ------------------------------------------------------------------------------------------
    # Which source (no network)

    def base_source(self, key: str, registry: RegistryConfig, *, rrsa_enabled: bool) -> BaseSource:
        if registry.custom_access_key or registry.custom_access_key_secret is not None:
            secret = (
                registry.custom_access_key_secret.get_secret_value()
                if registry.custom_access_key_secret is not None
                else ""
            )
            if not registry.custom_access_key or not secret:
                raise TokenError(
                    key,
                    "customAccessKey and customAccessKeySecret must be set together",
                    code="InvalidConfig",
                    advice="set both customAccessKey and customAccessKeySecret, or use accessKeySecretRef",
                )
            return BaseSource(
                "access-key",
                f"AccessKey {registry.custom_access_key} (customAccessKey)",
                access_key_id=registry.custom_access_key,
                access_key_secret=Sensitive(secret),
            )
        if registry.access_key_secret_ref:
            name = registry.access_key_secret_ref
            data = self.secret_reader(name)
            if data is None:
                raise TokenError(
                    key,
                    f"the Secret {name} named by accessKeySecretRef does not exist",
                    code="SecretNotFound",
                    retryable=True,
                    advice=(
                        f"create the Secret {name} in the configuration namespace with the keys "
                        f"{AK_ID_KEY} and {AK_SECRET_KEY}"
                    ),
                )
            ak = (data.get(AK_ID_KEY) or "").strip()
            sk = (data.get(AK_SECRET_KEY) or "").strip()
            if not ak or not sk:
                missing = [k for k, v in ((AK_ID_KEY, ak), (AK_SECRET_KEY, sk)) if not v]
                raise TokenError(
                    key,
                    f"the Secret {name} named by accessKeySecretRef lacks {', '.join(missing)}",
                    code="SecretIncomplete",
                    retryable=True,
                    advice=f"put the keys {AK_ID_KEY} and {AK_SECRET_KEY} into the Secret {name}",
                )
            return BaseSource(
                "secret-ref",
                f"AccessKey {ak} (Secret {name})",
                access_key_id=ak,
                access_key_secret=Sensitive(sk),
            )
        if rrsa_enabled:
            role = registry.rrsa_role_arn or self.environ.get(ENV_ROLE_ARN, "")
            provider = registry.rrsa_oidc_provider_role_arn or self.environ.get(ENV_OIDC_PROVIDER_ARN, "")
            token_file = self.environ.get(ENV_OIDC_TOKEN_FILE, "") or DEFAULT_OIDC_TOKEN_FILE
            if not role or not provider:
                missing = []
                if not role:
                    missing.append(f"rrsaRoleARN (or {ENV_ROLE_ARN})")
                if not provider:
                    missing.append(f"rrsaOIDCProviderRoleARN (or {ENV_OIDC_PROVIDER_ARN})")
                raise TokenError(
                    key,
                    f"rrsa is enabled but {' and '.join(missing)} is not set",
                    code="InvalidConfig",
                    advice=(
                        "set rrsaRoleARN and rrsaOIDCProviderRoleARN on the acr-registry-info entry, or "
                        "install ack-pod-identity-webhook so the controller's pod gets the RRSA environment; "
                        "or set rrsa enable: false"
                    ),
                )
            return BaseSource(
                "rrsa",
                f"RRSA role {role}",
                role_arn=role,
                oidc_provider_arn=provider,
                oidc_token_file=token_file,
            )
        addon = self.secret_reader(ADDON_SECRET)
        if addon is not None:
            ak = (addon.get(AK_ID_KEY) or "").strip()
            sk = (addon.get(AK_SECRET_KEY) or "").strip()
            if ak and sk:
                return BaseSource(
                    "addon-secret",
                    f"AccessKey {ak} (Secret {ADDON_SECRET})",
                    access_key_id=ak,
                    access_key_secret=Sensitive(sk),
                )
        return BaseSource("worker-role", "the worker RAM role")

    def source_label(self, key: str, registry: RegistryConfig, *, rrsa_enabled: bool) -> str:
        label: str = self.base_source(key, registry, rrsa_enabled=rrsa_enabled).kind
        if registry.assume_role_arn:
            label += f" + assume-role({registry.assume_role_arn})"
        return label

    def fingerprint(self, key: str, registry: RegistryConfig, *, rrsa_enabled: bool) -> str:
        """Changes when the entry or the credential identity behind it changes (secret-free digest)."""
        try:
            parts: tuple[str, ...] = self.base_source(
                key, registry, rrsa_enabled=rrsa_enabled
            ).fingerprint_parts()
        except TokenError as exc:
            parts = ("error", exc.code or "")
        entry = registry.model_dump_json(exclude={"custom_access_key_secret"})
        secret = (
            registry.custom_access_key_secret.get_secret_value() if registry.custom_access_key_secret else ""
        )
        blob = "\0".join((entry, hashlib.sha256(secret.encode()).hexdigest(), str(rrsa_enabled), *parts))
        return hashlib.sha256(blob.encode()).hexdigest()

    # ------------------------------------------------------------------------------------------
    # Resolution (may call STS / metadata)

    def resolve(
        self, key: str, registry: RegistryConfig, *, rrsa_enabled: bool, region: str, now: datetime
    ) -> Credential:
        base = self.base_source(key, registry, rrsa_enabled=rrsa_enabled)
        cred, base_key = self._base_credential(key, base, registry, region, now)
        if not registry.assume_role_arn:
            return cred
        duration = registry.expire_duration
        cache_key = ("assume", *base_key, registry.assume_role_arn, str(duration), key)
        cached = self._cache.get(cache_key)
        if cached is not None and cached.usable_at(now):
            return cached
        assumed = self._assume_role(key, cred, registry.assume_role_arn, duration, region, now)
        self._cache[cache_key] = assumed
        return assumed

    def invalidate(self) -> None:
        """Forget every cached STS / metadata credential (after an InvalidSecurityToken error)."""
        self._cache.clear()

    def _base_credential(
        self, key: str, base: BaseSource, registry: RegistryConfig, region: str, now: datetime
    ) -> tuple[Credential, tuple[str, ...]]:
        if base.kind in ("access-key", "secret-ref", "addon-secret"):
            cred = Credential(base.access_key_id, base.access_key_secret, identity=base.identity)
            digest = hashlib.sha256(base.access_key_secret.reveal().encode()).hexdigest()[:16]
            return cred, ("ak", base.access_key_id, digest)
        if base.kind == "rrsa":
            duration = registry.expire_duration if not registry.assume_role_arn else 3600
            cache_key: tuple[str, ...] = (
                "rrsa",
                base.role_arn,
                base.oidc_provider_arn,
                base.oidc_token_file,
                str(duration),
            )
            cached = self._cache.get(cache_key)
            if cached is None or not cached.usable_at(now):
                cached = self._assume_role_with_oidc(key, base, duration, region, now)
                self._cache[cache_key] = cached
            return cached, cache_key
        cache_key = ("worker",)
        cached = self._cache.get(cache_key)
        if cached is None or not cached.usable_at(now):
            cached = self._worker_role(key, now)
            self._cache[cache_key] = cached
        return cached, cache_key

    def _worker_role(self, key: str, now: datetime) -> Credential:
        self.imds_calls += 1
        try:
            rc = self.imds.role_credentials()
        except ImdsError as exc:
            raise TokenError(
                key,
                f"no worker RAM role credentials: {exc}",
                code="WorkerRoleUnavailable",
                retryable=exc.retryable or exc.http_status is None,
                action="ECS metadata",
                http_status=exc.http_status,
                advice=(
                    "run on an ECS node with a worker RAM role (check --ecs-metadata-endpoint and "
                    "--imds-v1-fallback), or configure customAccessKey / accessKeySecretRef, RRSA, or the "
                    f"Secret {ADDON_SECRET} (keys {AK_ID_KEY}, {AK_SECRET_KEY})"
                ),
            ) from None
        return Credential(
            rc.access_key_id,
            rc.access_key_secret,
            rc.security_token,
            expiration=rc.expiration,
            obtained_at=now,
            identity=f"worker RAM role {rc.role_name}",
        )

    # ------------------------------------------------------------------------------------------
    # STS

    def _sts_client(self, credential: Credential | None, region: str) -> Any:
        from alibabacloud_sts20150401.client import Client as StsClient

        config = make_config(
            credential=credential,
            region=region,
            endpoint=self.sts_endpoint,
            use_vpc=self.settings.use_vpc_endpoints,
            connect_timeout=self.settings.connect_timeout,
            read_timeout=self.settings.read_timeout,
        )
        client = StsClient(config)
        quiet_sdk_loggers()
        return client

    def _sts_endpoint_label(self, region: str) -> str:
        if self.sts_endpoint is not None:
            return str(self.sts_endpoint)
        return f"sts{'-vpc' if self.settings.use_vpc_endpoints else ''}.{region}.aliyuncs.com"

    def _assume_role(
        self, key: str, base: Credential, role_arn: str, duration: int, region: str, now: datetime
    ) -> Credential:
        from alibabacloud_sts20150401 import models as sts_models

        self.sts_calls["AssumeRole"] += 1
        try:
            client = self._sts_client(base, region)
            req = sts_models.AssumeRoleRequest(
                role_arn=role_arn, role_session_name=session_name(key), duration_seconds=duration
            )
            resp = client.assume_role_with_options(
                req, runtime_options(self.settings.connect_timeout, self.settings.read_timeout)
            )
        except Exception as exc:
            raise classify(
                exc,
                registry=key,
                action="AssumeRole",
                endpoint=self._sts_endpoint_label(region),
                identity=base.identity,
                role_arn=role_arn,
                region=region,
                secrets=base.secrets(),
            ) from None
        return self._sts_credential(
            key, resp, "AssumeRole", f"role {role_arn} (assumed by {base.identity})", now
        )

    def _assume_role_with_oidc(
        self, key: str, base: BaseSource, duration: int, region: str, now: datetime
    ) -> Credential:
        from alibabacloud_sts20150401 import models as sts_models

        try:
            oidc_token = self.read_file(base.oidc_token_file).strip()
        except OSError as exc:
            raise TokenError(
                key,
                f"cannot read the RRSA OIDC token file {base.oidc_token_file} ({type(exc).__name__})",
                code="OIDCTokenFileUnreadable",
                retryable=True,
                action="AssumeRoleWithOIDC",
                advice=(
                    "enable RRSA on the cluster and let ack-pod-identity-webhook mount the token into the "
                    f"controller's pod (or set {ENV_OIDC_TOKEN_FILE})"
                ),
            ) from None
        if not oidc_token:
            raise TokenError(
                key,
                f"the RRSA OIDC token file {base.oidc_token_file} is empty",
                code="OIDCTokenFileEmpty",
                retryable=True,
                action="AssumeRoleWithOIDC",
                advice="check the projected service account token volume of the controller's pod",
            )
        self.sts_calls["AssumeRoleWithOIDC"] += 1
        try:
            client = self._sts_client(None, region)
            req = sts_models.AssumeRoleWithOIDCRequest(
                role_arn=base.role_arn,
                oidcprovider_arn=base.oidc_provider_arn,
                oidctoken=oidc_token,
                role_session_name=session_name("rrsa"),
                duration_seconds=duration,
            )
            resp = client.assume_role_with_oidcwith_options(
                req, runtime_options(self.settings.connect_timeout, self.settings.read_timeout)
            )
        except Exception as exc:
            raise classify(
                exc,
                registry=key,
                action="AssumeRoleWithOIDC",
                endpoint=self._sts_endpoint_label(region),
                identity=base.identity,
                role_arn=base.role_arn,
                region=region,
                secrets=(oidc_token,),
            ) from None
        return self._sts_credential(key, resp, "AssumeRoleWithOIDC", base.identity, now)

    def _sts_credential(self, key: str, resp: Any, action: str, identity: str, now: datetime) -> Credential:
        body = getattr(resp, "body", None)
        creds = getattr(body, "credentials", None)
        ak = getattr(creds, "access_key_id", None) or ""
        sk = getattr(creds, "access_key_secret", None) or ""
        token = getattr(creds, "security_token", None) or ""
        if not (ak and sk and token):
            raise TokenError(
                key,
                "STS returned no credentials",
                code="InvalidResponse",
                retryable=True,
                action=action,
                request_id=getattr(body, "request_id", None),
                advice="check that --sts-endpoint points at STS",
            )
        return Credential(
            str(ak),
            Sensitive(str(sk)),
            Sensitive(str(token)),
            expiration=parse_expiration(getattr(creds, "expiration", None)),
            obtained_at=now,
            identity=identity,
        )
