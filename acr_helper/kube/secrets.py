"""One-shot read of a Secret (for commands that run without the watch caches)."""

from __future__ import annotations

from kubernetes.client.exceptions import ApiException

from acr_helper.kube.client import KubeClients
from acr_helper.kube.convert import secret_data
from acr_helper.settings import KubeSettings


def read_secret_data(
    kubeconfig: str | None, context: str | None, namespace: str, name: str
) -> dict[str, str] | None:
    """The decoded data of Secret namespace/name; None when it does not exist."""
    clients = KubeClients(KubeSettings(kubeconfig=kubeconfig, context=context))
    try:
        obj = clients.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    finally:
        clients.close()
    return secret_data(obj).to_dict()


def read_secret_with(
    clients: KubeClients, namespace: str, name: str
) -> tuple[dict[str, str], dict[str, str]] | None:
    """(decoded data, annotations) of Secret namespace/name through existing clients; None when absent."""
    try:
        obj = clients.request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    annotations = {str(k): str(v) for k, v in ((obj.get("metadata") or {}).get("annotations") or {}).items()}
    return secret_data(obj).to_dict(), annotations
