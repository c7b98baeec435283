"""manifests/: the kustomize base renders, every object validates against the Kubernetes schemas,
the RBAC is exactly the least-privilege set of issue 5, and the Deployment is hardened and uses
only real flags.

`kubectl` (Debian `kubernetes-client`) and `kubernetes-validate` are installed by CI; the tests
that need them skip with a reason when they are missing. The RBAC and Deployment checks read the
manifest files directly, so they always run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from acr_helper import __version__
from acr_helper.cli import build_parser
from acr_helper.core.config import CONFIG_NAME, CONFIG_NAMESPACE, parse_config
from acr_helper.core.model import DEFAULT_SECRET_NAME, EXCLUDE_LABEL, MANAGED_BY_LABEL

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "manifests"
MONITORING = BASE / "monitoring"
EXAMPLE_CONFIG = BASE / "examples" / "acr-configuration.yaml"
IMAGE = "ghcr.io/acr-helper/acr-helper"
SA = "acr-helper"
NS = "kube-system"

#: kustomization fields understood by both the kustomize v2.0.3 in Debian's kubectl 1.20 and v5.
PORTABLE_KUSTOMIZE_FIELDS = {
    "apiVersion", "kind", "namespace", "resources", "images", "generatorOptions", "configMapGenerator",
    "commonLabels", "commonAnnotations",
}

Obj = dict[str, Any]


def _load(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def base_objects() -> list[Obj]:
    """The base's objects as written (the kustomization's `resources`, in order)."""
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    out: list[Obj] = []
    for res in kust["resources"]:
        out.extend(_load(BASE / res))
    return out


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl not installed (Debian package `kubernetes-client`; .ci/run installs it)")
    return path


def kustomize(path: Path) -> list[Obj]:
    # `kubectl kustomize` is offline; an empty KUBECONFIG makes sure it could not reach a cluster.
    env = {**os.environ, "KUBECONFIG": os.devnull}
    cmd = [_kubectl(), "kustomize", str(path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, f"kubectl kustomize {path} failed:\n{res.stderr}"
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> list[Obj]:
    return kustomize(BASE)


@pytest.fixture(scope="module")
def rendered_monitoring() -> list[Obj]:
    return kustomize(MONITORING)


# --------------------------------------------------------------------------- rendering


def test_kustomize_renders_the_base(rendered: list[Obj]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered)
    assert kinds == sorted([
        ("ServiceAccount", "acr-helper"),
        ("ClusterRole", "acr-helper"),
        ("ClusterRoleBinding", "acr-helper"),
        ("Role", "acr-helper"),
        ("RoleBinding", "acr-helper"),
        ("Deployment", "acr-helper"),
        ("PodDisruptionBudget", "acr-helper"),
        ("Service", "acr-helper-metrics"),
    ])
    # The rendering changes nothing but what the kustomization says (namespace, image).
    by_key = {(o["kind"], o["metadata"]["name"]): o for o in base_objects()}
    for obj in rendered:
        assert obj == by_key[(obj["kind"], obj["metadata"]["name"])], obj["kind"]


def test_base_never_ships_the_users_configmap(rendered: list[Obj]) -> None:
    """Applying the base must not overwrite an existing kube-system/acr-configuration."""
    assert not [o for o in rendered if o["kind"] == "ConfigMap"]
    assert not [o for o in base_objects() if o["kind"] == "ConfigMap"]


def test_every_namespaced_object_lives_in_kube_system(rendered: list[Obj]) -> None:
    for obj in rendered:
        if obj["kind"] in {"ClusterRole", "ClusterRoleBinding"}:
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == NS, obj["kind"]


def test_kustomizations_use_only_fields_old_kustomize_understands() -> None:
    for path in (BASE / "kustomization.yaml", MONITORING / "kustomization.yaml"):
        kust = yaml.safe_load(path.read_text())
        assert set(kust) <= PORTABLE_KUSTOMIZE_FIELDS, f"{path}: {set(kust) - PORTABLE_KUSTOMIZE_FIELDS}"
        for res in kust.get("resources", []):
            assert (path.parent / res).is_file(), f"{path}: resources must be files for kustomize v2: {res}"


def test_monitoring_renders_with_the_dashboard_configmap(rendered_monitoring: list[Obj]) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendered_monitoring)
    assert kinds == [
        ("ConfigMap", "acr-helper-grafana-dashboard"),
        ("PrometheusRule", "acr-helper"),
        ("ServiceMonitor", "acr-helper"),
    ]
    cm = one(rendered_monitoring, "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"]["grafana-dashboard.json"] == (MONITORING / "grafana-dashboard.json").read_text()


def test_an_overlay_can_override_the_image_and_allow_an_access_key_secret(tmp_path: Path) -> None:
    """The overlay documented in docs/operations.md and docs/security.md works."""
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        # `bases:` (not `resources:`) so that kustomize v2.0.3 accepts a directory too.
        "bases": [os.path.relpath(BASE, tmp_path)],
        "images": [{"name": IMAGE, "newName": "registry.example.com/platform/acr-helper", "newTag": "9.9.9"}],
        "patchesJson6902": [{
            "target": {"group": "rbac.authorization.k8s.io", "version": "v1", "kind": "Role",
                       "name": "acr-helper", "namespace": NS},
            "path": "role-patch.yaml",
        }],
    }))
    (tmp_path / "role-patch.yaml").write_text(
        "- op: add\n  path: /rules/1/resourceNames/-\n  value: acr-pull-key\n"
    )
    objs = kustomize(tmp_path)
    dep = one(objs, "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/platform/acr-helper:9.9.9"
    )
    role = one(objs, "Role")
    assert role["rules"][1]["resources"] == ["secrets"]
    assert role["rules"][1]["resourceNames"] == ["alibaba-addon-secret", "acr-pull-key"]


# --------------------------------------------------------------------------- schema validation


def _schema_versions() -> list[str]:
    try:
        import kubernetes_validate
    except ImportError:
        return ["1.30.0"]
    return sorted({"1.30.0", kubernetes_validate.latest_version()})


@pytest.mark.parametrize("version", _schema_versions())
def test_every_object_validates_against_the_kubernetes_schema(
    version: str, rendered: list[Obj], rendered_monitoring: list[Obj]
) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (test extra)")
    objs = rendered + [o for o in rendered_monitoring if o["kind"] == "ConfigMap"] + _load(EXAMPLE_CONFIG)
    for obj in objs:
        try:
            kv.validate(obj, version, strict=True)
        except kv.SchemaNotFoundError:
            pytest.skip(f"kubernetes-validate has no schema for {obj['kind']} at {version}")
        except kv.ValidationError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for Kubernetes {version}: {exc}")


def test_schema_validation_catches_a_broken_object() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (test extra)")
    dep = one(base_objects(), "Deployment")
    dep["spec"]["replicas"] = "two"
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, "1.30.0", strict=True)


# --------------------------------------------------------------------------- RBAC

Perm = tuple[str, str, str, str | None]  # (apiGroup, resource, verb, resourceName or None)


def permissions(role: Obj) -> set[Perm]:
    out: set[Perm] = set()
    for rule in role["rules"]:
        names = rule.get("resourceNames") or [None]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    for name in names:
                        out.add((group, resource, verb, name))
    return out


def _expand(group: str, resource: str, verbs: str, names: list[str | None] | None = None) -> set[Perm]:
    return {(group, resource, v, n) for v in verbs.split() for n in (names or [None])}


EXPECTED_CLUSTER: set[Perm] = (
    _expand("", "namespaces", "get list watch")
    | _expand("", "serviceaccounts", "get list watch update patch")
    | _expand("", "secrets", "create")
    | _expand("", "secrets", "get list watch update patch delete", [DEFAULT_SECRET_NAME])
    | _expand("", "events", "create patch")
    | _expand("events.k8s.io", "events", "create patch")
)
EXPECTED_KUBE_SYSTEM: set[Perm] = (
    _expand("", "configmaps", "get list watch", [CONFIG_NAME])
    | _expand("", "secrets", "get list watch", ["alibaba-addon-secret"])
    | _expand("coordination.k8s.io", "leases", "create")
    | _expand("coordination.k8s.io", "leases", "get update", ["acr-helper"])
)


def test_cluster_role_is_exactly_the_least_privilege_set() -> None:
    assert permissions(one(base_objects(), "ClusterRole")) == EXPECTED_CLUSTER


def test_kube_system_role_is_exactly_the_least_privilege_set() -> None:
    role = one(base_objects(), "Role")
    assert role["metadata"]["namespace"] == CONFIG_NAMESPACE == NS
    assert permissions(role) == EXPECTED_KUBE_SYSTEM


def test_no_wildcards_and_no_dangerous_verbs() -> None:
    for role in [o for o in base_objects() if o["kind"] in {"Role", "ClusterRole"}]:
        assert "aggregationRule" not in role
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames"):
                assert "*" not in rule.get(field, []), f"{role['kind']}: wildcard in {field}"
            assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate", "deletecollection", "*"}
            assert "nonResourceURLs" not in rule
            assert not {r for r in rule["resources"] if "/" in r}, "no subresources needed"


def test_no_secret_verb_except_create_goes_without_resource_names() -> None:
    """No unrestricted read (or write) of Secrets anywhere: only `create` is name-less."""
    for role in [o for o in base_objects() if o["kind"] in {"Role", "ClusterRole"}]:
        for group, resource, verb, name in permissions(role):
            if resource == "secrets":
                assert group == ""
                if name is None:
                    assert verb == "create", f"{role['kind']}: secrets {verb} without resourceNames"
                if role["kind"] == "Role":
                    assert verb in {"get", "list", "watch"}, "kube-system Secrets are read-only"


def test_bindings_tie_only_our_roles_to_our_service_account() -> None:
    objs = base_objects()
    sa = one(objs, "ServiceAccount", SA)
    assert sa["metadata"]["namespace"] == NS
    for kind, role_kind in (("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")):
        binding = one(objs, kind)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": SA}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SA, "namespace": NS}]
    assert one(objs, "RoleBinding")["metadata"]["namespace"] == NS


# --------------------------------------------------------------------------- Deployment


def deployment() -> Obj:
    return one(base_objects(), "Deployment")


def container() -> Obj:
    (c,) = deployment()["spec"]["template"]["spec"]["containers"]
    assert isinstance(c, dict)
    return c


def run_args() -> Any:
    """The container's args parsed by the real CLI (the image's ENTRYPOINT is `acr-helper run`)."""
    env = {e["name"]: e["value"] for e in container().get("env", []) if "value" in e}
    return build_parser(environ=env).parse_args(["run", *container()["args"]])


def test_deployment_runs_two_replicas_with_leader_election_and_real_flags() -> None:
    dep = deployment()
    assert dep["spec"]["replicas"] == 2
    args = run_args()
    assert args.leader_elect is True
    assert args.lease_name == "acr-helper" and args.lease_namespace == NS
    assert args.config_namespace == CONFIG_NAMESPACE and args.config_name == CONFIG_NAME
    assert args.secret_name == DEFAULT_SECRET_NAME
    assert args.metrics_bind_address == ":8080"
    assert "command" not in container(), "keep the image's ENTRYPOINT [acr-helper, run]"


def test_rbac_names_match_the_flags() -> None:
    args = run_args()
    cluster = permissions(one(base_objects(), "ClusterRole"))
    assert {n for g, r, v, n in cluster if r == "secrets" and n} == {args.secret_name}
    ks = permissions(one(base_objects(), "Role"))
    assert {n for g, r, v, n in ks if r == "configmaps"} == {args.config_name}
    assert {n for g, r, v, n in ks if r == "leases" and n} == {args.lease_name}


def test_image_is_the_placeholder_at_the_package_version() -> None:
    assert container()["image"] == f"{IMAGE}:{__version__}"
    kust = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert kust["images"] == [{"name": IMAGE, "newTag": __version__}]


def test_probes_resources_and_port() -> None:
    c = container()
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert port == {"metrics": 8080}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert c["resources"] == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"cpu": "500m", "memory": "256Mi"},
    }


def test_pod_and_container_security_context() -> None:
    spec = deployment()["spec"]["template"]["spec"]
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 65532
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container()["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["serviceAccountName"] == SA and spec["automountServiceAccountToken"] is True
    assert "hostNetwork" not in spec and "hostPID" not in spec
    # A writable /tmp on an emptyDir, since the root filesystem is read-only.
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    vols = {v["name"]: v for v in spec["volumes"]}
    assert "emptyDir" in vols[mounts["/tmp"]]


def test_replicas_spread_over_nodes_and_survive_disruption() -> None:
    dep = deployment()
    spec = dep["spec"]["template"]["spec"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    selector = dep["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    (tsc,) = spec["topologySpreadConstraints"]
    assert tsc["topologyKey"] == "kubernetes.io/hostname" and tsc["labelSelector"]["matchLabels"] == selector
    (anti,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pdb = one(base_objects(), "PodDisruptionBudget")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    # SIGTERM: the grace period of the controller fits in the pod's.
    assert spec["terminationGracePeriodSeconds"] > run_args().grace_period


def test_metrics_service_selects_the_pods() -> None:
    svc = one(base_objects(), "Service")
    labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (port,) = svc["spec"]["ports"]
    assert port == {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}


# --------------------------------------------------------------------------- example ConfigMap


def test_example_configmap_is_valid_and_not_in_the_base() -> None:
    (cm,) = _load(EXAMPLE_CONFIG)
    assert (cm["kind"], cm["metadata"]["name"], cm["metadata"]["namespace"]) == ("ConfigMap", CONFIG_NAME, NS)
    result = parse_config(cm["data"])
    assert result.ok, [str(e) for e in result.errors]
    assert not result.warnings, [str(w) for w in result.warnings]
    config = result.config
    assert config is not None
    assert not config.watch_namespaces.matches("kube-system")
    assert config.watch_namespaces.matches("team-a")
    assert not config.watch_namespaces.matches("team-a", {EXCLUDE_LABEL: "true"})
    assert [r.edition for r in config.registries] == ["enterprise", "personal"]


def test_docs_name_the_labels_the_controller_uses() -> None:
    text = "".join((ROOT / "docs" / f).read_text() for f in ("security.md", "migration.md", "operations.md"))
    assert MANAGED_BY_LABEL in text and EXCLUDE_LABEL in text


# --------------------------------------------------------------------------- optional hardening

HARDENING = BASE / "hardening"


def test_hardening_renders_and_validates() -> None:
    objs = kustomize(HARDENING)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objs) == [
        ("ValidatingAdmissionPolicy", "acr-helper-secrets"),
        ("ValidatingAdmissionPolicy", "acr-helper-serviceaccounts"),
        ("ValidatingAdmissionPolicyBinding", "acr-helper-secrets"),
        ("ValidatingAdmissionPolicyBinding", "acr-helper-serviceaccounts"),
    ]
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (test extra)")
    for obj in objs:
        kv.validate(obj, "1.30.0", strict=True)  # admissionregistration.k8s.io/v1 is GA from 1.30


def test_hardening_policies_target_our_service_account_and_names() -> None:
    objs = _load(HARDENING / "validating-admission-policy.yaml")
    policies = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ValidatingAdmissionPolicy"}
    bindings = [o for o in objs if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert {b["spec"]["policyName"] for b in bindings} == set(policies)
    assert all(b["spec"]["validationActions"] == ["Deny"] for b in bindings)
    username = f"system:serviceaccount:{NS}:{SA}"
    for policy in policies.values():
        assert policy["spec"]["failurePolicy"] == "Fail"
        (cond,) = policy["spec"]["matchConditions"]
        assert cond["expression"] == f"request.userInfo.username == '{username}'"
    secrets = " ".join(v["expression"] for v in policies["acr-helper-secrets"]["spec"]["validations"])
    assert f"object.metadata.name == '{DEFAULT_SECRET_NAME}'" in secrets
    assert "object.type == 'kubernetes.io/dockerconfigjson'" in secrets
    assert f"labels['{MANAGED_BY_LABEL}'] == 'acr-helper'" in secrets
    (rule,) = policies["acr-helper-secrets"]["spec"]["matchConstraints"]["resourceRules"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"} and rule["resources"] == ["secrets"]
    sa_policy = policies["acr-helper-serviceaccounts"]
    sa_rules = " ".join(v["expression"] for v in sa_policy["spec"]["validations"])
    assert "imagePullSecrets" not in sa_rules  # the one field acr-helper may change
    for field in ("metadata.annotations", "metadata.labels", "secrets", "automountServiceAccountToken"):
        assert f"object.{field} == oldObject.{field}" in sa_rules, field


# --------------------------------------------------------------------------- docs


def test_operations_doc_lists_every_run_flag_and_its_environment_variable() -> None:
    import argparse

    from acr_helper.cli import env_name

    text = (ROOT / "docs" / "operations.md").read_text()
    parser = build_parser(environ={})
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    run = sub.choices["run"]
    flags = [a for a in run._actions if a.option_strings and a.dest != "help"]
    assert len(flags) >= 20
    for action in flags:
        long_flag = next(o for o in action.option_strings if o.startswith("--") and not o.startswith("--no-"))
        assert f"`{long_flag}`" in text, f"docs/operations.md does not document {long_flag}"
        assert f"`{env_name(long_flag)}`" in text, f"docs/operations.md lacks {env_name(long_flag)}"


def test_quick_start_installs_in_three_commands_or_fewer() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    assert 1 <= len(commands) <= 3
    assert "kubectl apply -k manifests" in commands
    assert any("manifests/examples/acr-configuration.yaml" in c for c in commands)
    assert (EXAMPLE_CONFIG).is_file()
