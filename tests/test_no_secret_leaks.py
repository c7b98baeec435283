"""No AccessKey secret, token or password reaches stdout, stderr, logs, JSON or a repr."""

from __future__ import annotations

import base64
import json
import logging
import os
from datetime import UTC, datetime, timedelta

import pytest

from acr_helper.cli import main
from acr_helper.core.config import AcrConfig, NamespaceSelector, ServiceAccountSelector
from acr_helper.core.desired import desired_state
from acr_helper.core.diff import plan
from acr_helper.core.model import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    ClusterView,
    NamespaceInfo,
    RegistryToken,
    SecretInfo,
    Sensitive,
    ServiceAccountInfo,
)
from acr_helper.state import parse_state_documents

NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
NAME = "acr-credential-helper"
AK_SECRET = "fake-secret-not-real-XYZZY"
AK_SECRET_2 = "fake-secret-not-real-PLOVER"
TOKEN = "fake-token-PLUGH-0123456789"
STS_TOKEN = "fake-sts-token-FROBOZZ"
SECRETS = (AK_SECRET, AK_SECRET_2, TOKEN, STS_TOKEN)


def forbidden_forms(value: str) -> list[str]:
    """The value itself and the encodings it would appear in inside a pull Secret."""
    return [
        value,
        base64.b64encode(value.encode()).decode(),
        base64.b64encode(f"cr_temp_user:{value}".encode()).decode(),
    ]


def assert_clean(text: str) -> None:
    for value in SECRETS:
        for form in forbidden_forms(value):
            assert form not in text, f"a secret value leaked: {form[:12]}…"


CONFIG = f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: acr-configuration
  namespace: kube-system
data:
  service-account: "*"
  watch-namespace: all
  acr-registry-info: |
    - instanceId: cri-fake0000000001
      regionId: cn-hangzhou
      customAccessKey: FAKE-AK-ID
      customAccessKeySecret: {AK_SECRET}
    - instanceId: ""
      regionId: cn-beijing
      customAccessKey: FAKE-AK-ID-2
      customAccessKeySecret: "{AK_SECRET_2}"
      assumeRoleARN: acs:ram::1234567890123456:role/fake-pull
"""

# the same, with an invalid value next to the secrets (exit 1: errors are printed)
BAD_CONFIG = CONFIG.replace(
    "      regionId: cn-beijing\n", "      regionId: cn-beijing\n      expireDuration: 5\n"
).replace("watch-namespace: all", "watch-namespace: all\n  expiring-threshold: never")


def _pull_secret_doc(password: str) -> str:
    auth = base64.b64encode(f"cr_temp_user:{password}".encode()).decode()
    doc = {"auths": {"x.example.com": {"username": "cr_temp_user", "password": password, "auth": auth}}}
    return base64.b64encode(json.dumps(doc).encode()).decode()


STATE = f"""\
apiVersion: v1
kind: List
items:
- kind: Namespace
  metadata: {{name: default}}
- kind: Namespace
  metadata: {{name: team-a}}
- kind: Namespace
  metadata: {{name: team-x, labels: {{acr-helper/exclude: "true"}}}}
- kind: ServiceAccount
  metadata: {{name: default, namespace: team-a}}
- kind: Secret
  metadata:
    name: {NAME}
    namespace: team-a
    labels: {{app.kubernetes.io/managed-by: acr-helper}}
  type: kubernetes.io/dockerconfigjson
  data:
    .dockerconfigjson: {_pull_secret_doc(TOKEN)}
- kind: Secret
  metadata: {{name: {NAME}, namespace: team-x, labels: {{app.kubernetes.io/managed-by: acr-helper}}}}
  type: kubernetes.io/dockerconfigjson
  stringData:
    .dockerconfigjson: '{{"auths":{{"y.example.com":{{"password":"{STS_TOKEN}"}}}}}}'
