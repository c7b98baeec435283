"""An owned Secret of the wrong type is replaced (type is immutable), a foreign one never."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from acr_helper.core.config import AcrConfig, NamespaceSelector
from acr_helper.core.desired import desired_state
from acr_helper.core.diff import plan as make_plan
from acr_helper.core.model import RegistryToken, Sensitive
from acr_helper.kube.apply import Applier
from acr_helper.kube.cache import ClusterCache
from acr_helper.kube.client import KubeClients
from acr_helper.kube.fakeserver import FakeKubeAPI
from acr_helper.settings import KubeSettings


def test_owned_secret_with_wrong_type_is_recreated(tmp_path):
    api = FakeKubeAPI().start()
    try:
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
        api.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                    "metadata": {"name": "acr-credential-helper", "namespace": "team-a",
                                 "labels": {"app.kubernetes.io/managed-by": "acr-helper"}},
                    "data": {"x": base64.b64encode(b"old").decode()}})
        kubeconfig = tmp_path / "kubeconfig"
        api.write_kubeconfig(str(kubeconfig))
        settings = KubeSettings(kubeconfig=str(kubeconfig), extra_secret_names=())
        clients = KubeClients(settings)
        cache = ClusterCache(clients, settings, on_change=lambda: None)
        cache.start()
        assert cache.wait_synced(10)
        view = cache.snapshot()
        cache.stop()
        now = datetime.now(UTC)
        tok = RegistryToken("r", "u", Sensitive("fake-token-not-real"), now + timedelta(hours=1), now, ("a.example",))
        cfg = AcrConfig(watch_namespaces=NamespaceSelector(include=("team-a",)))
        the_plan = make_plan(desired_state(view, cfg, {"r": tok}, now), view)
        assert [a.action for a in the_plan.actions if a.kind == "Secret"] == ["update"]
        results = Applier(clients, settings).apply(the_plan, view=view)
        assert all(r.ok for r in results), results
        live = api.get("secrets", "team-a", "acr-credential-helper")
        assert live["type"] == "kubernetes.io/dockerconfigjson"
        assert ".dockerconfigjson" in live["data"]
        clients.close()
    finally:
        api.stop()
