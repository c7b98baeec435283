"""`acr-helper plan`: exact plans on fixture files, output formats and exit codes."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import pathlib
from datetime import UTC, datetime

import pytest

from acr_helper.cli import main
from acr_helper.commands.plan import (
    NO_STATE_WARNING,
    default_view,
    live_tokens_note,
    placeholder_tokens,
    plan_output,
)
from acr_helper.core.config import AcrConfig, RegistryConfig, parse_config
from acr_helper.core.model import (
    DIGEST_ANNOTATION,
    EXPIRY_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    REGISTRIES_ANNOTATION,
    ClusterView,
    NamespaceInfo,
    SecretInfo,
    ServiceAccountInfo,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "plan"
EXAMPLES = ROOT / "examples"
CONFIG = str(FIXTURES / "acr-configuration.yaml")
STATE = str(FIXTURES / "cluster-state.yaml")
NAME = "acr-credential-helper"
NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("ACR_HELPER_"):
            monkeypatch.delenv(key)


def run_json(capsys, *argv: str) -> tuple[int, dict]:
    code = main(["plan", *argv, "-o", "json"])
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_plan_on_the_fixture_state_is_exactly_this(capsys):
    code, report = run_json(capsys, "-f", CONFIG, "--state", STATE)
    assert code == 0
    assert report["errors"] == []
    assert report["actions"] == [
        {
            "action": "create",
            "kind": "Secret",
            "namespace": "default",
            "name": NAME,
            "reason": "namespace default is watched and has no pull Secret",
        },
        {
            "action": "create",
            "kind": "Secret",
            "namespace": "team-a",
            "name": NAME,
            "reason": "namespace team-a is watched and has no pull Secret",
        },
        {
            "action": "add",
            "kind": "ServiceAccount",
            "namespace": "default",
            "name": "default",
            "reason": f"ServiceAccount default is selected and lacks {NAME} in imagePullSecrets",
        },
        {
            "action": "add",
            "kind": "ServiceAccount",
            "namespace": "team-a",
            "name": "default",
            "reason": f"ServiceAccount default is selected and lacks {NAME} in imagePullSecrets",
        },
        {
            "action": "remove",
            "kind": "ServiceAccount",
            "namespace": "team-a",
            "name": "runner",
            "reason": "ServiceAccount runner is no longer selected by service-account",
        },
        {
            "action": "remove",
            "kind": "ServiceAccount",
            "namespace": "team-c",
            "name": "default",
            "reason": "namespace team-c is excluded by label acr-helper/exclude=true",
        },
        {
            "action": "delete",
            "kind": "Secret",
            "namespace": "team-c",
            "name": NAME,
            "reason": "namespace team-c is excluded by label acr-helper/exclude=true",
        },
    ]
    assert report["warnings"] == [
        f"conflict: Secret legacy/{NAME} exists without label app.kubernetes.io/managed-by=acr-helper: "
        "it belongs to someone else and is left alone (its ServiceAccounts too)",
        "ignored 1 object(s) of kind ConfigMap",
        f"ignored 1 Secret(s) not named {NAME}",
    ]


def test_text_output_is_a_table_with_a_summary(capsys):
    assert main(["plan", "-f", CONFIG, "--state", STATE]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["ACTION", "KIND", "NAMESPACE", "NAME", "REASON"]
    assert lines[1].split()[:4] == ["create", "Secret", "default", NAME]
    assert (
        "Plan: 7 action(s): 2 create Secret, 2 add ServiceAccount, 2 remove ServiceAccount, 1 delete Secret."
        in out
    )
    assert f"warning: conflict: Secret legacy/{NAME}" in out
    # columns line up: the REASON column starts at the same offset on every row
    offset = lines[0].index("REASON")
    assert all(line[offset - 2 : offset] == "  " for line in lines[1:8])


def test_without_state_the_view_is_the_default_namespace(capsys):
    code, report = run_json(capsys, "-f", CONFIG)
    assert code == 0
    assert [(a["action"], a["kind"], a["namespace"], a["name"]) for a in report["actions"]] == [
        ("create", "Secret", "default", NAME),
        ("add", "ServiceAccount", "default", "default"),
    ]
    assert NO_STATE_WARNING in report["warnings"]


def test_custom_secret_name(capsys):
    code, report = run_json(capsys, "-f", CONFIG, "--secret-name", "my-pull")
    assert code == 0
    assert {a["name"] for a in report["actions"] if a["kind"] == "Secret"} == {"my-pull"}


def test_config_errors_exit_1_with_no_actions(tmp_path, capsys):
    bad = tmp_path / "cm.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: acr-configuration\n  namespace: kube-system\n"
        "data:\n  expiring-threshold: soon\n"
    )
    code, report = run_json(capsys, "-f", str(bad))
    assert code == 1
    assert report["actions"] == []
    assert report["errors"] and all(isinstance(e, str) for e in report["errors"])
    assert any("expiring-threshold" in e for e in report["errors"])
    assert main(["plan", "-f", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "error(s); nothing would be done" in out and "expiring-threshold" in out


def test_missing_file_is_a_usage_error(tmp_path, capsys):
    assert main(["plan", "-f", str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert "cannot read the ConfigMap manifest" in err and "nope.yaml" in err


def test_invalid_yaml_manifest_is_a_config_error_with_the_normal_report(tmp_path, capsys):
    bad = tmp_path / "cm.yaml"
    bad.write_text("kind: ConfigMap\ndata: [unclosed\n")
    code, report = run_json(capsys, "-f", str(bad))
    assert code == 1
    assert report["actions"] == [] and isinstance(report["warnings"], list)
    (error,) = report["errors"]
    assert error.startswith("manifest (line ") and "not valid YAML" in error
    assert main(["plan", "-f", str(bad)]) == 1
    captured = capsys.readouterr()
    assert "error(s); nothing would be done" in captured.out and "not valid YAML" in captured.out
    assert captured.err == ""


def test_the_guides_invalid_enterprise_manifest_is_a_line_precise_config_error(capsys):
    guide = ROOT / "tests" / "fixtures" / "guide"
    (path,) = sorted(guide.glob("03-*.yaml"))
    code, report = run_json(capsys, "-f", str(path))
    assert code == 1
    assert set(report) == {"actions", "errors", "warnings"} and report["actions"] == []
    (error,) = report["errors"]
    assert error.startswith("manifest (line 13): not valid YAML")
    assert "`namespace` on line 13 is indented deeper than `name` on line 12" in error


def test_a_manifest_without_a_configmap_is_a_config_error(tmp_path, capsys):
    other = tmp_path / "secret.yaml"
    other.write_text("kind: Secret\nmetadata:\n  name: x\n")
    code, report = run_json(capsys, "-f", str(other))
    assert code == 1 and report["actions"] == [] and "no ConfigMap found" in report["errors"][0]


def test_an_undecodable_manifest_is_still_a_usage_error(tmp_path, capsys):
    binary = tmp_path / "cm.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["plan", "-f", str(binary), "-o", "json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "cannot read the ConfigMap manifest" in captured.err


def test_unreadable_state_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "state.yaml"
    bad.write_text("items: [unclosed\n")
    assert main(["plan", "-f", CONFIG, "--state", str(bad)]) == 2
    assert "cannot read the state file" in capsys.readouterr().err
    assert main(["plan", "-f", CONFIG, "--state", str(tmp_path / "missing.yaml")]) == 2


def test_missing_filename_without_kubeconfig_is_a_usage_error(capsys):
    assert main(["plan"]) == 2
    assert "-f CONFIGMAP.yaml" in capsys.readouterr().err


def test_live_mode_with_a_missing_kubeconfig_is_a_usage_error(tmp_path, capsys):
    assert main(["plan", "--kubeconfig", str(tmp_path / "kubeconfig")]) == 2
    assert "kubeconfig" in capsys.readouterr().err


def test_filename_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("ACR_HELPER_FILENAME", CONFIG)
    code = main(["plan", "-o", "json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["actions"]


def test_a_converged_state_plans_nothing(tmp_path, capsys):
    """Feed the Secrets the plan would write back in as state: the plan becomes empty."""
    from acr_helper.core.desired import desired_state

    result = parse_config({"watch-namespace": "default"})
    assert result.config is not None
    tokens = placeholder_tokens(result.config, NOW, "cn-hangzhou")
    desired = desired_state(default_view(), result.config, tokens, NOW)
    s = desired.secrets["default"]
    import base64

    state = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"kind": "Namespace", "metadata": {"name": "default"}},
            {
                "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": "default"},
                "imagePullSecrets": [{"name": NAME}],
            },
            {
                "kind": "Secret",
                "metadata": {
                    "name": NAME,
                    "namespace": "default",
                    "labels": dict(s.labels),
                    "annotations": dict(s.annotations),
                },
                "type": s.type,
                "data": {
                    ".dockerconfigjson": base64.b64encode(s.dockerconfigjson.reveal().encode()).decode()
                },
            },
        ],
    }
    from acr_helper.state import parse_state_documents

    view, notes = parse_state_documents(json.dumps(state), NAME)
    text, code = plan_output(result, view, NOW, "json", default_region="cn-hangzhou", notes=notes)
    assert code == 0
    assert json.loads(text)["actions"] == []
    text, _ = plan_output(result, view, NOW, "text", default_region="cn-hangzhou")
    assert text.startswith("No changes")


def test_placeholder_tokens_cover_each_edition():
    cfg = AcrConfig(
        registries=(
            RegistryConfig(
                instance_id="cri-a", region_id="cn-shanghai", domains=("b.example.com", "a.example.com")
            ),
            RegistryConfig(instance_id="cri-b", index=1),
            RegistryConfig(instance_id="", region_id="cn-beijing", index=2),
            RegistryConfig(instance_id="", index=3),
        )
    )
    tokens = placeholder_tokens(cfg, NOW, "cluster-region")
    assert list(tokens) == ["cri-a@cn-shanghai", "cri-b", "personal/cn-beijing", "personal/cluster-region"]
    assert tokens["cri-a@cn-shanghai"].domains == ("a.example.com", "b.example.com")
    assert tokens["cri-b"].domains == ("cri-b.instance-domains.invalid",)
    assert tokens["personal/cn-beijing"].domains == (
        "registry-intl-vpc.cn-beijing.aliyuncs.com",
        "registry-intl.cn-beijing.aliyuncs.com",
        "registry-vpc.cn-beijing.aliyuncs.com",
        "registry.cn-beijing.aliyuncs.com",
    )
    t = tokens["cri-b"]
    assert t.username == "placeholder" and t.password.reveal() == "placeholder"
    assert t.valid_at(NOW) and t.expires_at == datetime(2026, 11, 28, 23, 0, tzinfo=UTC)


def test_plan_on_the_examples_is_exactly_this(capsys):
    code, report = run_json(
        capsys,
        "-f",
        str(EXAMPLES / "acr-configuration.yaml"),
        "--state",
        str(EXAMPLES / "cluster-state.yaml"),
    )
    assert code == 0, report
    assert report["errors"] == []
    lacks = f"is selected and lacks {NAME} in imagePullSecrets"
    assert report["actions"] == [
        {
            "action": "create",
            "kind": "Secret",
            "namespace": "default",
            "name": NAME,
            "reason": "namespace default is watched and has no pull Secret",
        },
        {
            "action": "create",
            "kind": "Secret",
            "namespace": "team-a",
            "name": NAME,
            "reason": "namespace team-a is watched and has no pull Secret",
        },
        {
            "action": "add",
            "kind": "ServiceAccount",
            "namespace": "default",
            "name": "default",
            "reason": f"ServiceAccount default {lacks}",
        },
        {
            "action": "add",
            "kind": "ServiceAccount",
            "namespace": "team-a",
            "name": "builder",
            "reason": f"ServiceAccount builder {lacks}",
        },
        {
            "action": "add",
            "kind": "ServiceAccount",
            "namespace": "team-a",
            "name": "default",
            "reason": f"ServiceAccount default {lacks}",
        },
    ]
    # team-b's hand-made Secret with our name is someone else's; team-c is excluded; kube-* not selected
    assert report["warnings"] == [
        f"conflict: Secret team-b/{NAME} exists without label app.kubernetes.io/managed-by=acr-helper: "
        "it belongs to someone else and is left alone (its ServiceAccounts too)"
    ]


# ----------------------------------------------------------------------------------------------
# acr_helper.state: cluster objects from YAML


def test_state_from_kubectl_list_output():
    from acr_helper.state import parse_state_documents

    with open(STATE) as fh:
        view, notes = parse_state_documents(fh.read(), NAME)
    assert notes == ["ignored 1 object(s) of kind ConfigMap", f"ignored 1 Secret(s) not named {NAME}"]
    assert sorted(view.namespaces) == ["default", "kube-system", "legacy", "old-team", "team-a", "team-c"]
    assert view.namespaces["old-team"].terminating
    assert not view.namespaces["default"].terminating
    assert dict(view.namespaces["team-c"].labels) == {"acr-helper/exclude": "true"}
    assert view.service_accounts[("team-a", "runner")].image_pull_secrets == (NAME, "regcred")
    assert view.service_accounts[("default", "default")].resource_version == "100"
    assert sorted(view.secrets) == ["legacy", "team-c"]
    legacy = view.secrets["legacy"]
    assert not legacy.owned and view.secrets["team-c"].owned
    import hashlib

    assert legacy.data_digest == hashlib.sha256(b'{"auths":{}}').hexdigest()
    assert legacy.type == "kubernetes.io/dockerconfigjson"
    assert view.synced


def test_state_from_multi_documents_plain_lists_and_typed_lists():
    from acr_helper.state import parse_state_documents

    text = """\
