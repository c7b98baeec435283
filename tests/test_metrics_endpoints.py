from __future__ import annotations

import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from acr_helper.core.model import RegistryToken, Sensitive
from acr_helper.core.policy import TokenStatus
from acr_helper.endpoints import EndpointServer, Health, parse_bind_address
from acr_helper.metrics import Metrics, StatusSnapshot

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    out = {}
    for fam in text_string_to_metric_families(generate_latest(metrics.registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_expiry_is_an_absolute_timestamp_read_at_scrape_time():
    m = Metrics()
    tok = RegistryToken("cri-a", "u", Sensitive("fake-token-not-real"), NOW + timedelta(hours=1), NOW, ("a.example",))
    m.publish(StatusSnapshot(tokens={"cri-a": TokenStatus("cri-a", token=tok, last_success_at=NOW)},
                             managed_secrets=7, config_valid=False, leader=True))
    s = _samples(m)
    expiry = (NOW + timedelta(hours=1)).timestamp()
    assert s[("acr_helper_token_expiration_timestamp_seconds", (("registry", "cri-a"),))] == expiry
    assert s[("acr_helper_token_last_refresh_timestamp_seconds", (("registry", "cri-a"),))] == NOW.timestamp()
    assert s[("acr_helper_managed_secrets", ())] == 7
    assert s[("acr_helper_config_valid", ())] == 0
    assert s[("acr_helper_leader", ())] == 1
    # a newer snapshot is what the next scrape sees
    m.publish(StatusSnapshot(managed_secrets=8))
    assert _samples(m)[("acr_helper_managed_secrets", ())] == 8


def test_counters_have_the_documented_names_and_labels():
    m = Metrics()
    m.kube_request("create", "secrets", 201)
    m.watch_restart("secrets", "gone")
    m.token_results([("cri-a", "success"), ("cri-a", "error")])
    m.reconcile_total.labels(result="success").inc()
    m.reconcile_duration.observe(0.2)
    s = _samples(m)
    assert s[("acr_helper_kube_requests_total", (("code", "201"), ("resource", "secrets"), ("verb", "create")))] == 1
    assert s[("acr_helper_watch_restarts_total", (("reason", "gone"), ("resource", "secrets")))] == 1
    assert s[("acr_helper_token_refresh_total", (("registry", "cri-a"), ("result", "error")))] == 1
    assert s[("acr_helper_reconcile_total", (("result", "success"),))] == 1
    assert s[("acr_helper_reconcile_duration_seconds_count", ())] == 1


def test_metrics_never_carry_a_token():
    from prometheus_client import generate_latest

    m = Metrics()
    tok = RegistryToken("cri-a", "u", Sensitive("fake-token-not-real"), NOW, NOW, ("a.example",))
    m.publish(StatusSnapshot(tokens={"cri-a": TokenStatus("cri-a", token=tok, last_error="boom")}))
    assert b"fake-token-not-real" not in generate_latest(m.registry)


@pytest.mark.parametrize(("text", "expected"), [(":8080", ("0.0.0.0", 8080)), ("127.0.0.1:0", ("127.0.0.1", 0)),
                                                ("[::1]:9", ("::1", 9)), ("0", None)])
def test_bind_address(text, expected):
    assert parse_bind_address(text) == expected


def test_health_and_readiness_over_http():
    clock = [100.0]
    health = Health(heartbeat_timeout=10, clock=lambda: clock[0])
    m = Metrics()
    srv = EndpointServer("127.0.0.1:0", m.registry, health)
    srv.start()
    try:
        def get(path):
            try:
                with urllib.request.urlopen(srv.url + path, timeout=5) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()

        assert get("/readyz")[0] == 503
        assert get("/healthz")[0] == 200
        health.set_ready(True)
        assert get("/readyz")[0] == 200
        clock[0] += 11
        code, body = get("/healthz")
        assert code == 503 and "heartbeat" in body
        code, body = get("/metrics")
        assert code == 200 and "acr_helper_build_info" in body
        assert get("/nope")[0] == 404
    finally:
        srv.stop()
