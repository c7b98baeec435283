"""`acr-helper sandbox`: the whole controller against local fakes, on loopback.

Starts the project's fake Kubernetes API server and the Alibaba Cloud emulator, seeds Namespaces,
ServiceAccounts and the acr-configuration ConfigMap from `examples/`, writes a kubeconfig so
`kubectl --kubeconfig .sandbox/kubeconfig get secrets -A` can look, and runs the real controller
(the same code as `acr-helper run`) against them. The worker-role credential comes from the
emulator's metadata service, exactly as on an ACK node.
"""

from __future__ import annotations

import base64
import json
import logging
import pathlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import yaml

from acr_helper.core.model import (
    DEFAULT_SECRET_NAME,
    DOCKERCONFIGJSON_KEY,
    EXPIRY_ANNOTATION,
    MANAGED_BY_LABEL,
    REGISTRIES_ANNOTATION,
)
from acr_helper.kube.fakeserver import FakeKubeAPI
from acr_helper.metrics import Metrics
from acr_helper.runtime import Controller
from acr_helper.settings import KubeSettings, RuntimeSettings, ServerSettings, Settings, TokenSettings
from acr_helper.tokens.emulator import AliyunEmulator

log = logging.getLogger("acr_helper.sandbox")

SANDBOX_REGION = "cn-hangzhou"
#: the Enterprise Edition instance the bundled example configures
SANDBOX_INSTANCES = (("cri-sandbox0001", "sandbox"),)
_STRIP_META = ("resourceVersion", "uid", "creationTimestamp", "managedFields", "selfLink", "generation")


def bundled_example(name: str) -> str:
    return resources.files("acr_helper").joinpath("examples", name).read_text()


def iter_objects(text: str) -> Iterable[dict[str, Any]]:
    """Objects from multi-document YAML; `kind: List` documents are flattened."""
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict):
            continue
        if doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
            yield from (i for i in doc["items"] if isinstance(i, dict))
        else:
            yield doc


_RESOURCES = {"Namespace": "namespaces", "ServiceAccount": "serviceaccounts", "Secret": "secrets",
              "ConfigMap": "configmaps"}


def _clean(obj: dict[str, Any]) -> dict[str, Any]:
    obj = json.loads(json.dumps(obj))
    meta = obj.setdefault("metadata", {})
    for key in _STRIP_META:
        meta.pop(key, None)
    obj.pop("status", None)
    obj.setdefault("apiVersion", "v1")
    return obj


@dataclass
class SandboxOptions:
    workdir: pathlib.Path = pathlib.Path(".sandbox")
    config_text: str | None = None
    state_text: str | None = None
    api_port: int = 0
    metrics_bind_address: str = "127.0.0.1:0"
    token_lifetime: float = 3600.0
    resync_period: float = 600.0


