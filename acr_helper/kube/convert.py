"""Raw API objects (JSON dicts, or client models) -> core.model values. Pure; no I/O.

Secrets are reduced to a digest of their decoded `.dockerconfigjson`; plaintext is never kept,
except for the few config-namespace Secrets the runtime must read (AccessKey Secrets), which come
out as a `SecretData` whose repr hides the values.
"""

from __future__ import annotations

import base64
import binascii
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from acr_helper.core.model import (
    DOCKERCONFIGJSON_KEY,
    NamespaceInfo,
    SecretInfo,
    ServiceAccountInfo,
    frozen_map,
    sha256_hex,
)


@dataclass(frozen=True)
class ConfigMapInfo:
    namespace: str
    name: str
    uid: str = ""
    resource_version: str = ""
    data: Mapping[str, str] = field(default_factory=frozen_map)


class SecretData(Mapping[str, str]):
    """Decoded Secret data (key -> UTF-8 text). Never shows its values in repr/str."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, str]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"SecretData(keys={sorted(self._data)!r})"

    __str__ = __repr__

    def to_dict(self) -> dict[str, str]:
        return dict(self._data)


def as_dict(obj: Any) -> dict[str, Any]:
    """A JSON-shaped dict (camelCase keys) from a dict or a kubernetes client model."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if obj is None:
        return {}
    from kubernetes.client import ApiClient  # local: keep this module importable cheaply

    out = ApiClient().sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return out if isinstance(out, dict) else {}


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {_i(k): "" if v is None else _i(v) for k, v in value.items()}


def _i(value: Any) -> str:
    """The string, interned: names, namespaces, label keys and values repeat across tens of
    thousands of cached objects (one copy each instead of one per object)."""
    return sys.intern(str(value))


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(obj)
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def resource_version(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("resourceVersion") or "")


def namespace_info(obj: Any) -> NamespaceInfo:
    o = as_dict(obj)
    meta = _meta(o)
    status = o.get("status") if isinstance(o.get("status"), Mapping) else {}
    terminating = bool(meta.get("deletionTimestamp")) or (status or {}).get("phase") == "Terminating"
    return NamespaceInfo(
        name=_i(meta.get("name") or ""),
        labels=frozen_map(_str_map(meta.get("labels"))),
        terminating=terminating,
    )


def pull_secret_names(entries: Any) -> tuple[str, ...]:
    """The names of an imagePullSecrets list, in order (entries without a name are skipped)."""
    out: list[str] = []
    for entry in entries or ():
        if isinstance(entry, Mapping) and entry.get("name"):
            out.append(_i(entry["name"]))
    return tuple(out)


def service_account_info(obj: Any) -> ServiceAccountInfo:
    o = as_dict(obj)
    meta = _meta(o)
    return ServiceAccountInfo(
        namespace=_i(meta.get("namespace") or ""),
        name=_i(meta.get("name") or ""),
        image_pull_secrets=pull_secret_names(o.get("imagePullSecrets")),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def _b64decode(value: Any) -> bytes | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def secret_info(obj: Any) -> SecretInfo:
    """The managed-name Secret as a digest-only value (no plaintext kept)."""
    o = as_dict(obj)
    meta = _meta(o)
    data = o.get("data") if isinstance(o.get("data"), Mapping) else {}
    raw = _b64decode((data or {}).get(DOCKERCONFIGJSON_KEY))
    if raw is None and isinstance(o.get("stringData"), Mapping):
        s = o["stringData"].get(DOCKERCONFIGJSON_KEY)
        raw = s.encode() if isinstance(s, str) else None
    return SecretInfo(
        namespace=_i(meta.get("namespace") or ""),
        name=_i(meta.get("name") or ""),
        labels=frozen_map(_str_map(meta.get("labels"))),
        annotations=frozen_map(_str_map(meta.get("annotations"))),
        type=_i(o.get("type") or "Opaque"),
        data_digest=sha256_hex(raw) if raw is not None else "",
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def secret_data(obj: Any) -> SecretData:
    """Decoded data of a Secret (values that are not valid base64/UTF-8 are dropped)."""
    o = as_dict(obj)
    out: dict[str, str] = {}
    data = o.get("data")
    if isinstance(data, Mapping):
        for k, v in data.items():
            raw = _b64decode(v)
            if raw is None:
                continue
            try:
                out[str(k)] = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
    string_data = o.get("stringData")
    if isinstance(string_data, Mapping):
        for k, v in string_data.items():
            if isinstance(v, str):
                out[str(k)] = v
    return SecretData(out)


def config_map_info(obj: Any) -> ConfigMapInfo:
    o = as_dict(obj)
    meta = _meta(o)
    return ConfigMapInfo(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta.get("uid") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        data=frozen_map(_str_map(o.get("data"))),
    )


def encode_data(values: Mapping[str, str]) -> dict[str, str]:
    """Secret `data` from text values (base64)."""
    return {k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in values.items()}
