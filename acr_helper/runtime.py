"""The imperative shell: wiring, the one loop, signals, leader election. No business logic.

Every pass recomputes everything (controller-runtime style):

    wait (change | next due time | resync) -> debounce -> config -> refresh due tokens
    -> desired_state -> plan -> apply -> publish status

Watch threads only update their stores and set the wake flag (sample-controller style).
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from acr_helper.core.config import AcrConfig, ConfigResult, parse_config
from acr_helper.core.desired import desired_state, namespaces_in_scope
from acr_helper.core.diff import plan as make_plan
from acr_helper.core.dockercfg import adopt
from acr_helper.core.model import (
    DIGEST_ANNOTATION,
    DOCKERCONFIGJSON_KEY,
    TOKENS_ANNOTATION,
    ClusterView,
    Plan,
    sha256_hex,
)
from acr_helper.endpoints import EndpointServer, Health
from acr_helper.kube.apply import Applier
from acr_helper.kube.cache import ClusterCache
from acr_helper.kube.client import KubeClients
from acr_helper.kube.events import EventRecorder
from acr_helper.kube.leader import LeaderElector
from acr_helper.kube.secrets import read_secret_with
from acr_helper.metrics import Metrics, StatusSnapshot
from acr_helper.settings import Settings
from acr_helper.tokens import TokenCache, TokenError, TokenService

log = logging.getLogger("acr_helper")
_REQUEST_ID = re.compile(r",? ?request id [^,)]+")


def utcnow() -> datetime:
    return datetime.now(UTC)


# ----------------------------------------------------------------------------------------------
# logging


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, sort_keys=True)


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # client libraries are chatty at INFO/DEBUG (and the Alibaba SDKs may print request details)
    for noisy in ("urllib3", "kubernetes", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ----------------------------------------------------------------------------------------------
# the loop


@dataclass
class PassOutcome:
    ok: bool
    message: str = ""
    plan: Plan | None = None
    applied: int = 0
    failed: int = 0
    next_wakeup: datetime | None = None
    errors: list[str] = field(default_factory=list)


class Wake:
    """A wake flag with a debounce: a burst of events coalesces into one pass."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        fired = self._event.wait(max(0.0, timeout))
        return fired

    def clear(self) -> None:
        self._event.clear()


