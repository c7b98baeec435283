"""Unit tests through `responses`: every call the tokens package makes and every error class."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from tokens_helpers import (
    CR_ANY,
    CR_URL,
    FAKE_AK,
    FAKE_SECRET,
    IMDS,
    NOW,
    STS_URL,
    action,
    add_imds,
    ee_token_body,
    endpoints_body,
    error_body,
    pe_token_body,
    sts_body,
)

from acr_helper.core.config import RegistryConfig
from acr_helper.settings import TokenSettings
from acr_helper.tokens import TokenError, TokenService
from acr_helper.tokens.acr import enabled_domains, parse_ee_token, parse_pe_token
from acr_helper.tokens.sdk import parse_endpoint

SETTINGS = TokenSettings(region="cn-hangzhou")
AK_ENTRY = dict(custom_access_key=FAKE_AK, custom_access_key_secret=FAKE_SECRET)
ROLE = "acs:ram::1234567890123456:role/cross"


def service(settings: TokenSettings = SETTINGS, **kw: object) -> TokenService:
    return TokenService(settings, environ=kw.pop("environ", {}), **kw)  # type: ignore[arg-type]


def query(call: responses.Call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(call.request.url).query).items()}


# ----------------------------------------------------------------------------------------------
# Enterprise Edition


def test_ee_token_with_configured_domains_makes_one_call(rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.POST,
        CR_URL,
        json=ee_token_body(NOW + timedelta(hours=1)),
        match=[action("GetAuthorizationToken")],
    )
    reg = RegistryConfig(instance_id="cri-abc", domains=("B.example.com", "a.example.com"), **AK_ENTRY)
    tok = service().fetch("cri-abc", reg, rrsa_enabled=False, now=NOW)
    assert tok.username == "cr_temp_user"
    assert tok.password.reveal() == "ee-password-SECRET-1"
    assert tok.expires_at == NOW + timedelta(hours=1)
    assert tok.obtained_at == NOW
    assert tok.domains == ("a.example.com", "b.example.com")
    assert tok.source == "access-key"
    assert len(rsps.calls) == 1
    req = rsps.calls[0].request
    assert query(rsps.calls[0]) == {"InstanceId": "cri-abc"}
    assert req.headers["x-acs-version"] == "2018-12-01"
    assert f"Credential={FAKE_AK}," in req.headers["authorization"]
    assert "x-acs-security-token" not in req.headers


def test_ee_domains_from_list_instance_endpoint_are_cached(rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.POST,
        CR_URL,
        json=ee_token_body(NOW + timedelta(hours=1)),
        match=[action("GetAuthorizationToken")],
    )
    rsps.add(
        responses.POST,
        CR_URL,
        json=endpoints_body(
            (
                "internet",
                True,
                [("inst-registry.cn-hangzhou.cr.aliyuncs.com", "SYSTEM"), ("reg.example.com", "USER")],
            ),
            ("vpc", True, [("inst-registry-vpc.cn-hangzhou.cr.aliyuncs.com", "SYSTEM")]),
            ("internet", False, [("disabled.example.com", "USER")]),
        ),
        match=[action("ListInstanceEndpoint")],
    )
    svc = service(TokenSettings(region="cn-hangzhou", endpoint_cache_seconds=600))
    reg = RegistryConfig(instance_id="cri-abc", **AK_ENTRY)
    tok = svc.fetch("cri-abc", reg, rrsa_enabled=False, now=NOW)
    assert tok.domains == (
        "inst-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
        "inst-registry.cn-hangzhou.cr.aliyuncs.com",
        "reg.example.com",
    )
    lie = [c for c in rsps.calls if c.request.headers["x-acs-action"] == "ListInstanceEndpoint"]
    assert query(lie[0]) == {"InstanceId": "cri-abc", "ModuleName": "Registry"}
    svc.fetch("cri-abc", reg, rrsa_enabled=False, now=NOW + timedelta(minutes=9))
    assert svc.cr_calls == {"GetAuthorizationToken": 2, "ListInstanceEndpoint": 1, "PersonalTokens": 0}
    svc.fetch("cri-abc", reg, rrsa_enabled=False, now=NOW + timedelta(minutes=11))
    assert svc.cr_calls["ListInstanceEndpoint"] == 2


def test_enabled_domains_filters_and_sorts() -> None:
    eps = endpoints_body(
        ("internet", True, [("X.example.com", "USER"), ("x.example.com", "SYSTEM")]),
        ("vpc", False, [("vpc.example.com", "SYSTEM")]),
        ("other", True, [("other.example.com", "SYSTEM")]),
    )["Endpoints"]
    assert enabled_domains(eps) == ("x.example.com",)


def test_ee_is_success_false_is_terminal_with_region_advice(rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.POST, CR_URL, json={"RequestId": "R9", "IsSuccess": False, "Code": "INSTANCE_NOT_EXIST"}
    )
    with pytest.raises(TokenError) as ei:
        service().fetch(
            "cri-x",
            RegistryConfig(instance_id="cri-x", domains=("d",), **AK_ENTRY),
            rrsa_enabled=False,
            now=NOW,
        )
    err = ei.value
    assert err.code == "INSTANCE_NOT_EXIST"
    assert not err.retryable
    assert err.request_id == "R9"
    assert "regionId" in err.advice and "cn-hangzhou" in err.advice


def test_parse_helpers_reject_empty_tokens() -> None:
    with pytest.raises(TokenError) as ei:
        parse_ee_token(
            "k", {"IsSuccess": True, "TempUsername": "u", "AuthorizationToken": "", "ExpireTime": 1}
        )
    assert ei.value.code == "InvalidResponse" and ei.value.retryable
    with pytest.raises(TokenError):
        parse_ee_token("k", {"TempUsername": "u", "AuthorizationToken": "p", "ExpireTime": "soon"})
    with pytest.raises(TokenError):
        parse_pe_token("k", {"data": {"tempUserName": "u", "authorizationToken": "p"}})
    with pytest.raises(TokenError):
        parse_pe_token("k", {"code": "x"})


def test_expired_token_from_api_is_rejected(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, CR_URL, json=ee_token_body(NOW - timedelta(seconds=1)))
    with pytest.raises(TokenError) as ei:
        service().fetch(
            "k",
            RegistryConfig(instance_id="cri-abc", domains=("d",), **AK_ENTRY),
            rrsa_enabled=False,
            now=NOW,
        )
    assert ei.value.code == "TokenExpired"


# ----------------------------------------------------------------------------------------------
# Personal Edition


def test_pe_token_via_get_tokens_with_default_domains(rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.GET,
        "https://cr.cn-beijing.aliyuncs.com/tokens",
        json=pe_token_body(NOW + timedelta(hours=1)),
    )
    tok = service().fetch(
        "personal/cn-beijing", RegistryConfig(region_id="cn-beijing", **AK_ENTRY), rrsa_enabled=False, now=NOW
    )
    assert tok.password.reveal() == "pe-password-SECRET-2"
    assert tok.domains == (
        "registry-intl-vpc.cn-beijing.aliyuncs.com",
        "registry-intl.cn-beijing.aliyuncs.com",
        "registry-vpc.cn-beijing.aliyuncs.com",
        "registry.cn-beijing.aliyuncs.com",
    )
    req = rsps.calls[0].request
    assert req.method == "GET"
    assert req.headers["x-acs-version"] == "2016-06-07"
    assert req.headers["x-acs-action"] == "GetAuthorizationToken"


def test_vpc_endpoints_and_endpoint_override(rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.GET,
        "https://cr-vpc.cn-hangzhou.aliyuncs.com/tokens",
        json=pe_token_body(NOW + timedelta(hours=1)),
    )
    service(TokenSettings(region="cn-hangzhou", use_vpc_endpoints=True)).fetch(
        "p", RegistryConfig(**AK_ENTRY), rrsa_enabled=False, now=NOW
    )
    rsps.add(responses.GET, "http://127.0.0.1:9/tokens", json=pe_token_body(NOW + timedelta(hours=1)))
    service(TokenSettings(region="cn-hangzhou", cr_endpoint="http://127.0.0.1:9")).fetch(
        "p", RegistryConfig(**AK_ENTRY), rrsa_enabled=False, now=NOW
    )
    assert [c.request.url for c in rsps.calls] == [
        "https://cr-vpc.cn-hangzhou.aliyuncs.com/tokens",
        "http://127.0.0.1:9/tokens",
    ]


def test_parse_endpoint() -> None:
    assert parse_endpoint("http://127.0.0.1:8080").host == "127.0.0.1:8080"
    assert parse_endpoint("http://127.0.0.1:8080").protocol == "http"
    assert parse_endpoint("https://cr.example.com/").protocol == "https"
    assert parse_endpoint("sts-vpc.cn-hangzhou.aliyuncs.com").protocol is None
    assert parse_endpoint(None) is None and parse_endpoint("  ") is None
    with pytest.raises(ValueError):
        parse_endpoint("ftp://x")


# ----------------------------------------------------------------------------------------------
# Error classification (every class)


def _ee_error(
    rsps: responses.RequestsMock,
    status: int,
    body: object,
    headers: dict[str, str] | None = None,
    entry: dict[str, object] | None = None,
) -> TokenError:
    if isinstance(body, (dict, list)):
        rsps.add(responses.POST, CR_URL, json=body, status=status, headers=headers or {})
    else:
        rsps.add(
            responses.POST,
            CR_URL,
            body=str(body),
            status=status,
            headers=headers or {},
            content_type="text/html",
        )
    reg = RegistryConfig(instance_id="cri-abc", domains=("d",), **(entry if entry is not None else AK_ENTRY))
    with pytest.raises(TokenError) as ei:
        service().fetch("cri-abc", reg, rrsa_enabled=False, now=NOW)
    err = ei.value
    assert FAKE_SECRET not in str(err) and FAKE_SECRET not in repr(err)
    return err


def test_forbidden_ram_names_identity_and_actions(rsps: responses.RequestsMock) -> None:
    err = _ee_error(
        rsps,
        403,
        {
            **error_body("Forbidden.RAM", "User not authorized"),
            "AccessDeniedDetail": {"AuthAction": "cr:GetAuthorizationToken"},
        },
    )
    assert err.code == "Forbidden.RAM" and err.http_status == 403 and not err.retryable
    assert err.request_id == "REQ-ERR"
    for needed in ("cr:GetAuthorizationToken", "cr:ListInstanceEndpoint", "cr:PullRepository", FAKE_AK):
        assert needed in err.advice
    assert err.advice in str(err)


def test_forbidden_for_worker_role_names_the_role(rsps: responses.RequestsMock) -> None:
    add_imds(rsps)
    err = _ee_error(rsps, 403, error_body("Forbidden.RAM"), entry={})
    assert "worker RAM role KubernetesWorkerRole-test" in err.advice


def test_instance_not_exist_http_404(rsps: responses.RequestsMock) -> None:
    err = _ee_error(rsps, 404, error_body("INSTANCE_NOT_EXIST", "The instance does not exist."))
    assert err.code == "INSTANCE_NOT_EXIST" and not err.retryable
    assert "regionId" in err.advice


@pytest.mark.parametrize(
    ("code", "status", "fragment"),
    [
        ("InvalidAccessKeyId.NotFound", 404, "AccessKey ID"),
        ("InvalidAccessKeyId.Inactive", 400, "AccessKey ID"),
        ("SignatureDoesNotMatch", 400, "secret does not match"),
    ],
)
def test_bad_access_key_is_terminal(
    rsps: responses.RequestsMock, code: str, status: int, fragment: str
) -> None:
    err = _ee_error(rsps, status, error_body(code))
    assert err.code == code and not err.retryable
    assert fragment in err.advice


def test_throttling_without_retry_after(rsps: responses.RequestsMock) -> None:
    err = _ee_error(rsps, 400, error_body("Throttling.User", "Request was denied due to user flow control."))
    assert err.retryable and err.retry_after is None and err.code == "Throttling.User"


def test_throttling_honours_x_acs_retry_after(rsps: responses.RequestsMock) -> None:
    err = _ee_error(rsps, 400, error_body("Throttling.User"), headers={"x-acs-retry-after": "2500"})
    assert err.retryable and err.retry_after == pytest.approx(2.5)


def test_http_429_is_retryable(rsps: responses.RequestsMock) -> None:
    err = _ee_error(rsps, 429, error_body("Throttling"))
    assert err.retryable and err.http_status == 429


@pytest.mark.parametrize(("status", "code"), [(500, "InternalError"), (503, "ServiceUnavailable")])
def test_server_errors_are_retryable(rsps: responses.RequestsMock, status: int, code: str) -> None:
    err = _ee_error(rsps, status, error_body(code))
    assert err.retryable and err.http_status == status and err.code == code


def test_non_json_error_body_is_retryable(rsps: responses.RequestsMock) -> None:
    err = _ee_error(rsps, 502, "<html>Bad Gateway</html>")
    assert err.retryable and err.code == "InvalidResponse"


def test_connection_error_is_retryable_and_secret_free(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, CR_URL, body=requests.ConnectionError("connection refused to host"))
    with pytest.raises(TokenError) as ei:
        service().fetch(
            "k",
            RegistryConfig(instance_id="cri-abc", domains=("d",), **AK_ENTRY),
            rrsa_enabled=False,
            now=NOW,
        )
    assert ei.value.retryable and ei.value.code == "NetworkError"
    assert "cr.cn-hangzhou.aliyuncs.com" in str(ei.value)


def test_invalid_security_token_drops_cached_sts_credentials(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, STS_URL, json=sts_body(NOW + timedelta(hours=1)), match=[action("AssumeRole")])
    rsps.add(responses.POST, CR_URL, json=error_body("InvalidSecurityToken.Expired"), status=400)
    svc = service()
    reg = RegistryConfig(instance_id="cri-abc", domains=("d",), assume_role_arn=ROLE, **AK_ENTRY)
    with pytest.raises(TokenError) as ei:
        svc.fetch("k", reg, rrsa_enabled=False, now=NOW)
    assert ei.value.retryable
    rsps.replace(responses.POST, CR_URL, json=ee_token_body(NOW + timedelta(hours=1)))
    svc.fetch("k", reg, rrsa_enabled=False, now=NOW + timedelta(seconds=5))
    assert svc.credentials.sts_calls["AssumeRole"] == 2


# ----------------------------------------------------------------------------------------------
# STS


def test_assume_role_on_access_key_uses_sts_credentials(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.POST, STS_URL, json=sts_body(NOW + timedelta(hours=1)), match=[action("AssumeRole")])
    rsps.add(responses.POST, CR_URL, json=ee_token_body(NOW + timedelta(hours=1)))
    reg = RegistryConfig(
        instance_id="cri-abc", domains=("d",), assume_role_arn=ROLE, expire_duration=1800, **AK_ENTRY
    )
    svc = service()
    tok = svc.fetch("cri-abc", reg, rrsa_enabled=False, now=NOW)
    assert tok.source == f"access-key + assume-role({ROLE})"
    sts_call, cr_call = rsps.calls[0], rsps.calls[1]
    assert sts_call.request.url.startswith("https://sts.cn-hangzhou.aliyuncs.com/")
    assert query(sts_call) == {
        "DurationSeconds": "1800",
        "RoleArn": ROLE,
        "RoleSessionName": "acr-helper-cri-abc",
    }
    assert f"Credential={FAKE_AK}," in sts_call.request.headers["authorization"]
    assert "Credential=STS.fake-sts-ak," in cr_call.request.headers["authorization"]
    assert cr_call.request.headers["x-acs-security-token"] == "sts-token-SECRET-4"
    # reused while fresh: a second fetch 10 minutes later makes no STS call
    svc.fetch("cri-abc", reg, rrsa_enabled=False, now=NOW + timedelta(minutes=10))
    assert svc.credentials.sts_calls["AssumeRole"] == 1
    # past half of its lifetime: renewed
    svc.fetch("cri-abc", reg, rrsa_enabled=False, now=NOW + timedelta(minutes=31))
    assert svc.credentials.sts_calls["AssumeRole"] == 2


@pytest.mark.parametrize(
    ("status", "code", "fragment"),
    [
        (404, "EntityNotExist.Role", "does not exist"),
        (403, "NoPermission", "AliyunSTSAssumeRoleAccess"),
        (400, "InvalidParameter.DurationSeconds", "MaxSessionDuration"),
    ],
)
def test_assume_role_errors_have_advice(
    rsps: responses.RequestsMock, status: int, code: str, fragment: str
) -> None:
    rsps.add(responses.POST, STS_URL, json=error_body(code), status=status)
    reg = RegistryConfig(instance_id="cri-abc", domains=("d",), assume_role_arn=ROLE, **AK_ENTRY)
    with pytest.raises(TokenError) as ei:
        service().fetch("k", reg, rrsa_enabled=False, now=NOW)
    assert ei.value.code == code and ei.value.action == "AssumeRole"
    assert fragment in ei.value.advice
    assert not ei.value.retryable


def test_sts_endpoint_from_environment(rsps: responses.RequestsMock) -> None:
    rsps.add(
        responses.POST, "https://sts-vpc.cn-shanghai.aliyuncs.com/", json=sts_body(NOW + timedelta(hours=1))
    )
    rsps.add(responses.POST, CR_URL, json=ee_token_body(NOW + timedelta(hours=1)))
    svc = service(environ={"ALIBABA_CLOUD_STS_ENDPOINT": "sts-vpc.cn-shanghai.aliyuncs.com"})
    svc.fetch(
        "k",
        RegistryConfig(instance_id="cri-abc", domains=("d",), assume_role_arn=ROLE, **AK_ENTRY),
        rrsa_enabled=False,
        now=NOW,
    )
    assert rsps.calls[0].request.url.startswith("https://sts-vpc.cn-shanghai.aliyuncs.com/")


def test_rrsa_reads_token_file_each_sts_call(rsps: responses.RequestsMock, tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("oidc-jwt-one\n")
    rsps.add(
        responses.POST, STS_URL, json=sts_body(NOW + timedelta(hours=1)), match=[action("AssumeRoleWithOIDC")]
    )
    rsps.add(responses.POST, CR_URL, json=ee_token_body(NOW + timedelta(hours=1)))
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": "acs:ram::1:role/rrsa",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "acs:ram::1:oidc-provider/ack-rrsa-c",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
    }
    svc = service(environ=env)
    reg = RegistryConfig(instance_id="cri-abc", domains=("d",))
    assert svc.credential_source(reg, rrsa_enabled=True) == "rrsa"
    svc.fetch("k", reg, rrsa_enabled=True, now=NOW)
    q = query(rsps.calls[0])
    assert q["OIDCToken"] == "oidc-jwt-one"
    assert q["RoleArn"] == "acs:ram::1:role/rrsa"
    assert q["OIDCProviderArn"] == "acs:ram::1:oidc-provider/ack-rrsa-c"
    assert "authorization" not in rsps.calls[0].request.headers  # anonymous
    token_file.write_text("oidc-jwt-two")
    svc.fetch("k", reg, rrsa_enabled=True, now=NOW + timedelta(minutes=40))  # past half-life: new STS call
    assert query(rsps.calls[-2])["OIDCToken"] == "oidc-jwt-two"


def test_rrsa_entry_arns_win_over_environment(rsps: responses.RequestsMock, tmp_path) -> None:
    token_file = tmp_path / "t"
    token_file.write_text("jwt")
    rsps.add(responses.POST, STS_URL, json=sts_body(NOW + timedelta(hours=1)))
    rsps.add(responses.POST, CR_URL, json=ee_token_body(NOW + timedelta(hours=1)))
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": "acs:ram::1:role/env",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "env-p",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
    }
    reg = RegistryConfig(
        instance_id="cri-abc",
        domains=("d",),
        rrsa_role_arn="acs:ram::1:role/entry",
        rrsa_oidc_provider_role_arn="entry-p",
    )
    service(environ=env).fetch("k", reg, rrsa_enabled=True, now=NOW)
    q = query(rsps.calls[0])
    assert (q["RoleArn"], q["OIDCProviderArn"]) == ("acs:ram::1:role/entry", "entry-p")


def test_rrsa_missing_configuration_and_token_file() -> None:
    with pytest.raises(TokenError) as ei:
        service().fetch("k", RegistryConfig(instance_id="cri-abc"), rrsa_enabled=True, now=NOW)
    assert ei.value.code == "InvalidConfig" and "rrsaRoleARN" in str(ei.value)
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": "r",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "p",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": "/nonexistent/acr-helper-test/token",
    }
    with pytest.raises(TokenError) as ei:
        service(environ=env).fetch("k", RegistryConfig(instance_id="cri-abc"), rrsa_enabled=True, now=NOW)
    assert ei.value.code == "OIDCTokenFileUnreadable" and ei.value.retryable


def test_rrsa_oidc_token_rejected(rsps: responses.RequestsMock, tmp_path) -> None:
    token_file = tmp_path / "t"
    token_file.write_text("expired-jwt-SECRET")
    rsps.add(responses.POST, STS_URL, json=error_body("AuthenticationFail.OIDCToken.Expired"), status=400)
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": "r",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "p",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
    }
    with pytest.raises(TokenError) as ei:
        service(environ=env).fetch("k", RegistryConfig(instance_id="cri-abc"), rrsa_enabled=True, now=NOW)
    assert "OIDC token was rejected" in ei.value.advice
    assert "expired-jwt-SECRET" not in str(ei.value)


# ----------------------------------------------------------------------------------------------
# Credential sources and IMDS


def test_credential_source_labels() -> None:
    secrets = {
        "ak-ref": {"access-key-id": "REF-AK", "access-key-secret": "ref-secret"},
        "alibaba-addon-secret": {"access-key-id": "ADDON-AK", "access-key-secret": "addon-secret"},
    }
    svc = service(secret_reader=secrets.get)
    assert svc.credential_source(RegistryConfig(**AK_ENTRY), rrsa_enabled=True) == "access-key"
    assert (
        svc.credential_source(RegistryConfig(access_key_secret_ref="ak-ref"), rrsa_enabled=False)
        == "secret-ref"
    )
    assert (
        svc.credential_source(
            RegistryConfig(rrsa_role_arn="r", rrsa_oidc_provider_role_arn="p"), rrsa_enabled=True
        )
        == "rrsa"
    )
    assert svc.credential_source(RegistryConfig(), rrsa_enabled=False) == "addon-secret"
    assert service().credential_source(RegistryConfig(assume_role_arn=ROLE), rrsa_enabled=False) == (
        f"worker-role + assume-role({ROLE})"
    )


def test_secret_ref_is_read_at_every_fetch_and_missing_secret_is_explained(
    rsps: responses.RequestsMock,
) -> None:
    store: dict[str, dict[str, str]] = {}
    svc = service(secret_reader=store.get)
    reg = RegistryConfig(instance_id="cri-abc", domains=("d",), access_key_secret_ref="ak-ref")
    with pytest.raises(TokenError) as ei:
        svc.fetch("k", reg, rrsa_enabled=False, now=NOW)
    assert ei.value.code == "SecretNotFound" and "access-key-id" in ei.value.advice
    store["ak-ref"] = {"access-key-id": "REF-AK"}
    with pytest.raises(TokenError) as ei:
        svc.fetch("k", reg, rrsa_enabled=False, now=NOW)
    assert ei.value.code == "SecretIncomplete" and "access-key-secret" in str(ei.value)
    store["ak-ref"] = {"access-key-id": "REF-AK", "access-key-secret": "ref-secret"}
    rsps.add(responses.POST, CR_URL, json=ee_token_body(NOW + timedelta(hours=1)))
    svc.fetch("k", reg, rrsa_enabled=False, now=NOW)
    store["ak-ref"] = {"access-key-id": "REF-AK-2", "access-key-secret": "ref-secret-2"}
    svc.fetch("k", reg, rrsa_enabled=False, now=NOW)
    creds = [c.request.headers["authorization"].split("Credential=")[1].split(",")[0] for c in rsps.calls]
    assert creds == ["REF-AK", "REF-AK-2"]


def test_worker_role_via_imdsv2(rsps: responses.RequestsMock) -> None:
    add_imds(rsps)
    rsps.add(responses.POST, CR_URL, json=ee_token_body(NOW + timedelta(hours=1)))
    svc = service()
    tok = svc.fetch("k", RegistryConfig(instance_id="cri-abc", domains=("d",)), rrsa_enabled=False, now=NOW)
    assert tok.source == "worker-role"
    imds_calls = [c for c in rsps.calls if c.request.url.startswith(IMDS)]
    assert imds_calls[0].request.method == "PUT"
    assert imds_calls[0].request.headers["X-aliyun-ecs-metadata-token-ttl-seconds"] == "21600"
    gets = [c for c in imds_calls if c.request.method == "GET"]
    assert all(c.request.headers.get("X-aliyun-ecs-metadata-token") == "imds-session-token" for c in gets)
    cr = rsps.calls[-1].request
    assert "Credential=STS.worker-ak," in cr.headers["authorization"]
    assert cr.headers["x-acs-security-token"] == "worker-token-SECRET-6"
    # cached: no new metadata reads for the next fetch
    before = len(rsps.calls)
    svc.fetch("k", RegistryConfig(instance_id="cri-abc", domains=("d",)), rrsa_enabled=False, now=NOW)
    assert len(rsps.calls) == before + 1


def test_worker_role_via_imdsv1_fallback(rsps: responses.RequestsMock) -> None:
    add_imds(rsps, v2=False)
    rsps.add(responses.POST, CR_URL, json=ee_token_body(NOW + timedelta(hours=1)))
    service().fetch("k", RegistryConfig(instance_id="cri-abc", domains=("d",)), rrsa_enabled=False, now=NOW)
    gets = [c for c in rsps.calls if c.request.url.startswith(IMDS) and c.request.method == "GET"]
    assert gets and all("X-aliyun-ecs-metadata-token" not in c.request.headers for c in gets)


def test_imdsv1_fallback_disabled(rsps: responses.RequestsMock) -> None:
    add_imds(rsps, v2=False)
    with pytest.raises(TokenError) as ei:
        service(TokenSettings(region="cn-hangzhou", imds_v1_fallback=False)).fetch(
            "k", RegistryConfig(instance_id="cri-abc", domains=("d",)), rrsa_enabled=False, now=NOW
        )
    assert ei.value.code == "WorkerRoleUnavailable"
    assert "IMDSv1 fallback is disabled" in str(ei.value)


def test_no_role_attached(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.PUT, f"{IMDS}/latest/api/token", body="t")
    rsps.add(responses.GET, f"{IMDS}/latest/meta-data/ram/security-credentials/", status=404)
    with pytest.raises(TokenError) as ei:
        service().fetch("k", RegistryConfig(), rrsa_enabled=False, now=NOW)
    assert not ei.value.retryable and "alibaba-addon-secret" in ei.value.advice


def test_default_region_order(rsps: responses.RequestsMock) -> None:
    assert (
        service(TokenSettings(region="cn-a"), environ={"ALIBABA_CLOUD_REGION_ID": "cn-b"}).default_region()
        == "cn-a"
    )
    assert service(TokenSettings(), environ={"ALIBABA_CLOUD_REGION_ID": "cn-b"}).default_region() == "cn-b"
    add_imds(rsps)
    svc = service(TokenSettings())
    assert svc.default_region() == "cn-hangzhou"
    assert svc.default_region() == "cn-hangzhou"
    assert sum(1 for c in rsps.calls if c.request.url.endswith("region-id")) == 1


def test_default_region_unknown(rsps: responses.RequestsMock) -> None:
    rsps.add(responses.PUT, f"{IMDS}/latest/api/token", body=requests.ConnectionError("no route"))
    rsps.add(responses.GET, f"{IMDS}/latest/meta-data/region-id", body=requests.ConnectionError("no route"))
    with pytest.raises(TokenError) as ei:
        service(TokenSettings()).default_region()
    assert "--region" in ei.value.advice


def test_cr_request_carries_no_region_dependent_surprises(rsps: responses.RequestsMock) -> None:
    """Cross-region entries call the instance's regional endpoint."""
    rsps.add(responses.POST, CR_ANY, json=ee_token_body(NOW + timedelta(hours=1)))
    service().fetch(
        "k",
        RegistryConfig(instance_id="cri-abc", region_id="cn-beijing", domains=("d",), **AK_ENTRY),
        rrsa_enabled=False,
        now=NOW,
    )
    assert urlsplit(rsps.calls[0].request.url).hostname == "cr.cn-beijing.aliyuncs.com"
    assert json.loads(json.dumps(query(rsps.calls[0]))) == {"InstanceId": "cri-abc"}
