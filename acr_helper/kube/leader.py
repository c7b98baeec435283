"""Leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm, simplified).

* A candidate takes the lease when it does not exist (create), when its holder is empty
  (released), or when the lease record has not changed for `lease_duration` seconds as observed
  on OUR monotonic clock (no trust in other nodes' wall clocks, as client-go).
* Every write is an update with the resourceVersion precondition; a 409 means someone else won.
* The leader renews every `retry_period`; if it cannot renew for `renew_deadline` it steps down
  (and `is_leader()` turns False by itself even before the thread notices).
* stop(release=True) empties holderIdentity and sets leaseDurationSeconds=1 so a follower takes
  over at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from acr_helper.kube.client import TRANSPORT_ERRORS, KubeClients, error_message

log = logging.getLogger(__name__)


def _micro_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        clients: KubeClients,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float,
        renew_deadline: float,
        retry_period: float,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._clients = clients
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = float(lease_duration)
        self.renew_deadline = float(renew_deadline)
        self.retry_period = float(retry_period)
        self._on_change = on_change
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._leader = False
        self._last_renew = 0.0  # monotonic time of our last successful acquire/renew
        # what we last saw of the lease, and when (our clock)
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._observed_rv = ""
        self.transitions = 0

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    # -- public ------------------------------------------------------------------------------

    def is_leader(self) -> bool:
        with self._lock:
            return self._leader and self._clock() - self._last_renew < self.renew_deadline

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name=f"leader-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(2.0, self.retry_period + 1.0))
        if release:
            self.release()
        self._set_leader(False)

    # -- one attempt -------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One round: True if we hold the lease afterwards. Never raises."""
        try:
            return self._try()
        except ApiException as exc:
            level = logging.WARNING if exc.status not in (409,) else logging.DEBUG
            log.log(level, "lease %s/%s: %s", self.namespace, self.name, error_message(exc))
        except TRANSPORT_ERRORS as exc:
            log.warning("lease %s/%s: transport error %s", self.namespace, self.name, type(exc).__name__)
        except Exception:
            log.exception("lease %s/%s: unexpected failure", self.namespace, self.name)
        return False

    def _try(self) -> bool:
        now_wall = _micro_time(self._wall())
        try:
            lease = self._clients.request("GET", self.path)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": max(1, round(self.lease_duration)),
                    "acquireTime": now_wall,
                    "renewTime": now_wall,
                    "leaseTransitions": 0,
                },
            }
            self._clients.request(
                "POST", f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases", body=body
            )
            self._renewed()
            return True
        spec = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity") or ""
        record = (
            holder,
            spec.get("renewTime"),
            spec.get("acquireTime"),
            spec.get("leaseDurationSeconds"),
            spec.get("leaseTransitions"),
        )
        now = self._clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and now - self._observed_at < duration:
            self._set_leader(False)
            return False  # someone else holds a live lease
        if holder != self.identity:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = now_wall
        spec["holderIdentity"] = self.identity
        spec["renewTime"] = now_wall
        spec["leaseDurationSeconds"] = max(1, round(self.lease_duration))
        lease["spec"] = spec
        lease.setdefault("apiVersion", "coordination.k8s.io/v1")
        lease.setdefault("kind", "Lease")
        self._clients.request("PUT", self.path, body=lease)  # resourceVersion precondition
        self._renewed()
        return True

    def _renewed(self) -> None:
        with self._lock:
            self._last_renew = self._clock()
        self._set_leader(True)

    def release(self) -> bool:
        """Give the lease up if we hold it. Never raises."""
        try:
            lease = self._clients.request("GET", self.path)
            spec = dict(lease.get("spec") or {})
            if spec.get("holderIdentity") != self.identity:
                return False
            now_wall = _micro_time(self._wall())
            spec.update({"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now_wall})
            lease["spec"] = spec
            self._clients.request("PUT", self.path, body=lease)
            log.info("released lease %s/%s", self.namespace, self.name)
            return True
        except Exception as exc:
            detail = error_message(exc) if isinstance(exc, ApiException) else type(exc).__name__
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, detail)
            return False

    # -- the loop ----------------------------------------------------------------------------

    def _set_leader(self, leader: bool) -> None:
        with self._lock:
            changed = leader != self._leader
            self._leader = leader
            if changed:
                self.transitions += 1
        if changed:
            log.info("lease %s/%s: %s is %s", self.namespace, self.name, self.identity,
                     "the leader" if leader else "no longer the leader")
            if self._on_change is not None:
                try:
                    self._on_change(leader)
                except Exception:
                    log.exception("leader on_change hook failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self.try_acquire_or_renew()
            if not ok:
                with self._lock:
                    was_leader = self._leader
                    expired = self._clock() - self._last_renew >= self.renew_deadline
                if was_leader and expired:
                    log.warning("lease %s/%s: could not renew within %.1fs; stepping down",
                                self.namespace, self.name, self.renew_deadline)
                    self._set_leader(False)
            if self._stop.wait(self.retry_period):
                break
