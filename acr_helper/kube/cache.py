"""ClusterCache: one list/watch thread per kind, their stores, and immutable snapshots.

Kinds:
* the config ConfigMap — `fieldSelector=metadata.name=<config_name>` in config_namespace;
* Namespaces and ServiceAccounts, cluster-wide;
* our managed Secrets, cluster-wide with `fieldSelector=metadata.name=<secret_name>` (never an
  unfiltered Secret list or watch: RBAC can then grant Secrets by resourceNames only);
* one watcher per extra Secret name in config_namespace (the addon-secret convention and every
  accessKeySecretRef), started/stopped by set_extra_secret_names().

`synced()` covers the four core kinds. Extra-Secret watchers report through `secret_synced(name)`,
so a missing RBAC grant for one AccessKey Secret cannot stall every other write.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any

from acr_helper.core.model import ClusterView, NamespaceInfo, SecretInfo, ServiceAccountInfo
from acr_helper.kube import convert
from acr_helper.kube.client import KubeClients
from acr_helper.kube.convert import ConfigMapInfo, SecretData
from acr_helper.kube.listwatch import ListWatcher, make_list_fn, make_watch_fn
from acr_helper.kube.store import Store
from acr_helper.settings import KubeSettings

log = logging.getLogger(__name__)


class ClusterCache:
    def __init__(
        self,
        clients: KubeClients,
        settings: KubeSettings,
        *,
        on_change: Callable[[], None],
        on_watch_restart: Callable[[str, str], None] | None = None,
        extra_sync_wait: float = 5.0,
    ) -> None:
        self._clients = clients
        self._settings = settings
        self._on_change = on_change
        self._on_restart = on_watch_restart
        self._extra_sync_wait = extra_sync_wait
        s = settings
        self.configmaps: Store[ConfigMapInfo] = Store("configmaps", convert.config_map_info)
        self.namespaces: Store[NamespaceInfo] = Store("namespaces", convert.namespace_info)
        self.service_accounts: Store[ServiceAccountInfo] = Store(
            "serviceaccounts", convert.service_account_info
        )
        self.secrets: Store[SecretInfo] = Store("secrets", convert.secret_info)
        ns = s.config_namespace
        self._core: list[ListWatcher] = [
            self._watcher(
                "configmaps",
                self.configmaps,
                f"/api/v1/namespaces/{ns}/configmaps",
                [("fieldSelector", f"metadata.name={s.config_name}")],
                name=f"configmap/{s.config_name}",
            ),
            self._watcher("namespaces", self.namespaces, "/api/v1/namespaces", []),
            self._watcher("serviceaccounts", self.service_accounts, "/api/v1/serviceaccounts", []),
            self._watcher(
                "secrets",
                self.secrets,
                "/api/v1/secrets",
                [("fieldSelector", f"metadata.name={s.secret_name}")],
                name=f"secrets/{s.secret_name}",
            ),
        ]
        self._lock = threading.Lock()
        self._extra: dict[str, tuple[ListWatcher, Store[SecretData], Any]] = {}
        self._started = False
        self._stopped = False
        self._snap_key: tuple[int, ...] | None = None
        self._snap: ClusterView | None = None
        for name in s.extra_secret_names:
            self._add_extra(name)

    def _watcher(
        self,
        resource: str,
        store: Store[Any],
        path: str,
        query: list[tuple[str, Any]],
        *,
        name: str = "",
        api: Any = None,
    ) -> ListWatcher:
        api = api if api is not None else self._clients.new_api_client()  # one ApiClient per thread
        return ListWatcher(
            resource,
            store,
            make_list_fn(self._clients, api, path, query),
            make_watch_fn(self._clients, api, path, query),
            on_change=self._on_change,
            on_restart=self._on_restart,
            backoff_initial=self._settings.backoff_initial,
            backoff_max=self._settings.backoff_max,
            name=name or resource,
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            extras = [w for w, _, _ in self._extra.values()]
        for w in (*self._core, *extras):
            w.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every watcher; returns within about `timeout` seconds (threads are daemons)."""
        with self._lock:
            self._stopped = True
            watchers = [*self._core, *(w for w, _, _ in self._extra.values())]
        deadline = time.monotonic() + timeout
        for w in watchers:  # signal all first, then join: the total wait stays bounded
            w.stop(timeout=0)
        for w in watchers:
            w.stop(timeout=max(0.0, deadline - time.monotonic()))

    def synced(self) -> bool:
        return all(w.store.synced for w in self._core)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for w in self._core:
            if not w.store.wait_synced(max(0.0, deadline - time.monotonic())):
                return False
        return True

    # -- reads -------------------------------------------------------------------------------

    def snapshot(self) -> ClusterView:
        """An immutable view; rebuilt only when a store changed since the last call."""
        key = (
            self.namespaces.generation,
            self.service_accounts.generation,
            self.secrets.generation,
            int(self.synced()),
        )
        with self._lock:
            if self._snap is not None and self._snap_key == key:
                return self._snap
        secrets = {s.namespace: s for s in self.secrets.values()}
        view = ClusterView(
            namespaces=MappingProxyType({n.name: n for n in self.namespaces.values()}),
            service_accounts=MappingProxyType(
                {(a.namespace, a.name): a for a in self.service_accounts.values()}
            ),
            secrets=MappingProxyType(secrets),
            synced=bool(key[3]),
        )
        with self._lock:
            self._snap, self._snap_key = view, key
        return view

    def config_map(self) -> ConfigMapInfo | None:
        s = self._settings
        return self.configmaps.get(s.config_namespace, s.config_name)

    def secret_data(self, name: str) -> dict[str, str] | None:
        """Decoded data of a watched Secret in config_namespace (None: absent or not watched)."""
        with self._lock:
            entry = self._extra.get(name)
        if entry is None:
            return None
        data = entry[1].get(self._settings.config_namespace, name)
        return data.to_dict() if data is not None else None

    def secret_synced(self, name: str) -> bool:
        with self._lock:
            entry = self._extra.get(name)
        return entry is not None and entry[1].synced

    def extra_secret_names(self) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(self._extra))

    def restarts(self) -> Mapping[str, Mapping[str, int]]:
        """Restart counts per watcher name and reason (for tests and debugging)."""
        with self._lock:
            watchers = [*self._core, *(w for w, _, _ in self._extra.values())]
        return {w.name: dict(w.restarts) for w in watchers}

    # -- extra Secrets -------------------------------------------------------------------------

    def _add_extra(self, name: str) -> ListWatcher:
        store: Store[SecretData] = Store("secrets", convert.secret_data)
        api = self._clients.new_api_client()
        w = self._watcher(
            "secrets",
            store,
            f"/api/v1/namespaces/{self._settings.config_namespace}/secrets",
            [("fieldSelector", f"metadata.name={name}")],
            name=f"secret/{name}",
            api=api,
        )
        self._extra[name] = (w, store, api)
        return w

    def set_extra_secret_names(self, names: Iterable[str]) -> None:
        """Watch exactly these Secrets in config_namespace (plus nothing else). Newly added
        watchers get up to `extra_sync_wait` seconds to sync so the caller can read them."""
        wanted = {n for n in names if n}
        started: list[ListWatcher] = []
        stopped: list[tuple[ListWatcher, Any]] = []
        with self._lock:
            if self._stopped:
                return
            for name in sorted(set(self._extra) - wanted):
                w, _, api = self._extra.pop(name)
                stopped.append((w, api))
            for name in sorted(wanted - set(self._extra)):
                w = self._add_extra(name)
                if self._started:
                    started.append(w)
        for w in started:
            w.start()
        for w, api in stopped:
            w.stop(timeout=0.5)
            self._clients.release(api)
        if started:
            deadline = time.monotonic() + self._extra_sync_wait
            for w in started:
                w.store.wait_synced(max(0.0, deadline - time.monotonic()))
            log.info("watching Secrets %s in %s", sorted(wanted), self._settings.config_namespace)
