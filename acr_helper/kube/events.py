"""core/v1 Events, aggregated like client-go's recorder: a repeat of the same object + type +
reason + message PATCHes count and lastTimestamp of the Event already written instead of
creating another one. Never raises: an Event is a courtesy, not a reason to fail a pass.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from acr_helper.kube.client import KubeClients, error_message

log = logging.getLogger(__name__)

_API_VERSIONS = {
    "Namespace": "v1",
    "ServiceAccount": "v1",
    "Secret": "v1",
    "ConfigMap": "v1",
    "Pod": "v1",
    "Lease": "coordination.k8s.io/v1",
}
_CLUSTER_SCOPED = {"Namespace", "Node"}
MAX_MESSAGE = 1024


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(
        self,
        clients: KubeClients,
        *,
        component: str = "acr-helper",
        namespace_fallback: str = "kube-system",
        instance: str | None = None,
        cache_size: int = 4096,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clients = clients
        self._component = component
        self._fallback = namespace_fallback
        self._instance = instance or f"{socket.gethostname()}-{os.getpid()}"
        self._now = now
        self._lock = threading.Lock()
        # key -> (event namespace, event name, count)
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        self._cache_size = cache_size
        self.failures = 0

    def event(
        self,
        *,
        kind: str,
        namespace: str,
        name: str,
        uid: str | None,
        type: str,  # the Event field's name (shadows the builtin here)
        reason: str,
        message: str,
    ) -> None:
        try:
            self._event(kind, namespace, name, uid, type, reason, message[:MAX_MESSAGE])
        except Exception as exc:  # never raise
            self.failures += 1
            detail = error_message(exc) if isinstance(exc, ApiException) else exc.__class__.__name__
            log.warning("could not record Event %s on %s %s/%s: %s", reason, kind, namespace, name, detail)

    def _event(
        self, kind: str, namespace: str, name: str, uid: str | None, etype: str, reason: str, message: str
    ) -> None:
        cluster_scoped = kind in _CLUSTER_SCOPED or not namespace
        ev_ns = self._fallback if cluster_scoped else namespace
        key = (kind, namespace, name, uid or "", etype, reason, message)
        now = _ts(self._now())
        with self._lock:
            prior = self._seen.get(key)
            if prior is not None:
                self._seen.move_to_end(key)
        if prior is not None:
            p_ns, p_name, count = prior
            try:
                self._clients.request(
                    "PATCH",
                    f"/api/v1/namespaces/{p_ns}/events/{p_name}",
                    body={"count": count + 1, "lastTimestamp": now},
                    content_type="application/merge-patch+json",
                )
                self._remember(key, (p_ns, p_name, count + 1))
                return
            except ApiException as exc:
                if exc.status != 404:
                    raise
                # the Event expired (TTL): write a fresh one
        involved: dict[str, Any] = {
            "kind": kind,
            "name": name,
            "apiVersion": _API_VERSIONS.get(kind, "v1"),
        }
        if not cluster_scoped:
            involved["namespace"] = namespace
        if uid:
            involved["uid"] = uid
        ev_name = f"{name}.{int(time.time() * 1e9):x}{uuid.uuid4().hex[:6]}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": ev_name, "namespace": ev_ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": etype,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "source": {"component": self._component},
            "reportingComponent": self._component,
            "reportingInstance": self._instance,
        }
        self._clients.request("POST", f"/api/v1/namespaces/{ev_ns}/events", body=body)
        self._remember(key, (ev_ns, ev_name, 1))

    def _remember(self, key: tuple[str, ...], value: tuple[str, str, int]) -> None:
        with self._lock:
            self._seen[key] = value
            self._seen.move_to_end(key)
            while len(self._seen) > self._cache_size:
                self._seen.popitem(last=False)
