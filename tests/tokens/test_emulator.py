"""The emulator answers what the REAL Alibaba Cloud SDKs send, with the exact wire shapes.

Every CR/STS test drives the official SDK clients (cr20181201, the generic ``call_api`` for the
Personal Edition, sts20150401 and the credentials library) against the emulator over real HTTP on
127.0.0.1. IMDS is exercised with urllib (the controller has its own small IMDS client) plus one
compatibility check with the credentials library's ECS provider.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_cr20181201 import models as crm
from alibabacloud_cr20181201.client import Client as CrClient
from alibabacloud_credentials.client import Client as CredClient
from alibabacloud_credentials.exceptions import CredentialException
from alibabacloud_credentials.provider import (
    EcsRamRoleCredentialsProvider,
    OIDCRoleArnCredentialsProvider,
    RamRoleArnCredentialsProvider,
    StaticAKCredentialsProvider,
)
from alibabacloud_sts20150401 import models as stsm
from alibabacloud_sts20150401.client import Client as StsClient
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from alibabacloud_tea_openapi.utils_models import Config, OpenApiRequest, Params
from darabonba.exceptions import UnretryableException
from darabonba.runtime import RuntimeOptions

from acr_helper.tokens.emulator import (
    DEFAULT_ACCESS_KEY_ID,
    DEFAULT_ACCESS_KEY_SECRET,
    FAKE_ACCOUNT_ID,
    AliyunEmulator,
    format_expiration,
    make_fake_jwt,
)
from acr_helper.tokens.emulator_signing import rpc_v1_signature, rpc_v1_signatures, sign_acs3

ROLE = f"acs:ram::{FAKE_ACCOUNT_ID}:role/acr-puller"
OTHER_ACCOUNT_ROLE = "acs:ram::9999999999999999:role/cross-account"
OIDC_PROVIDER = f"acs:ram::{FAKE_ACCOUNT_ID}:oidc-provider/ack-rrsa-cfake"
EXPIRATION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDKs read HTTP(S)_PROXY on every request and ignore NO_PROXY (alibaba-api.md §0.8).
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def emu() -> Iterator[AliyunEmulator]:
    e = AliyunEmulator(region="cn-hangzhou")
    e.add_instance("cri-abc", name="myinst")
    e.add_role(ROLE)
    e.add_role(OTHER_ACCOUNT_ROLE)
    e.add_oidc_provider(OIDC_PROVIDER)
    with e:
        yield e


def cr_client(
    emu: AliyunEmulator,
    ak: str = DEFAULT_ACCESS_KEY_ID,
    secret: str = DEFAULT_ACCESS_KEY_SECRET,
    token: str | None = None,
    *,
    credential: Any = None,
    read_timeout: int = 5000,
) -> CrClient:
    if credential is not None:
        cfg = Config(credential=credential, endpoint=emu.endpoint, protocol="http", read_timeout=read_timeout)
    else:
        cfg = Config(
            access_key_id=ak,
            access_key_secret=secret,
            security_token=token,
            endpoint=emu.endpoint,
            protocol="http",
            region_id="cn-hangzhou",
            read_timeout=read_timeout,
        )
    return CrClient(cfg)


def sts_client(
    emu: AliyunEmulator, ak: str = DEFAULT_ACCESS_KEY_ID, secret: str = DEFAULT_ACCESS_KEY_SECRET
) -> StsClient:
    return StsClient(
        Config(access_key_id=ak, access_key_secret=secret, endpoint=emu.endpoint, protocol="http")
    )


def ee_token(client: CrClient, instance_id: str = "cri-abc", **kw: Any) -> Any:
    return client.get_authorization_token(crm.GetAuthorizationTokenRequest(instance_id=instance_id, **kw))


def pe_token(client: CrClient) -> dict[str, Any]:
    params = Params(
        action="GetAuthorizationToken",
        version="2016-06-07",
        protocol="HTTPS",
        pathname="/tokens",
        method="GET",
        auth_type="AK",
        style="ROA",
        req_body_type="json",
        body_type="json",
    )
    return client.call_api(params, OpenApiRequest(headers={}), RuntimeOptions())


def http(
    url: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, str, dict[str, str]]:
    req = urllib.request.Request(url, method=method, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(req, timeout=5) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


# ------------------------------------------------------------------------------------------------
# ACR Enterprise Edition


def test_ee_get_authorization_token_shape_and_login(emu: AliyunEmulator) -> None:
    before = time.time()
    r = ee_token(cr_client(emu))
    body = r.body.to_map()
    assert set(body) == {"RequestId", "ExpireTime", "Code", "IsSuccess", "TempUsername", "AuthorizationToken"}
    assert body["Code"] == "success" and body["IsSuccess"] is True
    assert body["TempUsername"] == "cr_temp_user"
    assert isinstance(body["ExpireTime"], int)
    assert (before + 3600) * 1000 - 2000 <= body["ExpireTime"] <= (time.time() + 3600) * 1000 + 1
    assert emu.is_valid_registry_login("cr_temp_user", body["AuthorizationToken"])
    assert not emu.is_valid_registry_login("cr_temp_user", "wrong")
    assert not emu.is_valid_registry_login("someone", body["AuthorizationToken"])
    assert not emu.is_valid_registry_login(
        "cr_temp_user", body["AuthorizationToken"], now=body["ExpireTime"] / 1000
    )
    assert emu.calls("GetAuthorizationToken") == 1
    rec = emu.requests[-1]
    assert (rec.action, rec.method, rec.path, rec.status) == ("GetAuthorizationToken", "POST", "/", 200)
    assert rec.access_key_id == DEFAULT_ACCESS_KEY_ID and rec.principal == DEFAULT_ACCESS_KEY_ID
    assert rec.signature_kind == "acs3" and rec.security_token_present is False
    assert rec.params["InstanceId"] == "cri-abc"
    assert rec.credentials_provider == "static_ak"


def test_token_lifetime_knobs(emu: AliyunEmulator) -> None:
    client = cr_client(emu)
    emu.set_token_lifetime(120)
    now = time.time()
    exp = ee_token(client).body.expire_time / 1000
    assert now + 118 <= exp <= time.time() + 121
    emu.set_token_lifetime(7 * 3600)
    exp = ee_token(client, expires_in_hours=2).body.expire_time / 1000  # ExpiresInHours caps it
    assert now + 2 * 3600 - 5 <= exp <= time.time() + 2 * 3600 + 1
    assert emu.requests[-1].params["ExpiresInHours"] == "2"


def test_fixed_registry_credentials_and_fake_clock() -> None:
    clock = [1_000_000.0]
    with AliyunEmulator(fixed_registry_credentials=("ci-user", "ci-pass"), clock=lambda: clock[0]) as e:
        e.add_instance("cri-x", name="x")
        body = ee_token(cr_client(e), "cri-x").body
        assert (body.temp_username, body.authorization_token) == ("ci-user", "ci-pass")
        assert body.expire_time == (1_000_000 + 3600) * 1000
        assert e.is_valid_registry_login("ci-user", "ci-pass")
        assert not e.is_valid_registry_login("ci-user", "nope")


def test_unknown_instance_is_instance_not_exist(emu: AliyunEmulator) -> None:
    with pytest.raises(ClientException) as ei:
        ee_token(cr_client(emu), "cri-missing")
    assert (ei.value.code, ei.value.status_code) == ("INSTANCE_NOT_EXIST", 404)
    assert ei.value.request_id and ei.value.request_id != "None"


def test_strict_region_hides_instances_of_other_regions() -> None:
    with AliyunEmulator(region="cn-hangzhou", strict_region=True) as e:
        e.add_instance("cri-bj", name="bj", region="cn-beijing")
        e.add_instance("cri-hz", name="hz")
        with pytest.raises(ClientException) as ei:
            ee_token(cr_client(e), "cri-bj")
        assert ei.value.code == "INSTANCE_NOT_EXIST"
        assert ee_token(cr_client(e), "cri-hz").body.is_success
        names = [
            i.instance_name for i in cr_client(e).list_instance(crm.ListInstanceRequest()).body.instances
        ]
        assert names == ["hz"]


def test_list_instance_endpoint_domains_and_enable(emu: AliyunEmulator) -> None:
    emu.add_instance(
        "cri-dom",
        name="dom",
        region="cn-shanghai",
        domains=[
            ("internet", "dom-registry.cn-shanghai.cr.aliyuncs.com", "SYSTEM"),
            ("internet", "reg.example.com", "USER"),
            ("vpc", "dom-registry-vpc.cn-shanghai.cr.aliyuncs.com", "SYSTEM"),
        ],
    )
    emu.set_endpoint_enabled("cri-dom", "internet", False)
    r = cr_client(emu).list_instance_endpoint(
        crm.ListInstanceEndpointRequest(instance_id="cri-dom", module_name="Registry")
    )
    assert r.body.is_success and r.body.code == "success"
    eps = {e.endpoint_type: e for e in r.body.endpoints}
    assert set(eps) == {"internet", "vpc"}
    assert eps["internet"].enable is False and eps["vpc"].enable is True
    assert [(d.domain, d.type) for d in eps["internet"].domains] == [
        ("dom-registry.cn-shanghai.cr.aliyuncs.com", "SYSTEM"),
        ("reg.example.com", "USER"),
    ]
    assert [(d.domain, d.type) for d in eps["vpc"].domains] == [
        ("dom-registry-vpc.cn-shanghai.cr.aliyuncs.com", "SYSTEM")
    ]
    assert eps["vpc"].status == "RUNNING"
    # default domains
    r = cr_client(emu).list_instance_endpoint(crm.ListInstanceEndpointRequest(instance_id="cri-abc"))
    domains = sorted(d.domain for e in r.body.endpoints for d in e.domains)
    assert domains == [
        "myinst-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
        "myinst-registry.cn-hangzhou.cr.aliyuncs.com",
    ]
    with pytest.raises(ClientException) as ei:
        cr_client(emu).list_instance_endpoint(crm.ListInstanceEndpointRequest(instance_id="cri-nope"))
    assert ei.value.code == "INSTANCE_NOT_EXIST"


def test_list_instance_paging_and_exact_name_filter(emu: AliyunEmulator) -> None:
    for i in range(5):
        emu.add_instance(f"cri-{i}", name=f"inst{i}", status="RUNNING" if i % 2 == 0 else "STOPPED")
    emu.add_instance("cri-pre", name="myinst-prefixed")
    client = cr_client(emu)
    r = client.list_instance(crm.ListInstanceRequest(instance_name="myinst", page_no=1, page_size=30)).body
    assert r.total_count == 1 and [i.instance_id for i in r.instances] == ["cri-abc"]
    inst = r.instances[0]
    assert (inst.instance_name, inst.region_id, inst.instance_status) == ("myinst", "cn-hangzhou", "RUNNING")
    p1 = client.list_instance(crm.ListInstanceRequest(page_no=1, page_size=3)).body
    p3 = client.list_instance(crm.ListInstanceRequest(page_no=3, page_size=3)).body
    assert p1.total_count == 7 and len(p1.instances) == 3 and (p1.page_no, p1.page_size) == (1, 3)
    assert len(p3.instances) == 1
    stopped = client.list_instance(crm.ListInstanceRequest(instance_status="STOPPED")).body
    assert sorted(i.instance_id for i in stopped.instances) == ["cri-1", "cri-3"]


# ------------------------------------------------------------------------------------------------
# ACR Personal Edition


def test_personal_edition_tokens_via_call_api(emu: AliyunEmulator) -> None:
    before = time.time()
    raw = pe_token(cr_client(emu))
    assert raw["statusCode"] == 200
    body = raw["body"]
    assert set(body) == {"data", "requestId"}
    assert set(body["data"]) == {"authorizationToken", "tempUserName", "expireDate"}
    assert isinstance(body["data"]["expireDate"], int)
    assert body["data"]["expireDate"] >= (before + 3600) * 1000 - 2000
    assert emu.is_valid_registry_login(body["data"]["tempUserName"], body["data"]["authorizationToken"])
    assert emu.calls("PersonalToken") == emu.calls("GetAuthorizationToken@2016-06-07") == 1
    assert emu.calls("GetAuthorizationToken") == 0
    rec = emu.requests[-1]
    assert (rec.method, rec.path, rec.signature_kind) == ("GET", "/tokens", "acs3")


def test_personal_edition_errors_use_lower_case_keys(emu: AliyunEmulator) -> None:
    emu.inject_fault("PersonalToken", "throttle")
    with pytest.raises(ClientException) as ei:
        pe_token(cr_client(emu))
    assert (ei.value.code, ei.value.status_code) == ("Throttling.User", 400)
    assert "requestId" in ei.value.data


# ------------------------------------------------------------------------------------------------
# STS


def test_sts_sdk_assume_role_then_cr_call_uses_issued_credentials(emu: AliyunEmulator) -> None:
    before = time.time()
    r = sts_client(emu).assume_role(
        stsm.AssumeRoleRequest(role_arn=ROLE, role_session_name="acr-helper", duration_seconds=3600)
    )
    body = r.body.to_map()
    assert set(body) == {"RequestId", "AssumedRoleUser", "Credentials"}
    creds = body["Credentials"]
    assert set(creds) == {"AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}
    assert creds["AccessKeyId"].startswith("STS.")
    assert EXPIRATION_RE.match(creds["Expiration"])
    exp = time.mktime(time.strptime(creds["Expiration"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert exp >= before + 3600
    assert body["AssumedRoleUser"]["Arn"] == f"{ROLE}/acr-helper"
    assert body["AssumedRoleUser"]["AssumedRoleId"].endswith(":acr-helper")
    assert emu.sts_principal(creds["AccessKeyId"]) == ROLE

    tok = ee_token(
        cr_client(emu, creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"])
    ).body
    assert tok.is_success
    rec = emu.requests[-1]
    assert rec.access_key_id == creds["AccessKeyId"]
    assert rec.security_token_present and rec.principal == ROLE
    assert emu.requests[0].params == {
        "DurationSeconds": "3600",
        "RoleArn": ROLE,
        "RoleSessionName": "acr-helper",
    }
    assert emu.requests[0].signature_kind == "acs3"


def test_credentials_lib_ram_role_arn_rpc_v1_feeds_cr_client(emu: AliyunEmulator) -> None:
    provider = RamRoleArnCredentialsProvider(
        credentials_provider=StaticAKCredentialsProvider(
            access_key_id=DEFAULT_ACCESS_KEY_ID, access_key_secret=DEFAULT_ACCESS_KEY_SECRET
        ),
        role_arn=ROLE,
        role_session_name="acr-helper-test",
        duration_seconds=3600,
        policy='{"Version": "1", "Statement": [{"Effect": "Allow", "Action": "cr:*", "Resource": "*"}]}',
        sts_endpoint=emu.url,
    )
    cred = CredClient(provider=provider)
    model = cred.get_credential()
    assert model.access_key_id.startswith("STS.")
    assert emu.sts_principal(model.access_key_id) == ROLE
    sts_rec = emu.requests[-1]
    assert (sts_rec.action, sts_rec.method, sts_rec.signature_kind) == ("AssumeRole", "GET", "rpc-v1")
    assert sts_rec.access_key_id == DEFAULT_ACCESS_KEY_ID
    assert "Signature" not in sts_rec.params and sts_rec.params["RoleSessionName"] == "acr-helper-test"

    assert ee_token(cr_client(emu, credential=cred)).body.is_success
    cr_rec = emu.requests[-1]
    assert cr_rec.access_key_id == model.access_key_id and cr_rec.principal == ROLE
    assert cr_rec.credentials_provider == "ram_role_arn/static_ak"
    # cached: a second CR call does not call STS again
    ee_token(cr_client(emu, credential=cred))
    assert emu.calls("AssumeRole") == 1 and emu.calls("GetAuthorizationToken") == 2


def test_rrsa_oidc_chained_to_cross_account_assume_role(emu: AliyunEmulator, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(
        make_fake_jwt(
            {
                "sub": "system:serviceaccount:kube-system:acr-helper",
                "iss": "https://oidc.fake",
                "exp": time.time() + 3600,
            }
        )
    )
    oidc = OIDCRoleArnCredentialsProvider(
        role_arn=ROLE,
        oidc_provider_arn=OIDC_PROVIDER,
        oidc_token_file_path=str(token_file),
        role_session_name="rrsa-session",
        sts_endpoint=emu.url,
    )
    chained = RamRoleArnCredentialsProvider(
        credentials_provider=oidc,
        role_arn=OTHER_ACCOUNT_ROLE,
        role_session_name="cross",
        sts_endpoint=emu.url,
    )
    cred = CredClient(provider=chained)
    model = cred.get_credential()
    assert emu.sts_principal(model.access_key_id) == OTHER_ACCOUNT_ROLE
    oidc_rec, ar_rec = emu.requests
    assert oidc_rec.action == "AssumeRoleWithOIDC" and oidc_rec.access_key_id is None
    assert "OIDCToken" not in oidc_rec.params and oidc_rec.params["OIDCProviderArn"] == OIDC_PROVIDER
    assert ar_rec.action == "AssumeRole" and ar_rec.signature_kind == "rpc-v1"
    assert ar_rec.security_token_present and ar_rec.principal == ROLE  # signed with the OIDC-issued key
    assert ee_token(cr_client(emu, credential=cred)).body.is_success
    assert emu.requests[-1].principal == OTHER_ACCOUNT_ROLE


def test_sts_sdk_assume_role_with_oidc_anonymous(emu: AliyunEmulator) -> None:
    client = StsClient(Config(endpoint=emu.endpoint, protocol="http"))
    jwt = make_fake_jwt(
        {
            "sub": "system:serviceaccount:ns:sa",
            "iss": "https://oidc.fake",
            "aud": ["sts.aliyuncs.com"],
            "iat": 1,
            "exp": time.time() + 600,
        }
    )
    r = client.assume_role_with_oidc(
        stsm.AssumeRoleWithOIDCRequest(
            oidcprovider_arn=OIDC_PROVIDER, oidctoken=jwt, role_arn=ROLE, role_session_name="rrsa"
        )
    )
    assert r.body.credentials.access_key_id.startswith("STS.")
    assert EXPIRATION_RE.match(r.body.credentials.expiration)
    info = r.body.oidctoken_info
    assert (info.subject, info.issuer, info.client_ids) == (
        "system:serviceaccount:ns:sa",
        "https://oidc.fake",
        "sts.aliyuncs.com",
    )
    # unknown provider, expired token, missing token
    with pytest.raises(ClientException) as ei:
        client.assume_role_with_oidc(
            stsm.AssumeRoleWithOIDCRequest(
                oidcprovider_arn=OIDC_PROVIDER + "x", oidctoken=jwt, role_arn=ROLE, role_session_name="rrsa"
            )
        )
    assert (ei.value.code, ei.value.status_code) == ("EntityNotExist.OIDCProvider", 404)
    expired = make_fake_jwt({"sub": "s", "exp": time.time() - 10})
    with pytest.raises(ClientException) as ei:
        client.assume_role_with_oidc(
            stsm.AssumeRoleWithOIDCRequest(
                oidcprovider_arn=OIDC_PROVIDER, oidctoken=expired, role_arn=ROLE, role_session_name="rrsa"
            )
        )
    assert ei.value.code == "AuthenticationFail.OIDCToken.Expired"


def test_assume_role_errors(emu: AliyunEmulator) -> None:
    emu.add_role("acs:ram::1:role/untrusted", trusted=False)
    emu.add_role("acs:ram::1:role/short", max_session_duration=3600)
    client = sts_client(emu)
    cases = [
        (dict(role_arn="acs:ram::1:role/nope", role_session_name="s1"), 404, "EntityNotExist.Role"),
        (dict(role_arn="acs:ram::1:role/untrusted", role_session_name="s1"), 403, "NoPermission"),
        (
            dict(role_arn=ROLE, role_session_name="s1", duration_seconds=600),
            400,
            "InvalidParameter.DurationSeconds",
        ),
        (
            dict(role_arn="acs:ram::1:role/short", role_session_name="s1", duration_seconds=7200),
            400,
            "InvalidParameter.DurationSeconds",
        ),
        (dict(role_arn=ROLE, role_session_name="bad name!"), 400, "InvalidParameter.RoleSessionName"),
        (
            dict(role_arn=ROLE, role_session_name="s1", policy="{not json"),
            400,
            "InvalidParameter.PolicyGrammar",
        ),
    ]
    for kwargs, status, code in cases:
        with pytest.raises(ClientException) as ei:
            client.assume_role(stsm.AssumeRoleRequest(**kwargs))
        assert (ei.value.status_code, ei.value.code) == (status, code), kwargs


def test_sts_lifetime_default_and_forced(emu: AliyunEmulator) -> None:
    client = sts_client(emu)
    now = time.time()
    r = client.assume_role(
        stsm.AssumeRoleRequest(role_arn=ROLE, role_session_name="s1")
    )  # no DurationSeconds
    exp = time.mktime(time.strptime(r.body.credentials.expiration, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert now + 3600 <= exp <= now + 3602
    emu.set_sts_lifetime(1000, force=True)
    r = client.assume_role(
        stsm.AssumeRoleRequest(role_arn=ROLE, role_session_name="s1", duration_seconds=3600)
    )
    exp = time.mktime(time.strptime(r.body.credentials.expiration, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert now + 1000 <= exp <= now + 1002


def test_format_expiration_rounds_up_never_fractional() -> None:
    assert format_expiration(0.0) == "1970-01-01T00:00:00Z"
    assert format_expiration(0.2) == "1970-01-01T00:00:01Z"
    assert format_expiration(86400 * 365) == "1971-01-01T00:00:00Z"


# ------------------------------------------------------------------------------------------------
# Authentication


def test_wrong_secret_and_unknown_key_are_rejected(emu: AliyunEmulator) -> None:
    with pytest.raises(ClientException) as ei:
        ee_token(cr_client(emu, secret="not-the-secret"))
    assert (ei.value.status_code, ei.value.code) == (400, "SignatureDoesNotMatch")
    with pytest.raises(ClientException) as ei:
        ee_token(cr_client(emu, ak="FAKE-UNKNOWN"))
    assert (ei.value.status_code, ei.value.code) == (404, "InvalidAccessKeyId.NotFound")
    with pytest.raises(ClientException) as ei:
        sts_client(emu, secret="nope").assume_role(
            stsm.AssumeRoleRequest(role_arn=ROLE, role_session_name="s1")
        )
    assert ei.value.code == "SignatureDoesNotMatch"
    assert emu.calls("GetAuthorizationToken") == 2 and emu.calls("AssumeRole") == 1
    assert [r.status for r in emu.requests] == [400, 404, 400]
    assert emu.requests[1].access_key_id == "FAKE-UNKNOWN"


def test_rpc_v1_wrong_secret_rejected_for_credentials_lib(emu: AliyunEmulator) -> None:
    provider = RamRoleArnCredentialsProvider(
        credentials_provider=StaticAKCredentialsProvider(
            access_key_id=DEFAULT_ACCESS_KEY_ID, access_key_secret="nope"
        ),
        role_arn=ROLE,
        role_session_name="x1",
        sts_endpoint=emu.url,
    )
    with pytest.raises(CredentialException) as ei:
        provider.get_credentials()
    assert "SignatureDoesNotMatch" in str(ei.value)


def test_sts_security_token_checked_and_expiry_enforced() -> None:
    clock = [2_000_000.0]
    with AliyunEmulator(clock=lambda: clock[0]) as e:
        e.add_role(ROLE)
        e.add_instance("cri-abc")
        c = (
            sts_client(e)
            .assume_role(stsm.AssumeRoleRequest(role_arn=ROLE, role_session_name="s1"))
            .body.credentials
        )
        with pytest.raises(ClientException) as ei:
            ee_token(cr_client(e, c.access_key_id, c.access_key_secret, "wrong-token"))
        assert ei.value.code == "InvalidSecurityToken.Mismatch"
        with pytest.raises(ClientException) as ei:
            ee_token(cr_client(e, c.access_key_id, c.access_key_secret, None))
        assert ei.value.code == "MissingSecurityToken"
        good = cr_client(e, c.access_key_id, c.access_key_secret, c.security_token)
        # token lifetime is capped by the STS credentials' own expiry
        clock[0] += 3000
        assert ee_token(good).body.expire_time == (2_000_000 + 3600) * 1000
        clock[0] += 600
        with pytest.raises(ClientException) as ei:
            ee_token(good)
        assert ei.value.code == "InvalidSecurityToken.Expired"
        e.revoke_sts_credentials(c.access_key_id)
        with pytest.raises(ClientException) as ei:
            ee_token(good)
        assert ei.value.code == "InvalidAccessKeyId.NotFound"


def test_verify_signatures_off_accepts_anything_but_records_key() -> None:
    with AliyunEmulator(verify_signatures=False, access_keys={}) as e:
        e.add_instance("cri-abc")
        assert ee_token(cr_client(e, "FAKE-WHATEVER", "whatever")).body.is_success
        assert e.requests[-1].access_key_id == "FAKE-WHATEVER"


def test_custom_access_key_table(emu: AliyunEmulator) -> None:
    emu.add_access_key("FAKE-AK-2", "fake-secret-2")
    assert ee_token(cr_client(emu, "FAKE-AK-2", "fake-secret-2")).body.is_success
    emu.remove_access_key("FAKE-AK-2")
    with pytest.raises(ClientException):
        ee_token(cr_client(emu, "FAKE-AK-2", "fake-secret-2"))


def test_signing_helpers_match_the_emulator(emu: AliyunEmulator) -> None:
    # ACS3 signed by our helper over plain urllib
    query = {"InstanceId": "cri-abc", "Note": "a b+c/~*"}
    headers = sign_acs3(
        "POST",
        "/",
        query,
        {"host": emu.endpoint, "x-acs-action": "GetAuthorizationToken", "x-acs-version": "2018-12-01"},
        DEFAULT_ACCESS_KEY_ID,
        DEFAULT_ACCESS_KEY_SECRET,
    )
    qs = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    status, body, _ = http(f"{emu.url}/?{qs}", "POST", headers)
    assert status == 200, body
    assert json.loads(body)["IsSuccess"] is True
    # both RPC v1 spellings of a value with a space verify
    params = {
        "Action": "AssumeRole",
        "RoleArn": ROLE,
        "RoleSessionName": "s1",
        "Policy": '{"a": "b c"}',
        "AccessKeyId": DEFAULT_ACCESS_KEY_ID,
    }
    sigs = rpc_v1_signatures("GET", params, DEFAULT_ACCESS_KEY_SECRET)
    assert len(sigs) == 2
    for sig in sigs:
        qs = urllib.parse.urlencode({**params, "Signature": sig})
        status, body, _ = http(f"{emu.url}/?{qs}")
        assert status == 200, body
    qs = urllib.parse.urlencode({**params, "Signature": rpc_v1_signature("GET", params, "wrong")})
    status, body, _ = http(f"{emu.url}/?{qs}")
    assert status == 400 and json.loads(body)["Code"] == "SignatureDoesNotMatch"


def test_unsigned_and_unknown_requests(emu: AliyunEmulator) -> None:
    status, body, _ = http(
        f"{emu.url}/?InstanceId=cri-abc", "POST", {"x-acs-action": "GetAuthorizationToken"}
    )
    assert status == 400 and json.loads(body)["Code"] == "MissingAccessKeyId"
    status, body, _ = http(f"{emu.url}/?Action=DeleteEverything", "GET")
    assert status == 404 and json.loads(body)["Code"] == "InvalidAction.NotFound"
    assert emu.calls("unknown") == 1


# ------------------------------------------------------------------------------------------------
# deny


def test_deny_by_access_key_and_by_role(emu: AliyunEmulator) -> None:
    emu.deny(DEFAULT_ACCESS_KEY_ID, "GetAuthorizationToken")
    with pytest.raises(ClientException) as ei:
        ee_token(cr_client(emu))
    assert (ei.value.status_code, ei.value.code) == (403, "Forbidden.RAM")
    detail = ei.value.access_denied_detail
    assert (
        detail["AuthAction"] == "cr:GetAuthorizationToken"
        and detail["AuthPrincipalDisplayName"] == DEFAULT_ACCESS_KEY_ID
    )
    # other actions still allowed
    assert (
        cr_client(emu)
        .list_instance_endpoint(crm.ListInstanceEndpointRequest(instance_id="cri-abc"))
        .body.is_success
    )
    emu.allow(DEFAULT_ACCESS_KEY_ID, "GetAuthorizationToken")
    assert ee_token(cr_client(emu)).body.is_success
    # deny a role by name: the STS key issued for it is refused
    emu.deny("acr-puller", "*")
    c = (
        sts_client(emu)
        .assume_role(stsm.AssumeRoleRequest(role_arn=ROLE, role_session_name="s1"))
        .body.credentials
    )
    with pytest.raises(ClientException) as ei:
        ee_token(cr_client(emu, c.access_key_id, c.access_key_secret, c.security_token))
    assert ei.value.access_denied_detail["AuthPrincipalType"] == "AssumedRoleUser"
    assert ei.value.access_denied_detail["AuthPrincipalDisplayName"] == ROLE


# ------------------------------------------------------------------------------------------------
# faults and counters


@pytest.mark.parametrize(
    ("kind", "exc", "code", "status"),
    [
        ("throttle", ClientException, "Throttling.User", 400),
        ("429", ClientException, "Throttling", 429),
        ("403", ClientException, "Forbidden.RAM", 403),
        ("404", ClientException, "INSTANCE_NOT_EXIST", 404),
        ("invalid-ak", ClientException, "InvalidAccessKeyId.NotFound", 404),
        ("500", ServerException, "InternalError", 500),
        ("503", ServerException, "ServiceUnavailable", 503),
    ],
)
def test_error_faults_map_to_sdk_exceptions(
    emu: AliyunEmulator, kind: str, exc: type, code: str, status: int
) -> None:
    emu.inject_fault("GetAuthorizationToken", kind)
    client = cr_client(emu)
    with pytest.raises(exc) as ei:
        ee_token(client)
    assert not isinstance(ei.value, ThrottlingException)
    assert (ei.value.code, ei.value.status_code) == (code, status)
    assert ee_token(client).body.is_success  # times=1: the next call succeeds
    assert emu.calls("GetAuthorizationToken") == 2
    assert [r.fault for r in emu.requests] == [kind, None]


def test_throttle_with_retry_after(emu: AliyunEmulator) -> None:
    emu.inject_fault("GetAuthorizationToken", "throttle-retry-after", retry_after_ms=1500)
    with pytest.raises(ThrottlingException) as ei:
        ee_token(cr_client(emu))
    assert (ei.value.code, ei.value.retry_after, ei.value.status_code) == ("Throttling.User", 1500, 400)


def test_non_json_and_drop_are_unretryable(emu: AliyunEmulator) -> None:
    emu.inject_fault("GetAuthorizationToken", "non-json")
    emu.inject_fault("GetAuthorizationToken", "drop")
    with pytest.raises(UnretryableException):
        ee_token(cr_client(emu))
    with pytest.raises(UnretryableException):
        ee_token(cr_client(emu))
    assert [r.status for r in emu.requests] == [502, 0]


def test_slow_fault_triggers_read_timeout(emu: AliyunEmulator) -> None:
    emu.inject_fault("GetAuthorizationToken", "slow", delay=1.0)
    t0 = time.monotonic()
    with pytest.raises(UnretryableException) as ei:
        ee_token(cr_client(emu, read_timeout=200))
    assert time.monotonic() - t0 < 0.9
    assert (
        "timed out" in str(ei.value.inner_exception).lower()
        or "timeout" in repr(ei.value.inner_exception).lower()
    )
    # slow without a client timeout still answers correctly
    emu.inject_fault("GetAuthorizationToken", "slow", delay=0.2)
    t0 = time.monotonic()
    assert ee_token(cr_client(emu)).body.is_success
    assert time.monotonic() - t0 >= 0.2


def test_is_success_false_raises_nothing(emu: AliyunEmulator) -> None:
    emu.inject_fault("GetAuthorizationToken", "is-success-false")
    body = ee_token(cr_client(emu)).body
    assert body.is_success is False and body.code == "INSTANCE_NOT_EXIST" and body.authorization_token is None


def test_fault_times_none_until_cleared_and_action_none(emu: AliyunEmulator) -> None:
    emu.inject_fault("AssumeRole", "503", times=None)
    client = sts_client(emu)
    for _ in range(3):
        with pytest.raises(ServerException):
            client.assume_role(stsm.AssumeRoleRequest(role_arn=ROLE, role_session_name="s1"))
    assert ee_token(cr_client(emu)).body.is_success  # other actions unaffected
    emu.clear_faults()
    assert client.assume_role(stsm.AssumeRoleRequest(role_arn=ROLE, role_session_name="s1")).body.credentials
    emu.inject_fault(None, "500", times=2)
    with pytest.raises(ServerException):
        ee_token(cr_client(emu))
    with pytest.raises(ServerException):
        client.assume_role(stsm.AssumeRoleRequest(role_arn=ROLE, role_session_name="s1"))
    assert ee_token(cr_client(emu)).body.is_success
    assert emu.calls("AssumeRole") == 5 and emu.calls("GetAuthorizationToken") == 3
    assert emu.calls() == 8
    emu.reset_calls()
    assert emu.calls() == 0 and emu.requests == []


def test_inject_fault_validates_arguments(emu: AliyunEmulator) -> None:
    with pytest.raises(ValueError):
        emu.inject_fault("GetAuthorizationToken", "explode")
    with pytest.raises(ValueError):
        emu.inject_fault("NoSuchAction", "500")
    with pytest.raises(ValueError):
        emu.inject_fault("AssumeRole", "500", times=0)


def test_concurrent_calls_are_all_counted(emu: AliyunEmulator) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(5):
                ee_token(cr_client(emu))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert emu.calls("GetAuthorizationToken") == 40 and len(emu.requests) == 40


def test_records_and_reprs_hold_no_secret(emu: AliyunEmulator, tmp_path: Path) -> None:
    c = (
        sts_client(emu)
        .assume_role(stsm.AssumeRoleRequest(role_arn=ROLE, role_session_name="s1"))
        .body.credentials
    )
    ee = ee_token(cr_client(emu, c.access_key_id, c.access_key_secret, c.security_token)).body
    jwt = make_fake_jwt({"sub": "x"})
    StsClient(Config(endpoint=emu.endpoint, protocol="http")).assume_role_with_oidc(
        stsm.AssumeRoleWithOIDCRequest(
            oidcprovider_arn=OIDC_PROVIDER, oidctoken=jwt, role_arn=ROLE, role_session_name="s2"
        )
    )
    dump = repr(emu.requests) + repr(emu)
    for secret in (
        c.access_key_secret,
        c.security_token,
        ee.authorization_token,
        jwt,
        DEFAULT_ACCESS_KEY_SECRET,
    ):
        assert secret not in dump


# ------------------------------------------------------------------------------------------------
# ECS instance metadata


def test_imds_v2_flow(emu: AliyunEmulator) -> None:
    status, token, _ = http(
        f"{emu.url}/latest/api/token", "PUT", {"X-aliyun-ecs-metadata-token-ttl-seconds": "21600"}
    )
    assert status == 200 and token
    h = {"X-aliyun-ecs-metadata-token": token}
    assert http(f"{emu.url}/latest/meta-data/ram/security-credentials/", headers=h)[:2] == (
        200,
        "KubernetesWorkerRole-fake",
    )
    assert http(f"{emu.url}/latest/meta-data/region-id", headers=h)[:2] == (200, "cn-hangzhou")
    status, body, _ = http(
        f"{emu.url}/latest/meta-data/ram/security-credentials/KubernetesWorkerRole-fake", headers=h
    )
    assert status == 200
    creds = json.loads(body)
    assert set(creds) == {
        "AccessKeyId",
        "AccessKeySecret",
        "Expiration",
        "SecurityToken",
        "LastUpdated",
        "Code",
    }
    assert creds["Code"] == "Success" and creds["AccessKeyId"].startswith("STS.")
    assert EXPIRATION_RE.match(creds["Expiration"]) and EXPIRATION_RE.match(creds["LastUpdated"])
    # stable between reads, usable to sign CR calls as the worker role
    assert (
        json.loads(
            http(f"{emu.url}/latest/meta-data/ram/security-credentials/KubernetesWorkerRole-fake", headers=h)[
                1
            ]
        )
        == creds
    )
    assert ee_token(
        cr_client(emu, creds["AccessKeyId"], creds["AccessKeySecret"], creds["SecurityToken"])
    ).body.is_success
    assert emu.requests[-1].principal == emu.imds_role_arn
    emu.rotate_imds_credentials()
    assert (
        json.loads(http(f"{emu.url}/latest/meta-data/ram/security-credentials/KubernetesWorkerRole-fake")[1])[
            "AccessKeyId"
        ]
        != creds["AccessKeyId"]
    )
    # wrong role name / bad token / missing TTL
    assert http(f"{emu.url}/latest/meta-data/ram/security-credentials/OtherRole", headers=h)[0] == 404
    assert (
        http(f"{emu.url}/latest/meta-data/region-id", headers={"X-aliyun-ecs-metadata-token": "bogus"})[0]
        == 401
    )
    assert http(f"{emu.url}/latest/api/token", "PUT")[0] == 400
    assert [emu.calls(a) for a in ("imds-token", "imds-role", "imds-credentials", "imds-region")] == [
        2,
        1,
        4,
        2,
    ]


def test_imds_token_ttl_expires() -> None:
    clock = [100.0]
    with AliyunEmulator(clock=lambda: clock[0]) as e:
        _, token, _ = http(
            f"{e.url}/latest/api/token", "PUT", {"X-aliyun-ecs-metadata-token-ttl-seconds": "10"}
        )
        assert (
            http(f"{e.url}/latest/meta-data/region-id", headers={"X-aliyun-ecs-metadata-token": token})[0]
            == 200
        )
        clock[0] += 11
        assert (
            http(f"{e.url}/latest/meta-data/region-id", headers={"X-aliyun-ecs-metadata-token": token})[0]
            == 401
        )


def test_imds_require_v2_and_reject_token() -> None:
    with AliyunEmulator(require_imdsv2=True) as e:
        assert http(f"{e.url}/latest/meta-data/ram/security-credentials/")[0] == 403
    with AliyunEmulator(reject_imds_token=True) as e:
        assert (
            http(f"{e.url}/latest/api/token", "PUT", {"X-aliyun-ecs-metadata-token-ttl-seconds": "60"})[0]
            == 403
        )
        status, body, _ = http(f"{e.url}/latest/meta-data/ram/security-credentials/")
        assert (status, body) == (200, "KubernetesWorkerRole-fake")


def test_imds_faults(emu: AliyunEmulator) -> None:
    emu.inject_fault("imds-token", "500")
    emu.inject_fault("imds-credentials", "drop")
    assert (
        http(f"{emu.url}/latest/api/token", "PUT", {"X-aliyun-ecs-metadata-token-ttl-seconds": "60"})[0]
        == 500
    )
    with pytest.raises((urllib.error.URLError, ConnectionError, http_client_errors())):
        http(f"{emu.url}/latest/meta-data/ram/security-credentials/KubernetesWorkerRole-fake")
    assert http(f"{emu.url}/latest/meta-data/ram/security-credentials/KubernetesWorkerRole-fake")[0] == 200


def http_client_errors() -> type[Exception]:
    import http.client

    return http.client.HTTPException


def test_absolute_form_request_target(emu: AliyunEmulator) -> None:
    # what a client configured with HTTP_PROXY=<emulator> sends
    with socket.create_connection(("127.0.0.1", emu.port), timeout=5) as s:
        s.sendall(
            b"GET http://100.100.100.200/latest/meta-data/region-id HTTP/1.1\r\n"
            b"Host: 100.100.100.200\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"cn-hangzhou")
    assert (
        emu.requests[-1].host == "100.100.100.200" and emu.requests[-1].path == "/latest/meta-data/region-id"
    )


def test_credentials_lib_ecs_provider_accepts_imds_shape(emu: AliyunEmulator) -> None:
    provider = EcsRamRoleCredentialsProvider(async_update_enabled=False)
    provider._EcsRamRoleCredentialsProvider__metadata_service_host = emu.endpoint  # type: ignore[attr-defined]
    creds = provider.get_credentials()
    assert creds.get_access_key_id().startswith("STS.")
    assert emu.calls("imds-role") == 1 and emu.calls("imds-credentials") == 1 and emu.calls("imds-token") == 2


# ------------------------------------------------------------------------------------------------
# CLI


def test_module_cli_prints_url_and_serves() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "acr_helper.tokens.emulator",
            "--port",
            "0",
            "--region",
            "eu-central-1",
            "--instance",
            "cri-z=zed",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert re.match(r"^http://127\.0\.0\.1:\d+$", url)
        assert http(f"{url}/latest/meta-data/region-id")[:2] == (200, "eu-central-1")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------------------------
# GetCallerIdentity, restart


def test_get_caller_identity_for_access_key_and_assumed_role(emu: AliyunEmulator) -> None:
    me = sts_client(emu).get_caller_identity().body
    assert (me.identity_type, me.account_id) == ("RAMUser", FAKE_ACCOUNT_ID)
    assert me.arn == f"acs:ram::{FAKE_ACCOUNT_ID}:user/{DEFAULT_ACCESS_KEY_ID.lower()}"
    c = (
        sts_client(emu)
        .assume_role(stsm.AssumeRoleRequest(role_arn=OTHER_ACCOUNT_ROLE, role_session_name="s9"))
        .body
    )
    sts = StsClient(
        Config(
            access_key_id=c.credentials.access_key_id,
            access_key_secret=c.credentials.access_key_secret,
            security_token=c.credentials.security_token,
            endpoint=emu.endpoint,
            protocol="http",
        )
    )
    who = sts.get_caller_identity().body
    assert (who.identity_type, who.account_id) == ("AssumedRoleUser", "9999999999999999")
    assert who.arn == "acs:ram::9999999999999999:assumed-role/cross-account/s9"
    assert who.principal_id == c.assumed_role_user.assumed_role_id
    assert emu.calls("GetCallerIdentity") == 2


def test_stop_cuts_pooled_connections_and_restart_keeps_url_and_state(emu: AliyunEmulator) -> None:
    client = cr_client(emu, read_timeout=2000)
    body = ee_token(client).body  # the SDK keeps this connection alive in its pool
    url = emu.url
    emu.stop()
    with pytest.raises(UnretryableException):
        ee_token(client)
    emu.start()
    assert emu.url == url
    assert ee_token(client).body.is_success
    assert emu.is_valid_registry_login(body.temp_username, body.authorization_token)
    assert emu.calls("GetAuthorizationToken") == 2


def test_emulator_module_imports_only_the_stdlib() -> None:
    import ast

    import acr_helper.tokens.emulator as mod
    import acr_helper.tokens.emulator_signing as sig

    allowed_local = {"acr_helper.tokens.emulator_signing"}
    for m in (mod, sig):
        tree = ast.parse(Path(m.__file__).read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert name in allowed_local or top in sys.stdlib_module_names or top == "__future__", name
