"""Container Registry token calls: Enterprise Edition (cr 2018-12-01) and Personal Edition (`GET /tokens`).

Response checking is done by small pure helpers (`parse_ee_token`, `parse_pe_token`,
`enabled_domains`) that the unit tests exercise directly as well as through `responses`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from acr_helper.core.config import personal_default_domains
from acr_helper.core.model import Sensitive
from acr_helper.tokens.errors import TokenError, advice_for, classify
from acr_helper.tokens.sdk import Credential, Endpoint, make_config, runtime_options
from acr_helper.tokens.sdk_logging import quiet_sdk_loggers

EE_VERSION = "2018-12-01"
PE_VERSION = "2016-06-07"


@dataclass(frozen=True)
class RawToken:
    username: str
    password: Sensitive
    expires_at: datetime
    request_id: str | None = None

    def __repr__(self) -> str:
        return f"RawToken(username={self.username!r}, expires_at={self.expires_at!r})"


def pe_default_domains(region: str) -> tuple[str, ...]:
    """The Personal Edition domains of `region` (one definition, shared with the config checks)."""
    return personal_default_domains(region)


def ms_to_datetime(value: Any) -> datetime | None:
    try:
        ms = int(value)
    except (TypeError, ValueError):
        return None
    if ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


def _invalid(key: str, action: str, what: str, request_id: str | None = None) -> TokenError:
    return TokenError(
        key,
        f"the response has {what}",
        code="InvalidResponse",
        retryable=True,
        action=action,
        request_id=request_id,
        advice="check that --cr-endpoint points at the Container Registry API; retried with backoff",
    )


def _not_success(
    key: str,
    action: str,
    code: str | None,
    request_id: str | None,
    *,
    identity: str,
    instance_id: str,
    region: str,
) -> TokenError:
    advice = advice_for(code, identity=identity, instance_id=instance_id, region=region, action=action)
    return TokenError(
        key,
        "the API answered IsSuccess: false",
        code=code or "IsSuccess=false",
        retryable=False,
        action=action,
        request_id=request_id,
        advice=advice or "check instanceId and regionId of this acr-registry-info entry",
    )


def parse_ee_token(
    key: str, body: Mapping[str, Any], *, identity: str = "", instance_id: str = "", region: str = ""
) -> RawToken:
    """The JSON body of GetAuthorizationToken (PascalCase) -> RawToken, or TokenError."""
    action = "GetAuthorizationToken"
    request_id = body.get("RequestId")
    if body.get("IsSuccess") is False:
        raise _not_success(
            key,
            action,
            body.get("Code"),
            request_id,
            identity=identity,
            instance_id=instance_id,
            region=region,
        )
    user = body.get("TempUsername") or ""
    password = body.get("AuthorizationToken") or ""
    expires = ms_to_datetime(body.get("ExpireTime"))
    if not user or not password:
        raise _invalid(key, action, "no TempUsername/AuthorizationToken", request_id)
    if expires is None:
        raise _invalid(key, action, "no valid ExpireTime", request_id)
    return RawToken(str(user), Sensitive(str(password)), expires, request_id)


def parse_pe_token(key: str, body: Mapping[str, Any]) -> RawToken:
    """The JSON body of Personal Edition `GET /tokens` (camelCase under `data`)."""
    action = "GetAuthorizationToken(personal)"
    request_id = body.get("requestId") or body.get("RequestId")
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise _invalid(key, action, "no data object", request_id)
    user = data.get("tempUserName") or ""
    password = data.get("authorizationToken") or ""
    expires = ms_to_datetime(data.get("expireDate"))
    if not user or not password:
        raise _invalid(key, action, "no tempUserName/authorizationToken", request_id)
    if expires is None:
        raise _invalid(key, action, "no valid expireDate", request_id)
    return RawToken(str(user), Sensitive(str(password)), expires, request_id)


def enabled_domains(endpoints: Iterable[Mapping[str, Any]]) -> tuple[str, ...]:
    """Every domain (SYSTEM and USER) of every enabled internet/vpc endpoint, sorted and unique."""
    out: set[str] = set()
    for ep in endpoints:
        if not ep.get("Enable"):
            continue
        if str(ep.get("EndpointType", "")).lower() not in ("internet", "vpc"):
            continue
        for dom in ep.get("Domains") or ():
            name = str((dom or {}).get("Domain") or "").strip().lower()
            if name:
                out.add(name)
    return tuple(sorted(out))


class AcrClient:
    """Calls the Container Registry API for one region with one credential (one attempt each)."""

    def __init__(
        self,
        *,
        key: str,
        region: str,
        credential: Credential,
        endpoint: Endpoint | None,
        use_vpc: bool,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        from alibabacloud_cr20181201.client import Client as Cr2018Client

        self.key = key
        self.region = region
        self.credential = credential
        self.endpoint_label = (
            str(endpoint) if endpoint is not None else f"cr{'-vpc' if use_vpc else ''}.{region}.aliyuncs.com"
        )
        self._timeouts = (connect_timeout, read_timeout)
        self._client = Cr2018Client(
            make_config(
                credential=credential,
                region=region,
                endpoint=endpoint,
                use_vpc=use_vpc,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            )
        )
        quiet_sdk_loggers()

    def _error(self, exc: BaseException, action: str, instance_id: str = "") -> TokenError:
        return classify(
            exc,
            registry=self.key,
            action=action,
            endpoint=self.endpoint_label,
            identity=self.credential.identity,
            instance_id=instance_id,
            region=self.region,
            secrets=self.credential.secrets(),
        )

    def _call(self, action: str, method: str, request: Any, instance_id: str) -> dict[str, Any]:
        """One typed SDK call; returns the response body as its PascalCase JSON map."""
        try:
            resp = getattr(self._client, method)(request, runtime_options(*self._timeouts))
        except Exception as exc:
            raise self._error(exc, action, instance_id) from None
        body = getattr(resp, "body", None)
        data = body.to_map() if body is not None else None
        if not isinstance(data, dict):
            raise _invalid(self.key, action, "no JSON object body")
        return data

    def ee_token(self, instance_id: str) -> RawToken:
        from alibabacloud_cr20181201 import models as cr_models

        body = self._call(
            "GetAuthorizationToken",
            "get_authorization_token_with_options",
            cr_models.GetAuthorizationTokenRequest(instance_id=instance_id),
            instance_id,
        )
        return parse_ee_token(
            self.key, body, identity=self.credential.identity, instance_id=instance_id, region=self.region
        )

    def ee_domains(self, instance_id: str) -> tuple[str, ...]:
        from alibabacloud_cr20181201 import models as cr_models

        action = "ListInstanceEndpoint"
        body = self._call(
            action,
            "list_instance_endpoint_with_options",
            cr_models.ListInstanceEndpointRequest(instance_id=instance_id, module_name="Registry"),
            instance_id,
        )
        if body.get("IsSuccess") is False:
            raise _not_success(
                self.key,
                action,
                body.get("Code"),
                body.get("RequestId"),
                identity=self.credential.identity,
                instance_id=instance_id,
                region=self.region,
            )
        endpoints = body.get("Endpoints")
        if not isinstance(endpoints, list):
            raise _invalid(self.key, action, "no Endpoints list", body.get("RequestId"))
        return enabled_domains(e for e in endpoints if isinstance(e, Mapping))

    def pe_token(self) -> RawToken:
        from alibabacloud_tea_openapi.utils_models import OpenApiRequest, Params

        action = "GetAuthorizationToken(personal)"
        params = Params(
            action="GetAuthorizationToken",
            version=PE_VERSION,
            protocol="HTTPS",
            pathname="/tokens",
            method="GET",
            auth_type="AK",
            style="ROA",
            req_body_type="json",
            body_type="json",
        )
        try:
            raw = self._client.call_api(params, OpenApiRequest(headers={}), runtime_options(*self._timeouts))
        except Exception as exc:
            raise self._error(exc, action) from None
        body = raw.get("body") if isinstance(raw, dict) else None
        if not isinstance(body, dict):
            raise _invalid(self.key, action, "no JSON object body")
        return parse_pe_token(self.key, body)