kind: Namespace
metadata: {name: a, labels: {team: x}}
---
- kind: ServiceAccount
  metadata: {name: default, namespace: a}
- kind: ServiceAccount
  metadata: {name: bot}
  imagePullSecrets: [{name: one}, {}, {name: two}]
---
kind: NamespaceList
items:
- kind: Namespace
  metadata: {name: b, deletionTimestamp: "2026-01-01T00:00:00Z"}
---
kind: Secret
metadata: {name: acr-credential-helper, namespace: b}
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{"auths":{}}'
---
kind: Secret
metadata: {name: acr-credential-helper, namespace: a}
---
42
---
kind: Deployment
metadata: {name: web}
---
kind: ServiceAccount
metadata: {namespace: a}
"""
    view, notes = parse_state_documents(text, NAME)
    import hashlib

    assert sorted(view.namespaces) == ["a", "b", "default"]
    assert dict(view.namespaces["a"].labels) == {"team": "x"}
    assert view.namespaces["b"].terminating
    assert view.service_accounts[("default", "bot")].image_pull_secrets == ("one", "two")
    assert view.secrets["b"].data_digest == hashlib.sha256(b'{"auths":{}}').hexdigest()
    assert view.secrets["a"].data_digest == "" and view.secrets["a"].type == "Opaque"
    assert notes == [
        "ignored a YAML document that is not an object: int",
        "ignored a ServiceAccount without metadata.name",
        "namespaces without a Namespace object, assumed to exist with no labels: default",
        "ignored 1 object(s) of kind Deployment",
    ]


def test_state_that_is_not_yaml_raises_state_error():
    from acr_helper.state import StateError, parse_state_documents

    with pytest.raises(StateError, match="not valid YAML at line 3"):
        parse_state_documents("kind: List\nitems: [\n", NAME)


def test_empty_state_is_an_empty_view():
    from acr_helper.state import parse_state_documents

    view, notes = parse_state_documents("", NAME)
    assert view.namespaces == {} and notes == []


def test_registries_without_region_use_the_placeholder_region_with_a_warning(tmp_path, capsys):
    cm = tmp_path / "cm.yaml"
    cm.write_text(
        "kind: ConfigMap\nmetadata:\n  name: acr-configuration\ndata:\n  watch-namespace: default\n"
    )
    code, report = run_json(capsys, "-f", str(cm))
    assert code == 0
    assert (
        "no --region: registries without regionId use the placeholder region cluster-region"
        in report["warnings"]
    )
    assert [a["action"] for a in report["actions"]] == ["create", "add"]


# ---- Secrets that hold live tokens (state taken from a real cluster) ------------------------------

LIVE_CONFIG = {"watch-namespace": "all", "acr-registry-info": "- instanceId: cri-abc\n  regionId: cn-hangzhou\n"}
LIVE_DIGEST = "a" * 64


def live_secret(ns: str, **changes: object) -> SecretInfo:
    base = SecretInfo(
        namespace=ns,
        name=NAME,
        labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        annotations={
            REGISTRIES_ANNOTATION: "cri-abc@cn-hangzhou",
            EXPIRY_ANNOTATION: "2026-11-28T23:00:00Z",  # NOW + 1h
            DIGEST_ANNOTATION: LIVE_DIGEST,
        },
        data_digest=LIVE_DIGEST,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def live_plan(*secrets: SecretInfo, threshold: str = "15m") -> dict:
    view = ClusterView.build(
        namespaces=[NamespaceInfo(name=s.namespace) for s in secrets],
        service_accounts=[
            ServiceAccountInfo(namespace=s.namespace, name="default", image_pull_secrets=(NAME,)) for s in secrets
        ],
        secrets=list(secrets),
    )
    result = parse_config({**LIVE_CONFIG, "expiring-threshold": threshold})
    text, code = plan_output(result, view, NOW, "json")
    assert code == 0
    return json.loads(text)


def test_secrets_holding_live_tokens_that_are_not_due_are_current():
    report = live_plan(live_secret("a"), live_secret("b"))
    assert report["actions"] == []
    assert live_tokens_note(2) in report["warnings"]
    assert live_tokens_note(2) == (
        "2 Secrets hold live tokens that plan cannot compare; shown as current while their registries match "
        "and they are not due"
    )
    assert live_tokens_note(1).startswith("1 Secret holds live tokens")


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"annotations": {REGISTRIES_ANNOTATION: "cri-old", EXPIRY_ANNOTATION: "2026-11-28T23:00:00Z",
                          DIGEST_ANNOTATION: LIVE_DIGEST}}, "registries changed"),
        ({"annotations": {REGISTRIES_ANNOTATION: "cri-abc@cn-hangzhou", EXPIRY_ANNOTATION: "2026-11-28T22:10:00Z",
                          DIGEST_ANNOTATION: LIVE_DIGEST}}, "rotated"),  # due: expires within 15m
        ({"annotations": {REGISTRIES_ANNOTATION: "cri-abc@cn-hangzhou", EXPIRY_ANNOTATION: "not-a-time",
                          DIGEST_ANNOTATION: LIVE_DIGEST}}, ""),
        ({"annotations": {REGISTRIES_ANNOTATION: "cri-abc@cn-hangzhou", EXPIRY_ANNOTATION: "2026-11-28T23:00:00Z",
                          DIGEST_ANNOTATION: "b" * 64}}, "changed outside acr-helper"),
        ({"annotations": {REGISTRIES_ANNOTATION: "cri-abc@cn-hangzhou", EXPIRY_ANNOTATION: "2026-11-28T23:00:00Z"}},
         ""),
        ({"type": "Opaque"}, "type is Opaque"),
        ({"data_digest": ""}, "no .dockerconfigjson data"),
    ],
)
def test_secrets_that_the_controller_would_rewrite_stay_updates(changes: dict, why: str):
    report = live_plan(live_secret("a"), live_secret("b", **changes))
    assert [(a["action"], a["namespace"]) for a in report["actions"]] == [("update", "b")]
    assert why in report["actions"][0]["reason"]
    assert live_tokens_note(1) in report["warnings"]


def test_a_long_threshold_makes_a_live_secret_due():
    report = live_plan(live_secret("a"), threshold="2h")
    assert [(a["action"], a["namespace"]) for a in report["actions"]] == [("update", "a")]
    assert not any("live tokens" in w for w in report["warnings"])


def test_offline_state_from_a_converged_cluster_plans_nothing(tmp_path, capsys):
    cm = tmp_path / "cm.yaml"
    cm.write_text(
        "kind: ConfigMap\nmetadata:\n  name: acr-configuration\ndata:\n  watch-namespace: all\n"
        "  acr-registry-info: |\n    - instanceId: cri-abc\n      regionId: cn-hangzhou\n"
    )
    state = tmp_path / "state.yaml"
    state.write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: v1\n  kind: Namespace\n  metadata: {name: default}\n"
        f"- apiVersion: v1\n  kind: ServiceAccount\n  metadata: {{name: default, namespace: default}}\n"
        f"  imagePullSecrets: [{{name: {NAME}}}]\n"
        f"- apiVersion: v1\n  kind: Secret\n  type: kubernetes.io/dockerconfigjson\n"
        f"  metadata:\n    name: {NAME}\n    namespace: default\n"
        f"    labels: {{app.kubernetes.io/managed-by: acr-helper}}\n"
        f"    annotations:\n      acr-helper/registries: cri-abc@cn-hangzhou\n"
        f"      acr-helper/earliest-expiry: '2099-01-01T00:00:00Z'\n"
        f"      acr-helper/content-digest: {_digest_of(b'{}')}\n"
        f"  data:\n    .dockerconfigjson: {base64.b64encode(b'{}').decode()}\n"
    )
    code, report = run_json(capsys, "-f", str(cm), "--state", str(state))
    assert code == 0 and report["actions"] == [], report
    assert live_tokens_note(1) in report["warnings"]


def _digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
