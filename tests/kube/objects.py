"""Raw API objects for the tests (obviously fake content)."""

from __future__ import annotations

import base64
from typing import Any

from acr_helper.core.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE

SECRET = "acr-credential-helper"


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def service_account(ns: str, name: str, pull: tuple[str, ...] = ()) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount",
                           "metadata": {"namespace": ns, "name": name}}
    if pull:
        obj["imagePullSecrets"] = [{"name": p} for p in pull]
    return obj


def secret(ns: str, name: str = SECRET, *, owned: bool = True, data: dict[str, str] | None = None,
           type_: str | None = None) -> dict[str, Any]:
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE} if owned else {"team": "theirs"}
    if data is None:
        data = {".dockerconfigjson": '{"auths":{}}'}
    if type_ is None:
        type_ = "kubernetes.io/dockerconfigjson" if ".dockerconfigjson" in data else "Opaque"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "type": type_,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def config_map(ns: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": ns, "name": name},
            "data": data}
