"""manifests/monitoring/: the alert rules, their promtool unit tests, the PrometheusRule and
ServiceMonitor shapes, the Grafana dashboard, and docs/metrics.md against the real registry.

promtool comes from Debian's `prometheus` package (CI installs it); tests needing it skip without.
Regenerate prometheusrule.yaml from rules.yaml: `.venv/bin/python tests/test_monitoring.py --write`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
MON = ROOT / "manifests" / "monitoring"
RULES = MON / "rules.yaml"
PROMETHEUS_RULE = MON / "prometheusrule.yaml"
DASHBOARD = MON / "grafana-dashboard.json"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
METRICS_DOC = ROOT / "docs" / "metrics.md"

#: The metrics contract (issue 4 plus the two additions): name -> (type, labels).
CONTRACT: dict[str, tuple[str, frozenset[str]]] = {
    "acr_helper_token_expiration_timestamp_seconds": ("gauge", frozenset({"registry"})),
    "acr_helper_token_refresh_total": ("counter", frozenset({"registry", "result"})),
    "acr_helper_token_last_refresh_timestamp_seconds": ("gauge", frozenset({"registry"})),
    "acr_helper_token_refresh_failures": ("gauge", frozenset({"registry"})),
    "acr_helper_managed_secrets": ("gauge", frozenset()),
    "acr_helper_reconcile_duration_seconds": ("histogram", frozenset()),
    "acr_helper_reconcile_total": ("counter", frozenset({"result"})),
    "acr_helper_kube_requests_total": ("counter", frozenset({"verb", "resource", "code"})),
    "acr_helper_watch_restarts_total": ("counter", frozenset({"resource", "reason"})),
    "acr_helper_config_valid": ("gauge", frozenset()),
    "acr_helper_leader": ("gauge", frozenset()),
    "acr_helper_build_info": ("gauge", frozenset({"version"})),
}
#: Labels Prometheus adds to every scraped series (ServiceMonitor targets), plus `le` of buckets.
TARGET_LABELS = frozenset({"job", "instance", "pod", "namespace", "service", "endpoint", "container", "le"})
PROMETHEUS_RULE_HEADER = """\
# GENERATED from rules.yaml by `.venv/bin/python tests/test_monitoring.py --write`; edit rules.yaml.
# Needs the Prometheus Operator. If your Prometheus selects rules by label (kube-prometheus-stack:
# `release: <helm release>`), add that label in an overlay.
"""

METRIC_RE = re.compile(r"\bacr_helper_[a-z0-9_]+")
BY_RE = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; .ci/run installs it)")
    return path


def rule_groups() -> dict[str, Any]:
    groups: dict[str, Any] = yaml.safe_load(RULES.read_text())
    return groups


def render_prometheus_rule() -> str:
    obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "acr-helper",
            "namespace": "kube-system",
            "labels": {"app.kubernetes.io/name": "acr-helper", "app.kubernetes.io/part-of": "acr-helper"},
        },
        "spec": rule_groups(),
    }
    return PROMETHEUS_RULE_HEADER + yaml.safe_dump(obj, sort_keys=False, width=1000)


def alerts() -> list[dict[str, Any]]:
    return [r for g in rule_groups()["groups"] for r in g["rules"] if "alert" in r]


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for p in panels:
            for t in p.get("targets", []):
                out.append((p["title"], t["expr"]))
            walk(p.get("panels", []))

    walk(dash["panels"])
    return out


def metric_base(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in CONTRACT:
            return name[: -len(suffix)]
    return name


def github_anchor(heading: str) -> str:
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def doc_anchors(path: Path) -> set[str]:
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", path.read_text(), re.M)}


# --------------------------------------------------------------------------- promtool


def test_promtool_check_rules() -> None:
    cmd = [_promtool(), "check", "rules", str(RULES)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in res.stdout


def test_promtool_unit_tests_pass() -> None:
    res = subprocess.run(
        [_promtool(), "test", "rules", "tests.yaml"], cwd=MON, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_unit_tests_catch_a_broken_threshold(tmp_path: Path) -> None:
    """The unit tests are not vacuous: loosening the expiry threshold makes them fail."""
    promtool = _promtool()
    broken = RULES.read_text().replace("- time() < 450", "- time() < 100")
    assert broken != RULES.read_text()
    (tmp_path / "rules.yaml").write_text(broken)
    shutil.copy(MON / "tests.yaml", tmp_path / "tests.yaml")
    cmd = [promtool, "test", "rules", "tests.yaml"]
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "AcrHelperTokenExpiringSoon" in res.stdout + res.stderr


def test_every_alert_has_a_promtool_unit_test() -> None:
    tests = yaml.safe_load((MON / "tests.yaml").read_text())
    tested_firing = {
        case["alertname"]
        for t in tests["tests"]
        for case in t.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {a["alert"] for a in alerts()} <= tested_firing


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every dashboard query parses: checked by promtool as recording rules."""
    promtool = _promtool()
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, (_, expr) in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


