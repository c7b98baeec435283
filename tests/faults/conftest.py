"""Fault-suite harness: the e2e fixtures, an in-process controller with short timeouts, and a
per-test secret-leak scan.

Every test that starts a controller (subprocess through `faults_run`, or in-process through
`run_inproc`) is scanned at teardown, while its controllers are still alive: every secret the
emulator issued (registry passwords and their base64 `auth` form, STS AccessKey secrets and
security tokens, metadata tokens) and every configured AccessKey secret must be absent from the
controller logs, from every Event object on the fake API server and from `/metrics`.
"""

from __future__ import annotations

import base64
import json
import logging
import pathlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from acr_helper.metrics import Metrics
from acr_helper.runtime import Controller as RuntimeController
from acr_helper.runtime import JsonFormatter
from acr_helper.settings import KubeSettings, RuntimeSettings, ServerSettings, Settings, TokenSettings
from acr_helper.tokens.emulator import AliyunEmulator
from tests.e2e import conftest as e2e
from tests.e2e.conftest import EE, REGION, SECRET, Cluster, Controller, decode_auths, wait_for

# the e2e fixtures, for this directory
cloud = e2e.cloud
cluster = e2e.cluster
run_controller = e2e.run_controller

#: AccessKey secrets our tests put into ConfigMaps / Secrets (besides the emulator's own table)
CONFIGURED_SECRETS: set[str] = {"fake-secret-not-real", "fake-secret-ak2-not-real"}

REGISTRY_INFO_EE_PE = f"""\
- instanceId: "{EE}"
  regionId: "{REGION}"
- instanceId: ""
"""
BASE: dict[str, str] = {
    "service-account": "default",
    "watch-namespace": "all,!kube-system",
    "expiring-threshold": "15m",
    "acr-registry-info": REGISTRY_INFO_EE_PE,
}
EE_DOMAINS = (f"e2e-registry.{REGION}.cr.aliyuncs.com", f"e2e-registry-vpc.{REGION}.cr.aliyuncs.com")
PE_DOMAIN = f"registry.{REGION}.aliyuncs.com"


# ----------------------------------------------------------------------------------------------
# secret-leak scanning


def emulator_secrets(emu: AliyunEmulator) -> set[str]:
    """Every secret value the emulator knows: issued registry passwords (+ their `auth` form),
    STS/IMDS AccessKey secrets and security tokens, metadata tokens, configured AccessKey
    secrets. Reads the emulator's private tables (there is no public accessor)."""
    out: set[str] = set()
    with emu._lock:
        for password, login in emu._logins.items():
            out.add(password)
            out.add(base64.b64encode(f"{login.username}:{password}".encode()).decode())
        for key in emu._sts_keys.values():
            out.add(key.secret)
            out.add(key.security_token)
        out.update(emu._imds_tokens)
        out.update(emu._access_keys.values())
    return {s for s in out if s and len(s) >= 8}


@dataclass
class LeakStats:
    """Session totals, so the final summary test can prove the scan looked at something."""

    tests: int = 0
    secrets: int = 0
    bytes_scanned: int = 0
    sources: set[str] = field(default_factory=set)


STATS = LeakStats()


def scan_for_leaks(secrets: set[str], texts: dict[str, str]) -> list[str]:
    """`where: secret-prefix` for each secret found in a text (never the whole secret)."""
    found = []
    for where, text in texts.items():
        for secret in secrets:
            if secret in text:
                found.append(f"{where}: {secret[:4]}…")
    return found


def scan_cluster_and_cloud(cluster: Cluster, cloud: AliyunEmulator, texts: dict[str, str]) -> None:
    events = cluster.api.list("events") + cluster.api.list("events.k8s.io/events")
    texts = dict(texts)
    texts["events"] = json.dumps(events, sort_keys=True)
    secrets = emulator_secrets(cloud) | CONFIGURED_SECRETS
    STATS.tests += 1
    STATS.secrets += len(secrets)
    STATS.bytes_scanned += sum(len(t) for t in texts.values())
    STATS.sources.update(k.split("[")[0] for k in texts)
    leaks = scan_for_leaks(secrets, texts)
    assert not leaks, f"secret values leaked: {leaks}"


@pytest.fixture
def faults_run(run_controller: Callable[..., Controller], cluster: Cluster,
               cloud: AliyunEmulator) -> Iterator[Callable[..., Controller]]:
    """`run_controller` (the e2e subprocess) that remembers its controllers and, at teardown
    while they still run, scans their logs and /metrics, and the cluster's Events, for secrets."""
    started: list[Controller] = []

    def start(*extra: str, **kwargs: Any) -> Controller:
        c = run_controller(*extra, **kwargs)
        started.append(c)
        return c

    yield start
    texts: dict[str, str] = {}
    for i, c in enumerate(started):
        if c.proc.poll() is None:
            code, body = c.get("/metrics")
            if code == 200:
                texts[f"metrics[{i}]"] = body
    for i, c in enumerate(started):
        c.stop()
        texts[f"logs[{i}]"] = c.logs()
    scan_cluster_and_cloud(cluster, cloud, texts)


