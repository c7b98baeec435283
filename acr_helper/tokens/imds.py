"""A small ECS instance metadata (IMDS) client: region and the worker RAM role's credentials.

We do not use the credentials library's `EcsRamRoleCredentialsProvider`: it hard-codes the host,
starts an APScheduler thread and logs tracebacks. IMDSv2 first (`PUT /latest/api/token`), then
IMDSv1 (plain GETs) when the token request fails and the fallback is allowed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from acr_helper.core.model import Sensitive

TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a URL path
ROLE_PATH = "/latest/meta-data/ram/security-credentials/"
REGION_PATH = "/latest/meta-data/region-id"
TOKEN_TTL_HEADER = "X-aliyun-ecs-metadata-token-ttl-seconds"  # noqa: S105 - a header name
TOKEN_HEADER = "X-aliyun-ecs-metadata-token"  # noqa: S105 - a header name
TOKEN_TTL_SECONDS = 21600


class ImdsError(Exception):
    """The metadata service failed; the message is secret-free."""

    def __init__(self, message: str, *, retryable: bool = True, http_status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.http_status = http_status


@dataclass(frozen=True)
class RoleCredentials:
    role_name: str
    access_key_id: str
    access_key_secret: Sensitive
    security_token: Sensitive
    expiration: datetime | None


def parse_expiration(text: str | None) -> datetime | None:
    """`YYYY-MM-DDTHH:MM:SSZ` (fractions tolerated) -> aware UTC datetime."""
    if not text:
        return None
    raw = text.strip()
    if raw.endswith("Z"):
        raw = raw[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class ImdsClient:
    def __init__(
        self,
        base_url: str = "http://100.100.100.200",
        *,
        v1_fallback: bool = True,
        timeout: tuple[float, float] = (1.0, 2.0),
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.v1_fallback = v1_fallback
        self.timeout = timeout
        self._session = session or requests.Session()
        # never route metadata traffic through an environment proxy
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------------------------------

    def _token(self) -> str | None:
        """An IMDSv2 session token, or None when falling back to v1."""
        try:
            resp = self._session.put(
                self.base_url + TOKEN_PATH,
                headers={TOKEN_TTL_HEADER: str(TOKEN_TTL_SECONDS)},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            if self.v1_fallback:
                return None
            raise ImdsError(
                f"cannot reach the metadata service at {self.base_url}: {type(exc).__name__}"
            ) from None
        if resp.status_code == 200 and resp.text.strip():
            return resp.text.strip()
        if self.v1_fallback:
            return None
        raise ImdsError(
            f"the metadata service refused an IMDSv2 token (HTTP {resp.status_code}) and the IMDSv1 "
            "fallback is disabled",
            retryable=resp.status_code >= 500,
            http_status=resp.status_code,
        )

    def _get(self, path: str) -> str:
        token = self._token()
        headers = {TOKEN_HEADER: token} if token else {}
        try:
            resp = self._session.get(self.base_url + path, headers=headers, timeout=self.timeout)
        except requests.RequestException as exc:
            raise ImdsError(
                f"cannot reach the metadata service at {self.base_url}: {type(exc).__name__}"
            ) from None
        if resp.status_code == 404:
            raise ImdsError(f"the metadata service has no {path}", retryable=False, http_status=404)
        if resp.status_code != 200:
            raise ImdsError(
                f"the metadata service answered HTTP {resp.status_code} for {path}",
                retryable=resp.status_code >= 500 or resp.status_code in (401, 403, 429),
                http_status=resp.status_code,
            )
        return resp.text

    # ------------------------------------------------------------------------------------------

    def region_id(self) -> str:
        region = self._get(REGION_PATH).strip()
        if not region:
            raise ImdsError("the metadata service returned an empty region-id")
        return region

    def role_name(self) -> str:
        try:
            text = self._get(ROLE_PATH)
        except ImdsError as exc:
            if exc.http_status == 404:
                raise ImdsError(
                    "this ECS instance has no RAM role attached (the metadata service lists none)",
                    retryable=False,
                    http_status=404,
                ) from None
            raise
        names = [line.strip() for line in text.splitlines() if line.strip()]
        if not names:
            raise ImdsError("this ECS instance has no RAM role attached", retryable=False)
        return names[0]

    def role_credentials(self, role_name: str | None = None) -> RoleCredentials:
        name = role_name or self.role_name()
        text = self._get(ROLE_PATH + name)
        try:
            body = json.loads(text)
        except ValueError:
            raise ImdsError("the metadata service returned credentials that are not JSON") from None
        if not isinstance(body, dict) or body.get("Code") != "Success":
            code = body.get("Code") if isinstance(body, dict) else None
            raise ImdsError(f"the metadata service did not return credentials for role {name} (Code={code})")
        ak = body.get("AccessKeyId") or ""
        secret = body.get("AccessKeySecret") or ""
        token = body.get("SecurityToken") or ""
        if not (ak and secret and token):
            raise ImdsError(f"the metadata service returned incomplete credentials for role {name}")
        return RoleCredentials(
            role_name=name,
            access_key_id=str(ak),
            access_key_secret=Sensitive(str(secret)),
            security_token=Sensitive(str(token)),
            expiration=parse_expiration(body.get("Expiration")),
        )