- kind: Secret
  metadata: {{name: {NAME}, namespace: default}}
  type: kubernetes.io/dockerconfigjson
  data:
    .dockerconfigjson: "not base64 {TOKEN}"
- kind: Secret
  metadata: {{name: alibaba-addon-secret, namespace: kube-system}}
  data:
    access-key-secret: {base64.b64encode(AK_SECRET.encode()).decode()}
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("ACR_HELPER_"):
            monkeypatch.delenv(key)


@pytest.fixture
def files(tmp_path):
    cm = tmp_path / "cm.yaml"
    cm.write_text(CONFIG)
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_CONFIG)
    state = tmp_path / "state.yaml"
    state.write_text(STATE)
    return {"cm": str(cm), "bad": str(bad), "state": str(state)}


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("which", ["cm", "bad"])
def test_plan_output_and_logs_hold_no_secret(files, capsys, caplog, fmt, which):
    caplog.set_level(logging.DEBUG)
    code = main(["plan", "-f", files[which], "--state", files["state"], "-o", fmt])
    out, err = capsys.readouterr()
    assert code == (0 if which == "cm" else 1), out + err
    assert out  # it did print a plan / the errors
    assert_clean(out)
    assert_clean(err)
    assert_clean(caplog.text)
    assert_clean("\n".join(repr(r.args) for r in caplog.records))
    if fmt == "json":
        report = json.loads(out)
        assert_clean(json.dumps(report))
        if which == "bad":
            assert report["errors"]


def test_the_state_parser_keeps_only_digests(files):
    with open(files["state"]) as fh:
        view, notes = parse_state_documents(fh.read(), NAME)
    assert_clean(repr(view))
    assert_clean("\n".join(notes))
    assert len(view.secrets["team-a"].data_digest) == 64


def _tokens() -> dict[str, RegistryToken]:
    return {
        "cri-a": RegistryToken(
            registry="cri-a",
            username="cr_temp_user",
            password=Sensitive(TOKEN),
            expires_at=NOW + timedelta(hours=1),
            obtained_at=NOW,
            domains=("a.example.com",),
            source="assume-role(acs:ram::1234567890123456:role/fake)",
        ),
        "cri-old": RegistryToken(
            registry="cri-old",
            username="cr_temp_user",
            password=Sensitive(STS_TOKEN),
            expires_at=NOW - timedelta(seconds=1),
            obtained_at=NOW - timedelta(hours=1),
            domains=("old.example.com",),
        ),
    }


def test_reprs_of_tokens_desired_state_actions_and_plans_hold_no_secret():
    view = ClusterView.build(
        namespaces=[NamespaceInfo("a"), NamespaceInfo("b"), NamespaceInfo("gone", labels={})],
        service_accounts=[ServiceAccountInfo("a", "default"), ServiceAccountInfo("gone", "default", (NAME,))],
        secrets=[
            SecretInfo("b", NAME, labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE}, data_digest="0" * 64),
            SecretInfo("gone", NAME, labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE}, data_digest="0" * 64),
        ],
    )
    cfg = AcrConfig(
        watch_namespaces=NamespaceSelector(include=("a", "b")),
        service_accounts=ServiceAccountSelector(include=("*",)),
    )
    tokens = _tokens()
    desired = desired_state(view, cfg, tokens, NOW)
    p = plan(desired, view)
    assert {a.action for a in p.actions} == {"create", "update", "add", "remove", "delete"}
    # the secret is in there (so the check below means something) ...
    assert TOKEN in desired.secrets["a"].dockerconfigjson.reveal()
    # ... but no repr, str or description shows it
    texts = [repr(tokens), str(tokens), repr(desired), str(desired), repr(p), str(p)]
    texts += [repr(a) for a in p.actions] + [json.dumps(a.describe()) for a in p.actions]
    texts += [repr(s) for s in desired.secrets.values()] + list(desired.warnings)
    texts += [c.reason for c in p.conflicts] + [a.reason for a in p.actions]
    for text in texts:
        assert_clean(text)
