"""Helpers for the tokens tests: `responses` bodies for CR, STS and IMDS."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import responses
from responses import matchers

FAKE_AK = "FAKE-AK-ID"
FAKE_SECRET = "fake-secret-not-real"
NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
CR_URL = re.compile(r"https://cr\.cn-hangzhou\.aliyuncs\.com/.*")
CR_ANY = re.compile(r"https://cr(-vpc)?\.[a-z0-9-]+\.aliyuncs\.com/.*")
STS_URL = re.compile(r"https://sts(-vpc)?\.[a-z0-9-]+\.aliyuncs\.com/.*")
IMDS = "http://100.100.100.200"


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def sts_expiration(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def action(name: str) -> Any:
    return matchers.header_matcher({"x-acs-action": name}, strict_match=False)


def ee_token_body(expires: datetime, password: str = "ee-password-SECRET-1") -> dict[str, Any]:
    return {
        "RequestId": "REQ-EE",
        "ExpireTime": ms(expires),
        "Code": "success",
        "IsSuccess": True,
        "TempUsername": "cr_temp_user",
        "AuthorizationToken": password,
    }


def endpoints_body(*endpoints: tuple[str, bool, list[tuple[str, str]]]) -> dict[str, Any]:
    return {
        "Code": "success",
        "IsSuccess": True,
        "RequestId": "REQ-LIE",
        "Endpoints": [
            {
                "EndpointType": etype,
                "Enable": enable,
                "Status": "RUNNING",
                "Domains": [{"Domain": d, "Type": t} for d, t in domains],
            }
            for etype, enable, domains in endpoints
        ],
    }


def pe_token_body(expires: datetime, password: str = "pe-password-SECRET-2") -> dict[str, Any]:
    return {
        "data": {"authorizationToken": password, "tempUserName": "cr_temp_user", "expireDate": ms(expires)},
        "requestId": "REQ-PE",
    }


def sts_body(
    expires: datetime,
    ak: str = "STS.fake-sts-ak",
    secret: str = "sts-secret-SECRET-3",
    token: str = "sts-token-SECRET-4",
) -> dict[str, Any]:
    return {
        "RequestId": "REQ-STS",
        "AssumedRoleUser": {"Arn": "acs:ram::123:role/x/s", "AssumedRoleId": "1:s"},
        "Credentials": {
            "AccessKeyId": ak,
            "AccessKeySecret": secret,
            "SecurityToken": token,
            "Expiration": sts_expiration(expires),
        },
    }


def error_body(code: str, message: str = "boom", request_id: str = "REQ-ERR") -> dict[str, Any]:
    return {"RequestId": request_id, "Code": code, "Message": message}


def add_imds(
    rsps: responses.RequestsMock,
    *,
    v2: bool = True,
    role: str = "KubernetesWorkerRole-test",
    expires: datetime | None = None,
) -> None:
    if v2:
        rsps.add(responses.PUT, f"{IMDS}/latest/api/token", body="imds-session-token")
    else:
        rsps.add(responses.PUT, f"{IMDS}/latest/api/token", status=403, body="forbidden")
    rsps.add(responses.GET, f"{IMDS}/latest/meta-data/ram/security-credentials/", body=role)
    rsps.add(
        responses.GET,
        f"{IMDS}/latest/meta-data/ram/security-credentials/{role}",
        body=json.dumps(
            {
                "AccessKeyId": "STS.worker-ak",
                "AccessKeySecret": "worker-secret-SECRET-5",
                "SecurityToken": "worker-token-SECRET-6",
                "Expiration": sts_expiration(expires or NOW + timedelta(hours=6)),
                "LastUpdated": sts_expiration(NOW),
                "Code": "Success",
            }
        ),
    )
    rsps.add(responses.GET, f"{IMDS}/latest/meta-data/region-id", body="cn-hangzhou")
