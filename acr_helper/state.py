"""Cluster objects written as YAML (the output of `kubectl get ns,sa,secrets -A -o yaml`, or a
multi-document file) turned into a core `ClusterView`. Reads no files and imports no client.

Secret data is never kept: a managed-name Secret becomes its labels, annotations, type and the
sha256 of its decoded `.dockerconfigjson`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from typing import Any

import yaml

from acr_helper.core.model import (
    DOCKERCONFIGJSON_KEY,
    ClusterView,
    NamespaceInfo,
    SecretInfo,
    ServiceAccountInfo,
    frozen_map,
    sha256_hex,
)


class StateError(ValueError):
    """The text is not YAML, or not cluster objects at all."""


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def _objects(docs: list[Any], notes: list[str]) -> Iterator[Mapping[str, Any]]:
    stack: list[Any] = list(reversed(docs))
    while stack:
        doc = stack.pop()
        if doc is None:
            continue
        if isinstance(doc, list):
            stack.extend(reversed(doc))
            continue
        if not isinstance(doc, Mapping):
            notes.append(f"ignored a YAML document that is not an object: {type(doc).__name__}")
            continue
        kind = str(doc.get("kind") or "")
        if kind == "List" or (kind.endswith("List") and "items" in doc):
            items = doc.get("items") or []
            if isinstance(items, list):
                stack.extend(reversed(items))
            else:
                notes.append(f"ignored a {kind} whose items are not a list")
            continue
        yield doc


def _secret_digest(obj: Mapping[str, Any], where: str, notes: list[str]) -> str:
    data = obj.get("data")
    if isinstance(data, Mapping) and data.get(DOCKERCONFIGJSON_KEY) is not None:
        raw = str(data[DOCKERCONFIGJSON_KEY])
        try:
            decoded = base64.b64decode("".join(raw.split()), validate=True)
        except (binascii.Error, ValueError):
            notes.append(f"Secret {where}: data[{DOCKERCONFIGJSON_KEY}] is not base64; treated as empty")
            return ""
        return sha256_hex(decoded)
    string_data = obj.get("stringData")
    if isinstance(string_data, Mapping) and string_data.get(DOCKERCONFIGJSON_KEY) is not None:
        return sha256_hex(str(string_data[DOCKERCONFIGJSON_KEY]).encode("utf-8"))
    return ""


def parse_state_documents(text: str, secret_name: str) -> tuple[ClusterView, list[str]]:
    """Namespaces, ServiceAccounts and the Secrets named `secret_name` in `text`, plus notes.

    Accepts a `kind: List` (what `kubectl get -o yaml` prints), `*List` kinds, multi-document
    YAML, and plain YAML lists of objects. Other kinds and other Secrets are ignored with a note.
    A namespace that only appears as the namespace of a ServiceAccount or Secret is added with
    no labels (and a note). Raises `StateError` when the text is not YAML.
    """
    notes: list[str] = []
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise StateError(f"not valid YAML{where}: {problem}") from None

    namespaces: dict[str, NamespaceInfo] = {}
    service_accounts: dict[tuple[str, str], ServiceAccountInfo] = {}
    secrets: dict[str, SecretInfo] = {}
    ignored_kinds: dict[str, int] = {}
    other_secrets = 0
    for obj in _objects(docs, notes):
        kind = str(obj.get("kind") or "")
        meta = obj.get("metadata")
        meta = meta if isinstance(meta, Mapping) else {}
        name = str(meta.get("name") or "")
        if kind not in ("Namespace", "ServiceAccount", "Secret"):
            ignored_kinds[kind or "(no kind)"] = ignored_kinds.get(kind or "(no kind)", 0) + 1
            continue
        if not name:
            notes.append(f"ignored a {kind} without metadata.name")
            continue
        if kind == "Namespace":
            status = obj.get("status")
            phase = str(status.get("phase") or "") if isinstance(status, Mapping) else ""
            namespaces[name] = NamespaceInfo(
                name=name,
                labels=frozen_map(_str_map(meta.get("labels"))),
                terminating=phase == "Terminating" or bool(meta.get("deletionTimestamp")),
            )
            continue
        namespace = str(meta.get("namespace") or "default")
        if kind == "ServiceAccount":
            refs: list[str] = []
            for ref in obj.get("imagePullSecrets") or []:
                if isinstance(ref, Mapping) and ref.get("name"):
                    refs.append(str(ref["name"]))
            service_accounts[(namespace, name)] = ServiceAccountInfo(
                namespace=namespace,
                name=name,
                image_pull_secrets=tuple(refs),
                resource_version=str(meta.get("resourceVersion") or ""),
            )
            continue
        # Secret
        if name != secret_name:
            other_secrets += 1
            continue
        secrets[namespace] = SecretInfo(
            namespace=namespace,
            name=name,
            labels=frozen_map(_str_map(meta.get("labels"))),
            annotations=frozen_map(_str_map(meta.get("annotations"))),
            type=str(obj.get("type") or "Opaque"),
            data_digest=_secret_digest(obj, f"{namespace}/{name}", notes),
            resource_version=str(meta.get("resourceVersion") or ""),
        )

    inferred = sorted(({ns for ns, _ in service_accounts} | set(secrets)) - set(namespaces))
    for ns in inferred:
        namespaces[ns] = NamespaceInfo(name=ns)
    if inferred:
        notes.append(
            "namespaces without a Namespace object, assumed to exist with no labels: " + ", ".join(inferred)
        )
    for kind, count in sorted(ignored_kinds.items()):
        notes.append(f"ignored {count} object(s) of kind {kind}")
    if other_secrets:
        notes.append(f"ignored {other_secrets} Secret(s) not named {secret_name}")
    view = ClusterView.build(
        namespaces=list(namespaces.values()),
        service_accounts=list(service_accounts.values()),
        secrets=list(secrets.values()),
        synced=True,
    )
    return view, notes