# --------------------------------------------------------------------------- rules


def test_prometheus_rule_spec_is_identical_to_rules_yaml() -> None:
    obj = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert obj["spec"] == rule_groups(), "regenerate: .venv/bin/python tests/test_monitoring.py --write"
    assert PROMETHEUS_RULE.read_text() == render_prometheus_rule()


def test_prometheus_rule_and_service_monitor_shapes() -> None:
    rule = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["namespace"] == "kube-system"
    for group in rule["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        for r in group["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert isinstance(r["expr"], str)

    sm = yaml.safe_load((MON / "servicemonitor.yaml").read_text())
    assert (sm["apiVersion"], sm["kind"]) == ("monitoring.coreos.com/v1", "ServiceMonitor")
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["kube-system"]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"

    # The ServiceMonitor selects the metrics Service of the base, by labels and port name.
    service = yaml.safe_load((ROOT / "manifests" / "service.yaml").read_text())
    assert sm["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


REQUIRED_ALERTS = {
    "AcrHelperTokenExpiringSoon": "acr_helper_token_expiration_timestamp_seconds",
    "AcrHelperTokenRefreshFailing": "acr_helper_token_refresh_failures",
    "AcrHelperConfigInvalid": "acr_helper_config_valid",
    "AcrHelperNoLeader": "acr_helper_leader",
    "AcrHelperManagedSecretsDropping": "acr_helper_managed_secrets",
}


def test_required_alerts_exist_with_annotations_and_runbooks() -> None:
    by_name = {a["alert"]: a for a in alerts()}
    assert set(REQUIRED_ALERTS) <= set(by_name)
    for name, metric in REQUIRED_ALERTS.items():
        assert metric in by_name[name]["expr"], name
    anchors = doc_anchors(TROUBLESHOOTING)
    for a in by_name.values():
        ann = a["annotations"]
        assert ann["summary"] and ann["description"], a["alert"]
        assert a["labels"]["severity"] in {"critical", "warning", "info"}
        url = ann["runbook_url"]
        assert url.startswith("https://") and "docs/troubleshooting.md#" in url, url
        anchor = url.rsplit("#", 1)[1]
        assert anchor == a["alert"].lower()
        assert anchor in anchors, f"docs/troubleshooting.md has no heading for #{anchor}"


def test_expiry_alert_uses_half_the_default_threshold() -> None:
    (a,) = [a for a in alerts() if a["alert"] == "AcrHelperTokenExpiringSoon"]
    assert "acr_helper_token_expiration_timestamp_seconds" in a["expr"] and "- time() < 450" in a["expr"]
    assert 450 * 2 == 15 * 60  # the add-on's default expiring-threshold is 15m


def test_refresh_failing_waits_ten_minutes_and_no_leader_five() -> None:
    by_name = {a["alert"]: a for a in alerts()}
    assert by_name["AcrHelperTokenRefreshFailing"]["for"] == "10m"
    assert by_name["AcrHelperNoLeader"]["for"] == "5m"
    assert "sum(acr_helper_leader) < 1" in by_name["AcrHelperNoLeader"]["expr"]


# --------------------------------------------------------------------------- metric names


def _check_expr(where: str, expr: str, known: dict[str, frozenset[str]]) -> None:
    names = {metric_base(n) for n in METRIC_RE.findall(expr)}
    assert names, f"{where}: {expr!r} references no acr_helper metric"
    unknown = names - set(known)
    assert not unknown, f"{where}: unknown metrics {sorted(unknown)} in {expr!r}"
    allowed = frozenset().union(*(known[n] for n in names)) | TARGET_LABELS
    for group in BY_RE.findall(expr):
        labels = {x.strip() for x in group.split(",") if x.strip()}
        missing = sorted(labels - allowed)
        assert not missing, f"{where}: labels {missing} do not exist on {sorted(names)}"


def test_rules_reference_only_contract_metrics_and_labels() -> None:
    known = {k: v[1] for k, v in CONTRACT.items()}
    for a in alerts():
        _check_expr(a["alert"], a["expr"], known)


def test_dashboard_parses_and_references_only_contract_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"] == "acr-helper"
    assert any(v["type"] == "datasource" for v in dash["templating"]["list"])
    known = {k: v[1] for k, v in CONTRACT.items()}
    exprs = dashboard_exprs()
    for title, expr in exprs:
        _check_expr(title, expr, known)
    joined = "\n".join(e for _, e in exprs)
    # The panels the dashboard promises.
    assert "acr_helper_token_expiration_timestamp_seconds) - time()" in joined  # time to expiry
    assert "by (registry, result)" in joined and "acr_helper_token_refresh_total" in joined
    assert "histogram_quantile(0.99" in joined and "acr_helper_reconcile_duration_seconds_bucket" in joined
    assert "sum by (code) (rate(acr_helper_kube_requests_total" in joined
    for metric in ("acr_helper_watch_restarts_total", "acr_helper_config_valid", "acr_helper_leader"):
        assert metric in joined
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


def _registry_metrics() -> dict[str, tuple[str, frozenset[str]]]:
    """Metric families the real `acr_helper.metrics.Metrics` registry exposes (name -> type, labels)."""
    from acr_helper.metrics import Metrics

    metrics = Metrics()
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels: set[str] = set()
        for s in family.samples:
            labels |= set(s.labels) - {"le"}
        out[name] = (family.type, frozenset(labels))
    # Label names of collector gauges with no samples yet, and of unused counters, are not visible
    # from samples; read them from the metric objects where prometheus_client keeps them.
    for attr in vars(metrics).values():
        labelnames = getattr(attr, "_labelnames", None)
        metric_name = getattr(attr, "_name", None)
        if labelnames is not None and metric_name is not None:
            key = str(metric_name) + ("_total" if getattr(attr, "_type", "") == "counter" else "")
            if key in out:
                out[key] = (out[key][0], frozenset(labelnames))
    return out


def test_contract_metrics_exist_in_the_registry_with_their_type() -> None:
    real = _registry_metrics()
    for name, (typ, _labels) in CONTRACT.items():
        assert name in real, f"acr_helper.metrics does not expose {name}"
        assert real[name][0] == typ, f"{name}: {real[name][0]} != {typ}"
    counters = [name for name, (typ, _) in CONTRACT.items() if typ == "counter"]
    for name in counters:
        assert real[name][1] == CONTRACT[name][1], name


def test_metrics_doc_covers_every_exposed_metric() -> None:
    text = METRICS_DOC.read_text()
    for name in set(CONTRACT) | set(_registry_metrics()):
        assert f"`{name}`" in text, f"docs/metrics.md does not document {name}"
    assert "namespace" in text  # explains why there is no per-namespace label


if __name__ == "__main__":  # regenerate prometheusrule.yaml from rules.yaml
    if sys.argv[1:] == ["--write"]:
        PROMETHEUS_RULE.write_text(render_prometheus_rule())
        print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
    else:
        print("usage: python tests/test_monitoring.py --write", file=sys.stderr)
        sys.exit(2)