class Sandbox:
    def __init__(self, options: SandboxOptions | None = None) -> None:
        self.options = options or SandboxOptions()
        self.api: FakeKubeAPI | None = None
        self.emulator: AliyunEmulator | None = None
        self.kubeconfig: pathlib.Path | None = None
        self.controller: Controller | None = None
        self.metrics = Metrics()
        self._thread: threading.Thread | None = None
        self.exit_code: int | None = None

    # -------------------------------------------------------------- fakes
    def start_fakes(self) -> None:
        o = self.options
        # like a real cluster, every new namespace gets its `default` ServiceAccount
        self.api = FakeKubeAPI(default_service_accounts=True).start(port=o.api_port)
        self.emulator = AliyunEmulator(region=SANDBOX_REGION, token_lifetime=o.token_lifetime).start()
        for instance_id, name in SANDBOX_INSTANCES:
            self.emulator.add_instance(instance_id, region=SANDBOX_REGION, name=name)
        o.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig = o.workdir / "kubeconfig"
        self.api.write_kubeconfig(str(self.kubeconfig))
        self.seed(o.state_text if o.state_text is not None else bundled_example("cluster-state.yaml"))
        self.seed(o.config_text if o.config_text is not None else bundled_example("acr-configuration.yaml"))

    def seed(self, text: str) -> int:
        assert self.api is not None
        objs = [_clean(o) for o in iter_objects(text) if o.get("kind") in _RESOURCES]
        objs.sort(key=lambda o: o["kind"] != "Namespace")
        count = 0
        for obj in objs:
            meta = obj["metadata"]
            ns = meta.get("namespace")
            if ns and self.api.get("namespaces", None, ns) is None:
                self.api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            resource = _RESOURCES[obj["kind"]]
            if self.api.get(resource, ns, meta["name"]) is None:
                self.api.create(obj)
            else:  # e.g. the `default` ServiceAccount the namespace got on creation
                self.api.update(obj)
            count += 1
        return count

    def settings(self, *, once: bool) -> Settings:
        assert self.emulator is not None and self.kubeconfig is not None
        url = self.emulator.url
        return Settings(
            kube=KubeSettings(kubeconfig=str(self.kubeconfig), qps=200.0, burst=400),
            tokens=TokenSettings(region=SANDBOX_REGION, cr_endpoint=url, sts_endpoint=url,
                                 ecs_metadata_endpoint=url),
            runtime=RuntimeSettings(once=once, resync_period=self.options.resync_period, debounce=0.1),
            server=ServerSettings(metrics_bind_address=self.options.metrics_bind_address),
        )

    # -------------------------------------------------------------- the controller
    def start_controller(self, *, once: bool = False) -> None:
        self.controller = Controller(self.settings(once=once), metrics=self.metrics, environ={},
                                     install_signal_handlers=False)

        def target() -> None:
            assert self.controller is not None
            self.exit_code = self.controller.run()

        self._thread = threading.Thread(target=target, name="controller", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        assert self._thread is not None
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.request_stop()
        if self._thread is not None:
            self._thread.join(30)
        if self.api is not None:
            self.api.stop()
        if self.emulator is not None:
            self.emulator.stop()

    @property
    def metrics_url(self) -> str | None:
        c = self.controller
        return c.server.url if c is not None and c.server is not None else None

    # -------------------------------------------------------------- reports (never a password)
    def secrets(self, secret_name: str = DEFAULT_SECRET_NAME) -> list[dict[str, Any]]:
        assert self.api is not None
        out = []
        for s in self.api.list("secrets"):
            if s["metadata"]["name"] != secret_name:
                continue
            meta = s["metadata"]
            ann = meta.get("annotations") or {}
            domains: list[str] = []
            raw = (s.get("data") or {}).get(DOCKERCONFIGJSON_KEY)
            if raw:
                try:
                    domains = sorted(json.loads(base64.b64decode(raw)).get("auths", {}))
                except ValueError:
                    domains = ["<unreadable>"]
            out.append({
                "namespace": meta["namespace"],
                "managed": (meta.get("labels") or {}).get(MANAGED_BY_LABEL) == "acr-helper",
                "registries": ann.get(REGISTRIES_ANNOTATION, ""),
                "expires": ann.get(EXPIRY_ANNOTATION, ""),
                "domains": domains,
            })
        return sorted(out, key=lambda r: r["namespace"])

    def service_accounts(self) -> list[dict[str, Any]]:
        assert self.api is not None
        out = []
        for sa in self.api.list("serviceaccounts"):
            pulls = [p.get("name", "") for p in sa.get("imagePullSecrets") or []]
            out.append({"namespace": sa["metadata"]["namespace"], "name": sa["metadata"]["name"],
                        "imagePullSecrets": pulls})
        return sorted(out, key=lambda r: (r["namespace"], r["name"]))

    def report(self) -> str:
        lines = ["Secrets named acr-credential-helper:"]
        rows = self.secrets()
        if not rows:
            lines.append("  (none)")
        for r in rows:
            owner = "managed" if r["managed"] else "NOT OURS (left alone)"
            lines.append(f"  {r['namespace']:<16} {owner:<22} registries={r['registries'] or '-'} "
                         f"expires={r['expires'] or '-'}")
            for d in r["domains"]:
                lines.append(f"  {'':<16}   auths: {d}")
        lines.append("ServiceAccounts:")
        for sa in self.service_accounts():
            lines.append(f"  {sa['namespace']:<16} {sa['name']:<12} imagePullSecrets="
                         f"{','.join(sa['imagePullSecrets']) or '-'}")
        return "\n".join(lines)

    def summary_line(self, *, countdown: bool = True) -> str:
        """Managed Secrets, config validity, and per registry its expiry (or failures)."""
        snap = self.metrics.snapshot()
        parts = [f"managed secrets={snap.managed_secrets}", f"config valid={'yes' if snap.config_valid else 'NO'}"]
        now = time.time()
        for reg, st in sorted(snap.tokens.items()):
            if st.token is not None:
                left = f"expires in {int(st.token.expires_at.timestamp() - now)}s" if countdown else "token ok"
                parts.append(f"{reg}: {left}")
            if st.failures:
                parts.append(f"{reg}: {st.failures} failures")
        return ", ".join(parts)


def with_options(base: SandboxOptions, **changes: Any) -> SandboxOptions:
    return replace(base, **changes)