class Controller:
    """Owns the adapters and runs the loop. `run()` returns the process exit code."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: Metrics | None = None,
        environ: Mapping[str, str] | None = None,
        now: Callable[[], datetime] = utcnow,
        install_signal_handlers: bool = True,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.environ = dict(os.environ if environ is None else environ)
        self._now = now
        self._install_signals = install_signal_handlers
        self.health = Health(settings.server.heartbeat_timeout)
        self.wake = Wake()
        self._stop = threading.Event()
        self._stop_deadline: float | None = None
        self._signals = 0
        self._leader = not settings.runtime.leader_elect
        self._good: AcrConfig | None = None
        self._good_rv: str | None = None
        self._warned_rv: str | None = None
        self._config_valid = True
        self._config_gone_warned = False
        self._warned_notify = False
        #: "configmap" or "defaults" (no ConfigMap has been seen: nothing is removed under defaults)
        self._config_source = "defaults"
        self._last_plan_sig: tuple[tuple[str, ...], ...] | None = None
        self._repeat = 0
        self._conflicts_reported: set[tuple[str, str]] = set()
        self._first_pass_done = False
        self._last_warnings: tuple[str, ...] = ()
        self._failed_passes = 0
        self._adopt_tried = False  # per leadership term
        self._forget_tokens = False
        # built in start()
        self.clients: KubeClients | None = None
        self.cache: ClusterCache | None = None
        self.applier: Applier | None = None
        self.recorder: EventRecorder | None = None
        self.elector: LeaderElector | None = None
        self.tokens: TokenService | None = None
        self.token_cache: TokenCache | None = None
        self.server: EndpointServer | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        s = self.settings
        self.metrics.set_leader_source(lambda: self.elector.is_leader() if self.elector is not None else self._leader)
        self.server = EndpointServer(s.server.metrics_bind_address, self.metrics.registry, self.health)
        self.server.start()
        self.clients = KubeClients(s.kube, on_request=self.metrics.kube_request)
        self.cache = ClusterCache(
            self.clients, s.kube, on_change=self.wake.set, on_watch_restart=self.metrics.watch_restart
        )
        self.applier = Applier(self.clients, s.kube)
        self.recorder = EventRecorder(self.clients, namespace_fallback=s.kube.config_namespace)
        self.tokens = TokenService(s.tokens, secret_reader=self._read_secret, environ=self.environ)
        self.token_cache = TokenCache(self.tokens, s.tokens, clock=self._now)
        self.cache.start()
        if s.runtime.leader_elect and not s.runtime.once:
            identity = s.runtime.identity or f"{socket.gethostname()}_{os.getpid()}"
            self.elector = LeaderElector(
                self.clients,
                name=s.runtime.lease_name,
                namespace=s.runtime.lease_namespace,
                identity=identity,
                lease_duration=s.runtime.lease_duration,
                renew_deadline=s.runtime.renew_deadline,
                retry_period=s.runtime.retry_period,
                on_change=self._on_leader_change,
            )
            self.elector.start()
        else:
            self._leader = True
        self._publish()

    def _read_secret(self, name: str) -> Mapping[str, str] | None:
        assert self.cache is not None
        return self.cache.secret_data(name)

    def _on_leader_change(self, leader: bool) -> None:
        log.info("leadership %s", "acquired" if leader else "lost")
        self._leader = leader
        if leader:
            self._adopt_tried = False
        else:
            # another leader may rotate meanwhile: never come back with stale tokens; the next
            # term adopts what the Secrets hold then (cleared by the loop thread, which owns the cache)
            self._forget_tokens = True
        self.wake.set()

    def request_stop(self) -> None:
        if not self._stop.is_set():
            self._stop_deadline = time.monotonic() + self.settings.runtime.grace_period
            self._stop.set()
            self.wake.set()

    def _handle_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second signal %s: exiting at once", signum)
            os._exit(1)
        log.info("signal %s: finishing the current pass (grace %.0fs), then exiting",
                 signum, self.settings.runtime.grace_period)
        self.request_stop()

    def shutdown(self) -> None:
        if self.elector is not None:
            self.elector.stop(release=True)
        if self.cache is not None:
            self.cache.stop()
        if self.tokens is not None:
            self.tokens.close()
        if self.server is not None:
            self.server.stop()
        if self.clients is not None:
            self.clients.close()

    def _should_continue(self) -> bool:
        """Asked before every action: keeps the heartbeat fresh during a long apply, stops writing
        the moment leadership is lost, and after SIGTERM once the grace period is over."""
        self.health.beat()
        if not self.is_leader():
            return False
        if not self._stop.is_set():
            return True
        return self._stop_deadline is None or time.monotonic() < self._stop_deadline

    def is_leader(self) -> bool:
        if self.elector is not None:
            return self.elector.is_leader()
        return self._leader

    # ------------------------------------------------------------------ the loop
    def run(self) -> int:
        if self._install_signals and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle_signal)
            signal.signal(signal.SIGINT, self._handle_signal)
        try:
            self.start()
            return self._loop()
        finally:
            self.shutdown()

    def wait_synced(self) -> bool:
        assert self.cache is not None
        while not self._stop.is_set():
            self.health.beat()
            if self.cache.wait_synced(1.0):
                break
        else:
            return False
        # credentials Secrets (alibaba-addon-secret, accessKeySecretRef): give their first list a
        # moment, so the first pass does not fall through to the worker role while they load (a
        # Secret we may not read never syncs: it is not waited for beyond this)
        deadline = time.monotonic() + 5.0
        for name in self.cache.extra_secret_names():
            while not self.cache.secret_synced(name) and time.monotonic() < deadline and not self._stop.is_set():
                time.sleep(0.05)
        return True

    def _loop(self) -> int:
        rt = self.settings.runtime
        if not self.wait_synced():
            return 0
        log.info("caches synced")
        if rt.once:
            outcome = self.reconcile()
            return 0 if outcome.ok else 1
        next_due: datetime | None = None
        while not self._stop.is_set():
            self.wake.clear()
            outcome = self.reconcile()
            next_due = outcome.next_wakeup
            timeout = rt.resync_period
            if next_due is not None:
                timeout = min(timeout, max(0.0, (next_due - self._now()).total_seconds()))
            if self._repeat >= 2:  # the same non-empty plan again: back off instead of spinning
                timeout = max(timeout, min(60.0, 0.5 * 2 ** min(self._repeat, 7)))
            elif not outcome.ok:
                # a failed pass (an apply error, a throttled API) is retried soon, then less often
                self._failed_passes += 1
                timeout = min(timeout, min(30.0, 0.5 * 2 ** min(self._failed_passes, 6)))
            if outcome.ok:
                self._failed_passes = 0
            deadline = time.monotonic() + timeout
            while not self._stop.is_set():
                self.health.beat()
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.wake.wait(min(left, 5.0)):
                    if self._stop.is_set():
                        break
                    time.sleep(rt.debounce)  # let a burst coalesce
                    break
        log.info("stopped")
        return 0

    # ------------------------------------------------------------------ one pass
    def reconcile(self) -> PassOutcome:
        started = time.monotonic()
        try:
            outcome = self._reconcile()
        except Exception as exc:  # a bug or an unexpected adapter failure: log, count, keep going
            log.exception("reconcile pass failed: %s", type(exc).__name__)
            outcome = PassOutcome(ok=False, message=f"internal error: {type(exc).__name__}: {exc}")
        self.metrics.reconcile_duration.observe(time.monotonic() - started)
        self.metrics.reconcile_total.labels(result="success" if outcome.ok else "error").inc()
        self.health.beat()
        if not self._first_pass_done:
            self._first_pass_done = True
            self.health.set_ready(True)
        self._publish(success=outcome.ok)
        return outcome

    def _publish(self, success: bool = False) -> None:
        view_count = 0
        if self.cache is not None and self.cache.synced():
            view = self.cache.snapshot()
            view_count = sum(1 for s in view.secrets.values() if s.owned)
        prev = self.metrics.snapshot()
        self.metrics.publish(
            StatusSnapshot(
                # a follower has no current token view: its cache may be stale (it stops refreshing
                # when it loses the lease), so it exports no token series
                tokens=dict(self.token_cache.statuses()) if self.token_cache is not None and self.is_leader()
                else {},
                managed_secrets=view_count,
                config_valid=self._config_valid,
                leader=self.is_leader() if (self.elector is not None or self._leader) else False,
                last_pass_success_at=self._now() if success else prev.last_pass_success_at,
            )
        )

    def _config(self) -> AcrConfig | None:
        """The config in force: the ConfigMap's when valid, else the last good one."""
        assert self.cache is not None and self.recorder is not None
        s = self.settings.kube
        cm = self.cache.config_map()
        if cm is None:
            if self._good is not None:
                if not self._config_gone_warned:
                    log.warning("ConfigMap %s/%s was deleted: keeping the last configuration (nothing is "
                                "removed because of a deletion)", s.config_namespace, s.config_name)
                    self._config_gone_warned = True
                return self._good
            self._config_valid = True
            self._config_source = "defaults"
            self._good = parse_config(None, secret_name=s.secret_name).config
            log.warning("no ConfigMap %s/%s: using the add-on's defaults (namespace default, service account "
                        "default, Personal Edition in the cluster's region); under these defaults nothing is "
                        "deleted or removed, and pull Secrets already managed elsewhere are kept fresh, until a "
                        "ConfigMap exists", s.config_namespace, s.config_name)
            return self._good
        self._config_gone_warned = False
        if cm.resource_version == self._good_rv and self._good is not None:
            return self._good
        result: ConfigResult = parse_config(cm.data, secret_name=s.secret_name)
        if result.config is not None and not result.errors:
            self._config_valid = True
            if self._good_rv != cm.resource_version:
                for w in result.warnings:
                    if w.key == "notify-email":  # said once per process, not at every edit
                        if self._warned_notify:
                            continue
                        self._warned_notify = True
                    log.warning("config: %s", w)
            self._good, self._good_rv = result.config, cm.resource_version
            self._config_source = "configmap"
            return self._good
        self._config_valid = False
        if self._warned_rv != cm.resource_version:
            self._warned_rv = cm.resource_version
            msg = "; ".join(str(e) for e in result.errors)
            kept = "keeping the last good configuration" if self._good else "no valid configuration yet: no changes"
            log.error("ConfigMap %s/%s is invalid (%s): %s", s.config_namespace, s.config_name, kept, msg)
            self.recorder.event(kind="ConfigMap", namespace=cm.namespace, name=cm.name, uid=cm.uid,
                                type="Warning", reason="ConfigInvalid", message=f"{msg} ({kept})"[:1000])
        return self._good

    def _reconcile(self) -> PassOutcome:
        assert self.cache and self.applier and self.tokens and self.token_cache and self.recorder
        now = self._now()
        config = self._config()
        if config is None:
            return PassOutcome(ok=False, message="no valid configuration")
        refs = {r.access_key_secret_ref for r in config.effective_registries() if r.access_key_secret_ref}
        self.cache.set_extra_secret_names(sorted(set(self.settings.kube.extra_secret_names) | refs))
        if self._forget_tokens or not self.is_leader():
            # not leading (even for a moment): forget the tokens, and adopt again what the Secrets
            # hold when leading again (a lapse without a transition must not cause a rewrite wave)
            self._forget_tokens = False
            self.token_cache.clear()
            self._adopt_tried = False
        if not self.is_leader():
            return PassOutcome(ok=True, message="follower: caches warm, no writes")
        errors: list[str] = []
        try:
            region = self.tokens.default_region()
        except TokenError as exc:
            if all(r.region_id for r in config.effective_registries()):
                region = "unknown"  # every entry names its region: the cluster's is not needed
            else:
                log.error("cannot determine the cluster's region: %s", exc)
                self._event_on_config("Warning", "RegionUnknown", str(exc))
                return PassOutcome(ok=False, message=str(exc), errors=[str(exc)])
        registries = config.registry_keys(region)
        if not self._adopt_tried:
            self._adopt_tried = True
            self._adopt_tokens(self.cache.snapshot(), config, registries, rrsa_enabled=config.rrsa.enable, now=now)
        self.health.beat()
        report = self.token_cache.refresh(
            registries, threshold=config.expiring_threshold, rrsa_enabled=config.rrsa.enable, now=now
        )
        self.health.beat()
        self.metrics.token_results(report.results)
        for err in report.errors:
            errors.append(str(err))
            still = "the existing Secrets keep serving while their tokens are valid"
            log.warning("token refresh for %s failed (%s): %s", err.registry,
                        "will retry" if err.retryable else "needs operator action", err)
            # no request id in the Event, so repeats of the same failure aggregate into one Event
            message = _REQUEST_ID.sub("", f"{err}; {still}")
            self._event_on_config("Warning", "TokenRefreshFailed", message)
        view = self.cache.snapshot()
        kept: tuple[str, ...] = ()
        if self._config_source == "defaults":
            # no ConfigMap: nothing is removed, and what we already manage is kept fresh
            kept = tuple(ns for ns, secret in view.secrets.items() if secret.owned)
        desired = desired_state(view, config, report.tokens, now, expected_registries=tuple(registries),
                                also_refresh=kept)
        warnings = tuple(desired.warnings)
        if warnings != self._last_warnings:  # say each new situation once, not every pass
            for w in warnings:
                log.warning("desired state: %s", w)
            self._last_warnings = warnings
        allow_removals = self._config_source != "defaults"
        the_plan = make_plan(desired, view, allow_removals=allow_removals)
        for c in the_plan.conflicts:
            if (c.namespace, c.name) not in self._conflicts_reported:
                self._conflicts_reported.add((c.namespace, c.name))
                log.warning("conflict: %s %s/%s: %s", c.kind, c.namespace, c.name, c.reason)
                self.recorder.event(kind=c.kind, namespace=c.namespace, name=c.name, uid=None,
                                    type="Warning", reason="SecretConflict", message=c.reason)
        sig = tuple(tuple(a.describe().values()) for a in the_plan.actions)
        if the_plan.actions and sig == self._last_plan_sig:
            self._repeat += 1
            self.metrics.repeated_plans_total.inc()
        else:
            self._repeat = 0
        self._last_plan_sig = sig
        applied = failed = 0
        if the_plan.actions:
            results = self.applier.apply(the_plan, should_continue=self._should_continue, view=view)
            for r in results:
                a = r.action
                result = "skipped" if r.skipped else ("success" if r.ok else "error")
                self.metrics.apply_actions_total.labels(action=a.action, kind=a.kind, result=result).inc()
                if r.skipped:
                    continue
                if r.ok:
                    applied += 1
                    log.info("%s %s %s/%s: %s", a.action, a.kind, a.namespace, a.name, a.reason)
                else:
                    failed += 1
                    errors.append(f"{a.action} {a.kind} {a.namespace}/{a.name}: {r.message}")
                    log.warning("%s %s %s/%s failed (%s): %s", a.action, a.kind, a.namespace, a.name,
                                r.code, r.message)
                    if r.code not in (404,):
                        self.recorder.event(kind=a.kind, namespace=a.namespace, name=a.name, uid=None,
                                            type="Warning", reason="ApplyFailed",
                                            message=f"{a.action}: {r.message}"[:1000])
        nexts = [t for t in (desired.next_wakeup, report.next_wakeup) if t is not None]
        ok = not errors and self._config_valid
        if not report.tokens and registries:
            ok = False
        return PassOutcome(ok=ok, message="; ".join(errors), plan=the_plan, applied=applied, failed=failed,
                           next_wakeup=min(nexts) if nexts else None, errors=errors)

    def _adopt_tokens(
        self, view: ClusterView, config: AcrConfig, registries: Mapping[str, Any], *, rrsa_enabled: bool,
        now: datetime,
    ) -> None:
        """After a restart or a leader change, take over the tokens our Secrets already hold
        (read back from one of them), so they are not all rewritten with fresh tokens now.

        Anyone who may edit Secrets in some namespace can edit that namespace's copy, annotations
        included. So adoption happens only when EVERY managed Secret in scope holds the same
        content and the same tokens index, exactly as we wrote it (data digest == our digest
        annotation); the token cache then accepts only plausible tokens obtained with the
        credential identity configured now. Anything else: fetch fresh tokens (one rewrite)."""
        assert self.token_cache is not None and self.clients is not None
        known = self.token_cache.statuses()
        missing = {k for k in registries if k not in known}
        if not missing:
            return
        # Every copy the controller manages must agree (not only those in scope: under the
        # defaults others are kept fresh too), there must be at least two, and every namespace in
        # scope must already hold one (a new Secret would be made from the adopted content).
        scope = namespaces_in_scope(view, config)
        copies = [s for ns, s in view.secrets.items()
                  if s.owned and ns in view.namespaces and not view.namespaces[ns].terminating]
        if len(copies) < 2 or any(ns not in view.secrets for ns in scope):
            return  # (a namespace holding someone else's Secret with our name is never written)
        states = {(s.data_digest, s.annotations.get(DIGEST_ANNOTATION, ""), s.annotations.get(TOKENS_ANNOTATION, ""))
                  for s in copies}
        if len(states) != 1:
            log.info("managed Secrets differ (%d versions): fetching fresh tokens instead of adopting", len(states))
            return
        digest, recorded, index = states.pop()
        if not digest or digest != recorded or not index:
            return
        namespace, name = sorted(s.namespace for s in copies)[0], self.settings.kube.secret_name
        try:
            got = read_secret_with(self.clients, namespace, name)
        except Exception as exc:  # adoption is an optimisation: on any failure, just fetch anew
            log.info("could not read %s/%s to adopt its tokens (%s): fetching fresh ones", namespace, name,
                     type(exc).__name__)
            return
        if got is None:
            return
        data, annotations = got
        content = data.get(DOCKERCONFIGJSON_KEY, "")
        if sha256_hex(content.encode("utf-8")) != digest or annotations.get(TOKENS_ANNOTATION) != index:
            return  # changed since the snapshot: do not trust it
        tokens = adopt(content, index)
        taken = [k for k in sorted(missing & set(tokens))
                 if self.token_cache.adopt(k, registries[k], tokens[k], rrsa_enabled=rrsa_enabled, now=now)]
        if taken:
            log.info("adopted the tokens the managed Secrets hold for %s (no rewrite needed)", ", ".join(taken))

    def _event_on_config(self, type_: str, reason: str, message: str) -> None:
        assert self.cache is not None and self.recorder is not None
        s = self.settings.kube
        cm = self.cache.config_map()
        if cm is not None:
            self.recorder.event(kind="ConfigMap", namespace=cm.namespace, name=cm.name, uid=cm.uid,
                                type=type_, reason=reason, message=message[:1000])
        else:
            self.recorder.event(kind="Namespace", namespace="", name=s.config_namespace, uid=None,
                                type=type_, reason=reason, message=message[:1000])

