"""Prometheus metrics, on the project's own registry.

Counters and the histogram are updated by the runtime as things happen. Everything that describes
*state* (token expiry, managed Secrets, config validity, leadership) is produced by a custom
collector from the latest published `StatusSnapshot` at scrape time, cert-manager style: expiry is
exported as an absolute Unix timestamp, so alerts compute `metric - time()`.

No label carries a namespace: cardinality stays bounded by the number of registries.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from acr_helper import __version__
from acr_helper.core.policy import TokenStatus


@dataclass(frozen=True)
class StatusSnapshot:
    """What the runtime publishes after each pass (read at scrape time)."""

    tokens: Mapping[str, TokenStatus] = field(default_factory=dict)
    managed_secrets: int = 0
    config_valid: bool = True
    leader: bool = False
    last_pass_success_at: datetime | None = None


class _StateCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snap = self._metrics.snapshot()
        expiry = GaugeMetricFamily(
            "acr_helper_token_expiration_timestamp_seconds",
            "Unix time at which the current registry token expires.",
            labels=["registry"],
        )
        last = GaugeMetricFamily(
            "acr_helper_token_last_refresh_timestamp_seconds",
            "Unix time of the last successful token refresh.",
            labels=["registry"],
        )
        failures = GaugeMetricFamily(
            "acr_helper_token_refresh_failures",
            "Consecutive failed refresh attempts since the last success (0 when healthy).",
            labels=["registry"],
        )
        retry = GaugeMetricFamily(
            "acr_helper_token_next_retry_timestamp_seconds",
            "Unix time of the next refresh attempt while backing off after failures.",
            labels=["registry"],
        )
        for registry, status in sorted(snap.tokens.items()):
            if status.token is not None:
                expiry.add_metric([registry], status.token.expires_at.timestamp())
            if status.last_success_at is not None:
                last.add_metric([registry], status.last_success_at.timestamp())
            failures.add_metric([registry], float(status.failures))
            if status.retry_at is not None and status.failures:
                retry.add_metric([registry], status.retry_at.timestamp())
        yield expiry
        yield last
        yield failures
        yield retry
        yield GaugeMetricFamily(
            "acr_helper_managed_secrets", "Pull Secrets currently managed (carrying our label).",
            value=float(snap.managed_secrets),
        )
        yield GaugeMetricFamily(
            "acr_helper_config_valid",
            "1 when the acr-configuration ConfigMap in force parsed without errors, else 0.",
            value=1.0 if snap.config_valid else 0.0,
        )
        leader = self._metrics.leader_now(snap)
        yield GaugeMetricFamily(
            "acr_helper_leader", "1 when this replica holds the leader lease (or runs without election).",
            value=1.0 if leader else 0.0,
        )
        if snap.last_pass_success_at is not None:
            yield GaugeMetricFamily(
                "acr_helper_last_successful_reconcile_timestamp_seconds",
                "Unix time at which the last reconcile pass completed without error.",
                value=snap.last_pass_success_at.timestamp(),
            )
        info = GaugeMetricFamily("acr_helper_build_info", "Build information.", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info


class Metrics:
    """All of acr-helper's metrics, on a private CollectorRegistry (tests stay isolated)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        self._snapshot = StatusSnapshot()
        self._leader_source: Callable[[], bool] | None = None
        self.token_refresh_total = Counter(
            "acr_helper_token_refresh_total",
            "Token refresh attempts by registry and result (success|error).",
            ["registry", "result"],
            registry=self.registry,
        )
        self.reconcile_total = Counter(
            "acr_helper_reconcile_total",
            "Reconcile passes by result (success|error).",
            ["result"],
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "acr_helper_reconcile_duration_seconds",
            "Duration of a full reconcile pass (refresh, desired state, plan, apply).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.kube_requests_total = Counter(
            "acr_helper_kube_requests_total",
            "Kubernetes API requests by verb, resource and HTTP status code (0: transport error).",
            ["verb", "resource", "code"],
            registry=self.registry,
        )
        self.watch_restarts_total = Counter(
            "acr_helper_watch_restarts_total",
            "List/watch restarts by resource and reason (gone, stream-ended, transport-error, ...).",
            ["resource", "reason"],
            registry=self.registry,
        )
        self.apply_actions_total = Counter(
            "acr_helper_apply_actions_total",
            "Executed plan actions by action (create|update|delete|add|remove), kind and result.",
            ["action", "kind", "result"],
            registry=self.registry,
        )
        self.repeated_plans_total = Counter(
            "acr_helper_repeated_plans_total",
            "Passes that produced the same non-empty plan as the previous pass (a sign of a fight).",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self))

    # ---- called by the runtime / adapters' callbacks
    def publish(self, snapshot: StatusSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    def snapshot(self) -> StatusSnapshot:
        with self._lock:
            return self._snapshot

    def set_leader_source(self, source: Callable[[], bool]) -> None:
        """Read leadership live at scrape time (a lease can lapse between two passes)."""
        self._leader_source = source

    def leader_now(self, snap: StatusSnapshot) -> bool:
        if self._leader_source is not None:
            try:
                return bool(self._leader_source())
            except Exception:  # a scrape never fails because of this
                return snap.leader
        return snap.leader

    def kube_request(self, verb: str, resource: str, code: int) -> None:
        self.kube_requests_total.labels(verb=verb, resource=resource, code=str(code)).inc()

    def watch_restart(self, resource: str, reason: str) -> None:
        self.watch_restarts_total.labels(resource=resource, reason=reason).inc()

    def token_results(self, results: Iterable[tuple[str, str]]) -> None:
        for registry, result in results:
            self.token_refresh_total.labels(registry=registry, result=result).inc()
