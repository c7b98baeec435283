"""`acr-helper check` against the emulator: every guide scenario and each failure mode's advice."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from acr_helper.cli import main
from acr_helper.tokens.emulator import AliyunEmulator, make_fake_jwt

AK, SK = "FAKE-AK-ID", "fake-secret-not-real"
PASSWORD = "FIXED-REGISTRY-PASSWORD-SECRET"
ACCOUNT_B_ROLE = "acs:ram::2222222222222222:role/kubernetesworkerrole-test"
RRSA_ROLE = "acs:ram::1234567890123456:role/acr-helper-rrsa"
OIDC_PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-cfake"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("ALIBABA_CLOUD_", "ACR_HELPER_")) or name.lower() in (
            "http_proxy",
            "https_proxy",
        ):
            monkeypatch.delenv(name)


@pytest.fixture
def emu() -> Iterator[AliyunEmulator]:
    e = AliyunEmulator(
        region="cn-hangzhou", access_keys={AK: SK}, fixed_registry_credentials=("cr_temp_user", PASSWORD)
    )
    e.add_instance("cri-xxx", name="xxx")
    e.add_instance("cri-bj", name="bj", region="cn-beijing")
    e.add_role(ACCOUNT_B_ROLE)
    e.add_role(RRSA_ROLE)
    e.add_oidc_provider(OIDC_PROVIDER)
    with e:
        yield e


def manifest(tmp_path: Path, registry_info: str, extra: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(registry_info).strip("\n"), " " * 4)
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: acr-configuration\n  namespace: kube-system\n"
        "data:\n  service-account: default\n  watch-namespace: all\n  expiring-threshold: 15m\n"
        f"{extra}  acr-registry-info: |\n{body}\n"
    )
    path = tmp_path / "cm.yaml"
    path.write_text(text)
    return str(path)


def run(
    capsys: pytest.CaptureFixture[str], emu: AliyunEmulator | None, path: str, *extra: str
) -> tuple[int, str]:
    argv = ["check", "-f", path, "--region", "cn-hangzhou"]
    if emu is not None:
        argv += ["--cr-endpoint", emu.url, "--sts-endpoint", emu.url, "--ecs-metadata-endpoint", emu.url]
    code = main([*argv, *extra])
    out = capsys.readouterr()
    text = out.out + out.err
    for secret in (PASSWORD, SK, "SECRET"):
        assert secret not in text
    return code, out.out


def run_json(capsys, emu, path, *extra) -> tuple[int, dict]:
    code, out = run(capsys, emu, path, "-o", "json", *extra)
    return code, json.loads(out)


def test_scenario_enterprise_edition(tmp_path, emu, capsys) -> None:
    path = manifest(
        tmp_path,
        """
        - instanceId: "cri-xxx"
          regionId: "cn-hangzhou"
    """,
    )
    code, out = run(capsys, emu, path)
    assert code == 0
    assert "registry cri-xxx@cn-hangzhou" in out
    assert "credentials: worker-role" in out
    assert (
        "xxx-registry.cn-hangzhou.cr.aliyuncs.com" in out
        and "xxx-registry-vpc.cn-hangzhou.cr.aliyuncs.com" in out
    )
    assert "token:       ok" in out and "all registries ok" in out


def test_scenario_enterprise_with_domains_from_the_guide(tmp_path, emu, capsys) -> None:
    path = manifest(
        tmp_path,
        """
        - instanceId: "cri-xxx"
          regionId: "cn-hangzhou"
          domains: "xxx.com","yyy.com"
    """,
    )
    code, doc = run_json(capsys, emu, path)
    assert code == 0, doc
    assert doc["registries"][0]["domains"] == ["xxx.com", "yyy.com"]
    assert emu.calls("ListInstanceEndpoint") == 0


def test_scenario_personal_edition(tmp_path, emu, capsys) -> None:
    path = manifest(
        tmp_path,
        """
        - instanceId: ""
          regionId: "cn-hangzhou"
    """,
    )
    code, doc = run_json(capsys, emu, path)
    assert code == 0
    reg = doc["registries"][0]
    assert reg["edition"] == "personal" and reg["status"] == "ok"
    assert "registry.cn-hangzhou.aliyuncs.com" in reg["domains"]
    assert emu.calls("PersonalToken") == 1


def test_scenario_both_editions(tmp_path, emu, capsys) -> None:
    path = manifest(
        tmp_path,
        """
        - instanceId: ""
        - instanceId: "cri-xxx"
    """,
    )
    code, doc = run_json(capsys, emu, path)
    assert code == 0 and doc["ok"]
    assert [(r["edition"], r["status"]) for r in doc["registries"]] == [
        ("personal", "ok"),
        ("enterprise", "ok"),
    ]


def test_scenario_cross_region(tmp_path, emu, capsys) -> None:
    path = manifest(
        tmp_path,
        """
        - instanceId: ""
          regionId: cn-beijing
        - instanceId: ""
          regionId: cn-hangzhou
        - instanceId: cri-bj
          regionId: cn-beijing
    """,
    )
    code, doc = run_json(capsys, emu, path)
    assert code == 0
    assert [r["region"] for r in doc["registries"]] == ["cn-beijing", "cn-hangzhou", "cn-beijing"]
    assert "registry.cn-beijing.aliyuncs.com" in doc["registries"][0]["domains"]
    assert "bj-registry.cn-beijing.cr.aliyuncs.com" in doc["registries"][2]["domains"]


def test_scenario_cross_account_by_role(tmp_path, emu, capsys) -> None:
    path = manifest(
        tmp_path,
        f"""
        - instanceId: ""
          regionId: cn-beijing
          domains: registry.cn-beijing.aliyuncs.com
          assumeRoleARN: {ACCOUNT_B_ROLE}
    """,
    )
    code, out = run(capsys, emu, path)
    assert code == 0
    assert f"credentials: worker-role + assume-role({ACCOUNT_B_ROLE})" in out
    assert emu.calls("AssumeRole") == 1


def test_scenario_cross_account_by_access_key(tmp_path, emu, capsys) -> None:
    path = manifest(
        tmp_path,
        f"""
        - instanceId: ""
          customAccessKey: "{AK}"
          customAccessKeySecret: "{SK}"
    """,
    )
    code, out = run(capsys, emu, path)
    assert code == 0 and "credentials: access-key\n" in out
    assert emu.calls("imds-credentials") == 0


def test_scenario_rrsa(tmp_path, emu, capsys, monkeypatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(make_fake_jwt({"sub": "system:serviceaccount:kube-system:acr-helper"}))
    monkeypatch.setenv("ALIBABA_CLOUD_ROLE_ARN", RRSA_ROLE)
    monkeypatch.setenv("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER)
    monkeypatch.setenv("ALIBABA_CLOUD_OIDC_TOKEN_FILE", str(token_file))
    path = manifest(
        tmp_path,
        """
        - instanceId: cri-xxx
    """,
        extra="  rrsa: |\n    enable: true\n",
    )
    code, doc = run_json(capsys, emu, path)
    assert code == 0, doc
    assert doc["registries"][0]["credentialSource"] == "rrsa"
    assert emu.calls("AssumeRoleWithOIDC") == 1


def test_offline_calls_nothing(tmp_path, emu, capsys) -> None:
    path = manifest(
        tmp_path,
        f"""
        - instanceId: cri-xxx
        - instanceId: ""
          regionId: cn-beijing
          assumeRoleARN: {ACCOUNT_B_ROLE}
        - instanceId: ""
          accessKeySecretRef: my-ak
    """,
    )
    code, out = run(capsys, emu, path, "--offline")
    assert code == 0
    assert "all instance domains" in out and "not checked (--offline)" in out
    assert f"worker-role + assume-role({ACCOUNT_B_ROLE})" in out
    assert "secret-ref" in out
    assert emu.calls() == 0


# ----------------------------------------------------------------------------------------------
# failure modes


def test_forbidden_ram_prints_identity_and_actions(tmp_path, emu, capsys) -> None:
    emu.deny(emu.role_name, "GetAuthorizationToken")
    path = manifest(tmp_path, "- instanceId: cri-xxx\n")
    code, out = run(capsys, emu, path)
    assert code == 1
    assert "Forbidden.RAM" in out
    assert "worker RAM role KubernetesWorkerRole-fake" in out
    for action in ("cr:GetAuthorizationToken", "cr:ListInstanceEndpoint", "cr:PullRepository"):
        assert action in out
    assert "0 ok, 1 failed" in out


def test_instance_in_another_region_suggests_region_id(tmp_path, capsys) -> None:
    with AliyunEmulator(region="cn-hangzhou", strict_region=True) as e:
        e.add_instance("cri-bj", name="bj", region="cn-beijing")
        code, doc = run_json(capsys, e, manifest(tmp_path, "- instanceId: cri-bj\n"))
    assert code == 1
    err = doc["registries"][0]["error"]
    assert err["code"] == "INSTANCE_NOT_EXIST" and "regionId" in err["advice"] and not err["retryable"]


def test_bad_access_key_secret(tmp_path, emu, capsys) -> None:
    path = manifest(
        tmp_path,
        f"""
        - instanceId: cri-xxx
          customAccessKey: "{AK}"
          customAccessKeySecret: "wrong-fake-secret"
    """,
    )
    code, doc = run_json(capsys, emu, path)
    assert code == 1
    err = doc["registries"][0]["error"]
    assert err["code"] == "SignatureDoesNotMatch" and "customAccessKeySecret" in err["advice"]


def test_unknown_access_key(tmp_path, emu, capsys) -> None:
    path = manifest(
        tmp_path,
        """
        - instanceId: cri-xxx
          customAccessKey: "FAKE-UNKNOWN-AK"
          customAccessKeySecret: "fake-other-secret"
    """,
    )
    code, doc = run_json(capsys, emu, path)
    assert code == 1 and doc["registries"][0]["error"]["code"] == "InvalidAccessKeyId.NotFound"
    assert "FAKE-UNKNOWN-AK" in doc["registries"][0]["error"]["advice"]


def test_throttling_and_server_errors_are_reported_retryable(tmp_path, emu, capsys) -> None:
    emu.inject_fault("PersonalToken", "throttle-retry-after", retry_after_ms=1500)
    emu.inject_fault("GetAuthorizationToken", "503")
    path = manifest(tmp_path, "- instanceId: ''\n- instanceId: cri-xxx\n")
    code, doc = run_json(capsys, emu, path)
    assert code == 1
    pe, ee = (r["error"] for r in doc["registries"])
    assert pe["code"] == "Throttling.User" and pe["retryable"] and "1.5s" in pe["advice"]
    assert ee["code"] == "ServiceUnavailable" and ee["retryable"]


def test_assume_role_denied(tmp_path, capsys) -> None:
    with AliyunEmulator(region="cn-hangzhou") as e:
        e.add_role(ACCOUNT_B_ROLE, trusted=False)
        path = manifest(tmp_path, f"- instanceId: ''\n  assumeRoleARN: {ACCOUNT_B_ROLE}\n")
        code, out = run(capsys, e, path)
    assert code == 1 and "NoPermission" in out and "trust policy" in out


def test_unreachable_endpoint(tmp_path, capsys) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = manifest(tmp_path, f"- instanceId: ''\n  customAccessKey: {AK}\n  customAccessKeySecret: {SK}\n")
    code, doc = run_json(capsys, None, path, "--cr-endpoint", f"http://127.0.0.1:{port}")
    assert code == 1
    err = doc["registries"][0]["error"]
    assert err["code"] == "NetworkError" and err["retryable"] and "--use-vpc-endpoints" in err["advice"]


def test_secret_ref_without_kubeconfig(tmp_path, emu, capsys) -> None:
    path = manifest(tmp_path, "- instanceId: cri-xxx\n  accessKeySecretRef: my-ak\n")
    code, doc = run_json(capsys, emu, path)
    assert code == 1
    assert "--kubeconfig" in doc["registries"][0]["error"]["advice"]


def test_invalid_config_exits_1_and_calls_nothing(tmp_path, emu, capsys) -> None:
    path = manifest(tmp_path, "- instanceId: cri-xxx\n  expireDuration: 10\n")
    code, doc = run_json(capsys, emu, path)
    assert code == 1 and not doc["valid"] and doc["errors"]
    assert emu.calls() == 0


def test_missing_file_is_a_usage_error(tmp_path, capsys) -> None:
    assert main(["check", "-f", str(tmp_path / "nope.yaml"), "--offline"]) == 2
    assert "cannot read" in capsys.readouterr().err
