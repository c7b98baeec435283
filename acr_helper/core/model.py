"""Frozen value types shared by the pure core and the adapters.

Nothing here performs I/O or reads the clock. Everything is immutable: the adapters build new
values; the core never edits what it is given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Literal

#: The label every Secret we write carries; deletes only ever touch Secrets with it.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "acr-helper"
#: A Namespace with this label set to "true" is never touched (and cleaned up if it was).
EXCLUDE_LABEL = "acr-helper/exclude"
#: Annotation on the managed Secret: the earliest token expiry in it (RFC 3339, UTC).
EXPIRY_ANNOTATION = "acr-helper/earliest-expiry"
#: Annotation on the managed Secret: the registries whose tokens it holds (comma list).
REGISTRIES_ANNOTATION = "acr-helper/registries"
#: Annotation on the managed Secret: sha256 of the rendered `.dockerconfigjson` (lets a fresh
#: process compare content without keeping plaintext in memory).
DIGEST_ANNOTATION = "acr-helper/content-digest"
#: Annotation on the managed Secret: per registry, the domains it serves and its token's expiry
#: and issue time (JSON, no secrets). Lets a restarted or newly elected controller adopt the
#: tokens a Secret already holds instead of rewriting every Secret with fresh ones.
TOKENS_ANNOTATION = "acr-helper/tokens"
DEFAULT_SECRET_NAME = "acr-credential-helper"  # noqa: S105 - a name, not a secret
DOCKERCONFIGJSON_TYPE = "kubernetes.io/dockerconfigjson"
DOCKERCONFIGJSON_KEY = ".dockerconfigjson"


class Sensitive:
    """A secret string (token, password, AccessKey secret) that never shows in repr/str/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Sensitive('**********')" if self._value else "Sensitive('')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sensitive) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Sensitive", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> tuple[type, tuple[str]]:  # pragma: no cover - pickling is not used
        raise TypeError("Sensitive values are not picklable")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


#: one shared empty mapping: most objects have no labels/annotations (memory at 10,000s of objects)
_EMPTY_MAP: Mapping[str, str] = MappingProxyType({})


def frozen_map(items: Mapping[str, str] | None = None) -> Mapping[str, str]:
    if not items:
        return _EMPTY_MAP
    return MappingProxyType(dict(items))


# ----------------------------------------------------------------------------------------------
# Tokens


@dataclass(frozen=True)
class RegistryToken:
    """A short-lived registry credential for one configured registry entry."""

    registry: str  # the registry key (see RegistryConfig.key), also the metrics label
    username: str
    password: Sensitive
    expires_at: datetime  # timezone-aware UTC
    obtained_at: datetime
    domains: tuple[str, ...]  # the registry hosts this credential is valid for, sorted, unique
    source: str = ""  # credential source, e.g. "worker-role" or "assume-role(acs:ram::…)"
    #: a short, secret-free digest of the credential identity the token was obtained with (the
    #: token cache sets it); recorded in the tokens annotation so a token is only adopted after a
    #: restart when it was obtained with the identity configured now
    credential_id: str = ""

    def valid_at(self, now: datetime) -> bool:
        return bool(self.password) and bool(self.username) and now < self.expires_at


# ----------------------------------------------------------------------------------------------
# The cluster view (what the list/watch caches hold, converted to core values)


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    terminating: bool = False


@dataclass(frozen=True, slots=True)
class ServiceAccountInfo:
    namespace: str
    name: str
    image_pull_secrets: tuple[str, ...] = ()  # in order, as on the object
    resource_version: str = ""


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A Secret with the managed name, as seen in the cluster. Data is kept as a digest only."""

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=frozen_map)
    annotations: Mapping[str, str] = field(default_factory=frozen_map)
    type: str = DOCKERCONFIGJSON_TYPE
    data_digest: str = ""  # sha256 hex of the decoded `.dockerconfigjson` value ("" if absent)
    resource_version: str = ""

    @property
    def owned(self) -> bool:
        return self.labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


@dataclass(frozen=True)
class ClusterView:
    """An immutable snapshot of everything the controller watches."""

    namespaces: Mapping[str, NamespaceInfo] = field(default_factory=lambda: MappingProxyType({}))
    service_accounts: Mapping[tuple[str, str], ServiceAccountInfo] = field(
        default_factory=lambda: MappingProxyType({})
    )
    #: Secrets that carry the managed name, keyed by namespace.
    secrets: Mapping[str, SecretInfo] = field(default_factory=lambda: MappingProxyType({}))
    synced: bool = True

    @staticmethod
    def build(
        namespaces: list[NamespaceInfo] | tuple[NamespaceInfo, ...] = (),
        service_accounts: list[ServiceAccountInfo] | tuple[ServiceAccountInfo, ...] = (),
        secrets: list[SecretInfo] | tuple[SecretInfo, ...] = (),
        synced: bool = True,
    ) -> ClusterView:
        return ClusterView(
            namespaces=MappingProxyType({n.name: n for n in namespaces}),
            service_accounts=MappingProxyType({(s.namespace, s.name): s for s in service_accounts}),
            secrets=MappingProxyType({s.namespace: s for s in secrets}),
            synced=synced,
        )


# ----------------------------------------------------------------------------------------------
# Desired state and the plan


@dataclass(frozen=True, slots=True)
class DesiredSecret:
    namespace: str
    name: str
    dockerconfigjson: Sensitive  # the rendered JSON document (contains passwords)
    digest: str  # sha256 hex of dockerconfigjson
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    type: str = DOCKERCONFIGJSON_TYPE


@dataclass(frozen=True)
class DesiredState:
    secret_name: str
    #: namespace -> the Secret it must hold
    secrets: Mapping[str, DesiredSecret]
    #: (namespace, service account) pairs that must carry `secret_name` in imagePullSecrets
    pull_secret_refs: frozenset[tuple[str, str]]
    #: namespaces that are in scope (selected, not excluded, not terminating)
    namespaces_in_scope: frozenset[str]
    #: when something next becomes due (token refresh), or None
    next_wakeup: datetime | None
    warnings: tuple[str, ...] = ()
    #: namespaces whose existing owned Secret is kept as it is: a configured registry has no valid
    #: token right now, and the Secret still holds an unexpired one for it (never strip a registry
    #: that still works because its refresh failed, e.g. right after a restart)
    held: frozenset[str] = frozenset()


ActionVerb = Literal["create", "update", "delete", "add", "remove"]
ActionKind = Literal["Secret", "ServiceAccount"]


@dataclass(frozen=True, slots=True)
class Action:
    action: ActionVerb
    kind: ActionKind
    namespace: str
    name: str
    reason: str
    #: for Secret create/update: what to write
    secret: DesiredSecret | None = None
    #: for Secret update/delete: the resourceVersion we saw (a precondition)
    resource_version: str = ""
    #: for ServiceAccount add/remove: the imagePullSecrets entry
    pull_secret: str = ""

    def describe(self) -> dict[str, str]:
        """The public, secret-free form used by `plan` output, logs and events."""
        return {
            "action": self.action,
            "kind": self.kind,
            "namespace": self.namespace,
            "name": self.name,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Conflict:
    kind: ActionKind
    namespace: str
    name: str
    reason: str


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    conflicts: tuple[Conflict, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.actions

    def count(self, action: str, kind: str | None = None) -> int:
        return sum(1 for a in self.actions if a.action == action and (kind is None or a.kind == kind))
