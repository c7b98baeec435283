"""The `kube-system/acr-configuration` ConfigMap contract: an immutable, validated model.

`parse_config(data)` never raises on user input: it returns a `ConfigResult` holding either a
valid `AcrConfig` or a list of errors (each naming the key, the line inside embedded YAML where
there is one, and what was expected), plus warnings.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from acr_helper.core.model import DEFAULT_SECRET_NAME, EXCLUDE_LABEL

CONFIG_NAMESPACE = "kube-system"
CONFIG_NAME = "acr-configuration"
DEFAULT_EXPIRE_DURATION = 3600
MIN_EXPIRE_DURATION = 900
MAX_EXPIRE_DURATION = 43200
DEFAULT_THRESHOLD = timedelta(minutes=15)

#: every key the add-on documents, plus ours
KNOWN_KEYS = (
    "service-account",
    "watch-namespace",
    "expiring-threshold",
    "acr-registry-info",
    "acr-api-version",
    "notify-email",
    "rrsa",
    "webhook-configuration",
)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NamespaceSelector(_Frozen):
    """`watch-namespace`: names and shell globs, `all`, and exclusions written `!name`/`!glob`."""

    include: tuple[str, ...] = ("default",)
    exclude: tuple[str, ...] = ()

    @property
    def all(self) -> bool:
        return "all" in self.include or "*" in self.include

    def matches(self, name: str, labels: Mapping[str, str] | None = None) -> bool:
        if labels is not None and labels.get(EXCLUDE_LABEL, "").lower() == "true":
            return False
        if any(fnmatch.fnmatchcase(name, pat) for pat in self.exclude):
            return False
        if self.all:
            return True
        return any(fnmatch.fnmatchcase(name, pat) for pat in self.include)


class ServiceAccountSelector(_Frozen):
    """`service-account`: names (and shell globs); `*` means every ServiceAccount."""

    include: tuple[str, ...] = ("default",)

    @property
    def all(self) -> bool:
        return "*" in self.include

    def matches(self, name: str) -> bool:
        return self.all or any(fnmatch.fnmatchcase(name, pat) for pat in self.include)


class RegistryConfig(_Frozen):
    """One item of `acr-registry-info`."""

    instance_id: str = ""  # "" = Personal Edition; "cri-…" = Enterprise Edition
    region_id: str | None = None  # None = the cluster's region
    domains: tuple[str, ...] | None = None  # None = every domain of the instance / edition default
    assume_role_arn: str | None = None
    expire_duration: int = Field(default=DEFAULT_EXPIRE_DURATION, ge=MIN_EXPIRE_DURATION, le=MAX_EXPIRE_DURATION)
    custom_access_key: str | None = None
    custom_access_key_secret: SecretStr | None = None
    rrsa_role_arn: str | None = None
    rrsa_oidc_provider_role_arn: str | None = None
    access_key_secret_ref: str | None = None  # a Secret in the config namespace
    #: position in acr-registry-info (0-based); keeps keys unique and messages precise
    index: int = 0

    @property
    def edition(self) -> Literal["enterprise", "personal"]:
        return "enterprise" if self.instance_id else "personal"

    def region(self, default_region: str) -> str:
        return self.region_id or default_region

    def key(self, default_region: str) -> str:
        """A stable, human-readable identifier: the metrics label and the token-cache key.

        `cri-abc` (EE), `personal/cn-hangzhou` (PE); when two entries would share a key (same
        instance with different credentials or domains) the later one gets `#<index>`.
        """
        base = self.instance_id if self.instance_id else f"personal/{self.region(default_region)}"
        if self.instance_id and self.region_id:
            base = f"{self.instance_id}@{self.region_id}"
        return base

    def credential_hint(self) -> str:
        """The configured credential source, without secrets (the tokens layer resolves it)."""
        if self.custom_access_key:
            base = "access-key"
        elif self.access_key_secret_ref:
            base = f"secret-ref({self.access_key_secret_ref})"
        elif self.rrsa_role_arn:
            base = "rrsa"
        else:
            base = "default-chain"
        if self.assume_role_arn:
            base += f" + assume-role({self.assume_role_arn})"
        return base


class RrsaConfig(_Frozen):
    enable: bool = False


class WebhookConfig(_Frozen):
    enable: bool = False
    failure_policy: Literal["Ignore", "Fail"] = "Ignore"
    timeout_seconds: int = Field(default=10, ge=1, le=30)


class AcrConfig(_Frozen):
    service_accounts: ServiceAccountSelector = ServiceAccountSelector()
    watch_namespaces: NamespaceSelector = NamespaceSelector()
    expiring_threshold: timedelta = DEFAULT_THRESHOLD
    #: as configured; empty means "one Personal Edition registry in the cluster's region"
    registries: tuple[RegistryConfig, ...] = ()
    acr_api_version: str = "2018-12-01"
    notify_email: str | None = None
    rrsa: RrsaConfig = RrsaConfig()
    webhook: WebhookConfig = WebhookConfig()
    secret_name: str = DEFAULT_SECRET_NAME

    def effective_registries(self) -> tuple[RegistryConfig, ...]:
        return self.registries or (RegistryConfig(),)

    def registry_keys(self, default_region: str) -> dict[str, RegistryConfig]:
        """Unique key -> entry, in configuration order (see RegistryConfig.key)."""
        out: dict[str, RegistryConfig] = {}
        for reg in self.effective_registries():
            key = reg.key(default_region)
            if key in out:
                key = f"{key}#{reg.index}"
            out[key] = reg
        return out


class ConfigMessage(_Frozen):
    severity: Literal["error", "warning"]
    key: str  # the ConfigMap key, e.g. "acr-registry-info"
    message: str  # what is wrong and what was expected
    line: int | None = None  # 1-based line inside the key's value, when it is embedded YAML
    field: str | None = None  # e.g. "[0].expireDuration"

    def __str__(self) -> str:
        where = self.key
        if self.field:
            where += self.field if self.field.startswith("[") else f".{self.field}"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class ConfigResult(_Frozen):
    config: AcrConfig | None
    errors: tuple[ConfigMessage, ...] = ()
    warnings: tuple[ConfigMessage, ...] = ()

    @property
    def ok(self) -> bool:
        return self.config is not None and not self.errors


def parse_config(data: Mapping[str, str] | None, *, secret_name: str = DEFAULT_SECRET_NAME) -> ConfigResult:
    """Parse the ConfigMap `data`. `None` (no ConfigMap) yields the add-on's defaults."""
    if data is None:
        return ConfigResult(config=AcrConfig(secret_name=secret_name))
    raise NotImplementedError  # filled in by the config work