# ----------------------------------------------------------------------------------------------
# the controller in-process (short token timeouts and backoff, which the CLI does not expose)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        # the emulator and the fake API server run in this process too: not the controller's logs
        if record.name.startswith(("acr_helper.tokens.emulator", "acr_helper.kube.fakeserver")):
            return
        try:
            self.lines.append(self.format(record))
            self.records.append(record)
        except Exception:  # pragma: no cover
            self.handleError(record)


class InProc:
    """`acr_helper.runtime.Controller` running in a thread of the test process."""

    def __init__(self, ctl: RuntimeController, metrics: Metrics, capture: _Capture) -> None:
        self.ctl = ctl
        self.metrics = metrics
        self.capture = capture
        self.thread = threading.Thread(target=self._run, name="controller-under-test", daemon=True)
        self.rc: int | None = None

    def _run(self) -> None:
        self.rc = self.ctl.run()

    def metrics_text(self) -> str:
        return generate_latest(self.metrics.registry).decode()

    def metric(self, name: str, **labels: str) -> float | None:
        for fam in text_string_to_metric_families(self.metrics_text()):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        return None

    def ready(self) -> bool:
        return self.ctl.health.ready()[0]

    def logs(self) -> str:
        return "\n".join(self.capture.lines)

    def stop(self) -> None:
        self.ctl.request_stop()
        self.thread.join(30)


@pytest.fixture
def run_inproc(cluster: Cluster, cloud: AliyunEmulator,
               tmp_path: pathlib.Path) -> Iterator[Callable[..., InProc]]:
    started: list[InProc] = []
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)

    def start(*, read_timeout: float = 1.0, backoff_initial: float = 0.3, backoff_max: float = 2.0,
              resync: float = 600.0, wait_ready: bool = True) -> InProc:
        kubeconfig = tmp_path / f"kubeconfig-inproc-{len(started)}"
        # the identity the shipped RBAC binds (enforced by the e2e `cluster` fixture)
        cluster.api.write_kubeconfig(str(kubeconfig), user=e2e.SA_USER, token=f"token-inproc-{len(started)}",
                                     groups=e2e.SA_GROUPS)
        settings = Settings(
            kube=KubeSettings(kubeconfig=str(kubeconfig), qps=500, burst=1000),
            tokens=TokenSettings(region=REGION, cr_endpoint=cloud.url, sts_endpoint=cloud.url,
                                 ecs_metadata_endpoint=cloud.url, connect_timeout=1.0,
                                 read_timeout=read_timeout, backoff_initial=backoff_initial,
                                 backoff_max=backoff_max),
            runtime=RuntimeSettings(resync_period=resync, debounce=0.05),
            server=ServerSettings(metrics_bind_address="0"),
        )
        metrics = Metrics()
        ctl = RuntimeController(settings, metrics=metrics, environ={}, install_signal_handlers=False)
        inproc = InProc(ctl, metrics, capture)
        started.append(inproc)
        inproc.thread.start()
        if wait_ready:
            wait_for(lambda: inproc.ready() or not inproc.thread.is_alive(), 30, what="in-process ready")
            assert inproc.thread.is_alive(), inproc.logs()[-5000:]
        return inproc

    yield start
    texts: dict[str, str] = {}
    for i, p in enumerate(started):
        texts[f"metrics[{i}]"] = p.metrics_text()
    for p in started:
        p.stop()
    root.removeHandler(capture)
    root.setLevel(old_level)
    texts["logs"] = "\n".join(capture.lines)
    for rec in capture.records:  # exception text too (formatted by JsonFormatter into lines)
        if rec.exc_info:
            texts["logs"] += "\n" + logging.Formatter().formatException(rec.exc_info)
    scan_cluster_and_cloud(cluster, cloud, texts)


# ----------------------------------------------------------------------------------------------
# helpers shared by the fault tests


def managed(secret: dict[str, Any] | None) -> bool:
    return bool(secret) and (secret["metadata"].get("labels") or {}).get(
        "app.kubernetes.io/managed-by") == "acr-helper"


def converged(cluster: Cluster, namespace: str, sas: tuple[str, ...] = ("default",)) -> Callable[[], bool]:
    def check() -> bool:
        if not managed(cluster.secret(namespace)):
            return False
        return all(SECRET in (cluster.pulls(namespace, n) or []) for n in sas)
    return check


def all_converged(cluster: Cluster, namespaces: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        return all(converged(cluster, n)() for n in namespaces)
    return check


def valid_logins(cloud: AliyunEmulator, secret: dict[str, Any], domains: tuple[str, ...]) -> bool:
    auths = decode_auths(secret)
    if set(domains) - set(auths):
        return False
    return all(cloud.is_valid_registry_login(auths[d]["username"], auths[d]["password"]) for d in domains)
