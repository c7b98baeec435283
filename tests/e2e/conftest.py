"""End-to-end harness: the real `acr-helper run` as a subprocess against the fake API server
and the Alibaba Cloud emulator, both in this test process, over real HTTP on loopback."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from acr_helper.kube.fakeserver import FakeKubeAPI
from acr_helper.tokens.emulator import AliyunEmulator

REGION = "cn-hangzhou"
SECRET = "acr-credential-helper"
EE = "cri-e2e0001"
EE_KEY = f"{EE}@{REGION}"  # the registry label: instance@region when regionId is set


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}; last={last!r}")


def configmap(data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "acr-configuration", "namespace": "kube-system"}, "data": data}


def ns(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def sa(namespace: str, name: str = "default", pulls: list[str] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount",
                           "metadata": {"name": name, "namespace": namespace}}
    if pulls is not None:
        obj["imagePullSecrets"] = [{"name": p} for p in pulls]
    return obj


class Cluster:
    """Convenience wrapper over FakeKubeAPI's direct store API."""

    def __init__(self, api: FakeKubeAPI) -> None:
        self.api = api

    def add_namespace(self, name: str, *, sas: tuple[str, ...] = ("default",), labels: dict[str, str] | None = None) -> None:
        self.api.create(ns(name, labels))
        for s in sas:
            self.api.create(sa(name, s))

    def secret(self, namespace: str, name: str = SECRET) -> dict[str, Any] | None:
        return self.api.get("secrets", namespace, name)

    def pulls(self, namespace: str, name: str = "default") -> list[str] | None:
        obj = self.api.get("serviceaccounts", namespace, name)
        if obj is None:
            return None
        return [p["name"] for p in obj.get("imagePullSecrets") or []]

    def set_config(self, data: dict[str, str]) -> None:
        cur = self.api.get("configmaps", "kube-system", "acr-configuration")
        if cur is None:
            self.api.create(configmap(data))
        else:
            cur = dict(cur)
            cur["data"] = data
            cur["metadata"] = {k: v for k, v in cur["metadata"].items() if k != "resourceVersion"}
            self.api.update(cur)

    def writes(self) -> list[Any]:
        return [r for r in self.api.requests if r.verb in ("create", "update", "patch", "delete")
                and r.resource in ("secrets", "serviceaccounts")]


@pytest.fixture
def cloud() -> Iterator[AliyunEmulator]:
    emu = AliyunEmulator(region=REGION).start()
    emu.add_instance(EE, region=REGION, name="e2e")
    yield emu
    emu.stop()


ROOT = pathlib.Path(__file__).resolve().parents[2]
#: the identity the shipped manifests bind their RBAC to
SA_USER = "system:serviceaccount:kube-system:acr-helper"
SA_GROUPS = ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated")


def shipped_rbac() -> list[dict[str, Any]]:
    """The Roles, ClusterRoles and bindings of manifests/rbac.yaml, exactly as shipped."""
    return [d for d in yaml.safe_load_all((ROOT / "manifests" / "rbac.yaml").read_text()) if isinstance(d, dict)]


def bind_user(api: FakeKubeAPI, user: str) -> None:
    """Bind another test identity to the shipped roles (same rules, another subject), so two
    replicas can be told apart in the request log."""
    extra = []
    for doc in shipped_rbac():
        if doc.get("kind") in ("RoleBinding", "ClusterRoleBinding"):
            doc = json.loads(json.dumps(doc))
            doc["metadata"]["name"] += f"-{user}"
            doc["subjects"] = [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]
            extra.append(doc)
    api.enable_rbac(extra)


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The fake API server, enforcing the RBAC shipped in manifests/: any request the controller
    makes that those rules deny fails the test (issue 5: the shipped RBAC is enough)."""
    api = FakeKubeAPI(bookmark_interval=2.0).start()
    api.create(ns("kube-system", None))
    api.enable_rbac(shipped_rbac())
    yield Cluster(api)
    denied = [(r.verb, r.resource, r.namespace, r.name, r.user, r.field_selector) for r in api.denied]
    api.stop()
    if request.node.get_closest_marker("rbac_denials_expected") is None:
        assert not denied, f"requests denied by the shipped RBAC: {denied}"


class Controller:
    def __init__(self, proc: subprocess.Popen[str], metrics_port: int, log_path: pathlib.Path,
                 log_file: Any = None) -> None:
        self.proc = proc
        self.log_file = log_file
        self.metrics_port = metrics_port
        self.log_path = log_path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:  # type: ignore[attr-defined]
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str, **labels: str) -> float | None:
        from prometheus_client.parser import text_string_to_metric_families

        code, body = self.get("/metrics")
        if code != 200:
            return None
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return None

    def ready(self) -> bool:
        return self.get("/readyz")[0] == 200

    def logs(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.log_file is not None and not self.log_file.closed:
            self.log_file.close()
        return self.proc.returncode


@pytest.fixture
def run_controller(cluster: Cluster, cloud: AliyunEmulator, tmp_path: pathlib.Path) -> Iterator[Callable[..., Controller]]:
    started: list[Controller] = []

    def start(*extra: str, user: str | None = None, env: dict[str, str] | None = None, wait_ready: bool = True,
              region: str | None = REGION, metadata: str | None = None) -> Controller:
        idx = len(started)
        kubeconfig = tmp_path / f"kubeconfig-{idx}"
        if user:
            bind_user(cluster.api, user)
            cluster.api.write_kubeconfig(str(kubeconfig), user=user, token=f"token-{user}")
        else:
            cluster.api.write_kubeconfig(str(kubeconfig), user=SA_USER, token=f"token-acr-helper-{idx}",
                                         groups=SA_GROUPS)
        port = free_port()
        log_path = tmp_path / f"controller-{idx}.log"
        child_env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")
                     and not k.startswith("ALIBABA_CLOUD_") and not k.startswith("ACR_HELPER_")}
        child_env.update(env or {})
        cmd = [sys.executable, "-m", "acr_helper", "run", "--kubeconfig", str(kubeconfig),
               *(("--region", region) if region else ()), "--cr-endpoint", cloud.url, "--sts-endpoint", cloud.url,
               "--ecs-metadata-endpoint", metadata or cloud.url, "--metrics-bind-address", f"127.0.0.1:{port}",
               "--kube-qps", "500", "--kube-burst", "1000", "--log-format", "json", "--log-level", "debug",
               *extra]
        fh = open(log_path, "w")
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=child_env, text=True)
        c = Controller(proc, port, log_path, fh)
        started.append(c)
        if wait_ready and "--once" not in extra:
            try:
                wait_for(lambda: c.ready() or proc.poll() is not None, 30, what="controller ready")
            except AssertionError:
                raise AssertionError("controller not ready:\n" + c.logs()[-5000:]) from None
            assert proc.poll() is None, c.logs()[-5000:]
        return c

    yield start
    for c in started:
        c.stop()


def load_yaml(text: str) -> Any:
    return yaml.safe_load(text)


def decode_auths(secret: dict[str, Any]) -> dict[str, Any]:
    import base64

    return json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
