"""`TokenError` and the classification of Alibaba Cloud SDK failures into actionable errors.

Every message is built from fields we choose (error code, HTTP status, request id, the server's
short `Message`, the identity and the advice). Raw SDK exception strings are never copied: some
of them carry request URLs, and the RRSA call puts the OIDC token into the query string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: RAM actions the controller needs on the registry side (named in Forbidden advice).
REQUIRED_CR_ACTIONS = ("cr:GetAuthorizationToken", "cr:ListInstanceEndpoint", "cr:PullRepository")

_SECRET_QUERY = re.compile(
    r"(?i)((?:OIDCToken|SecurityToken|Signature|AccessKeySecret|x-acs-security-token|authorization)[=:]\s*)"
    r"[^&\s,'\"]+"
)


class TokenError(Exception):
    """A failed credential or token call. `str()` is secret-free and includes the advice."""

    def __init__(
        self,
        registry: str,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        advice: str = "",
        request_id: str | None = None,
        http_status: int | None = None,
        action: str | None = None,
        invalidates_credentials: bool = False,
    ) -> None:
        self.registry = registry
        self.message = message
        self.code = code
        self.retryable = retryable
        self.retry_after = retry_after  # seconds
        self.advice = advice
        self.request_id = request_id
        self.http_status = http_status
        self.action = action
        #: the cached STS/role credentials behind this call should be dropped (expired/invalid token)
        self.invalidates_credentials = invalidates_credentials
        super().__init__(self.__str__())

    def summary(self) -> str:
        """The message without the advice (for compact displays)."""
        details = []
        if self.code:
            details.append(self.code)
        if self.http_status:
            details.append(f"HTTP {self.http_status}")
        if self.request_id:
            details.append(f"request id {self.request_id}")
        text = f"{self.registry}: {self.message}"
        if self.action:
            text = f"{self.registry}: {self.action}: {self.message}"
        if details:
            text += f" ({', '.join(details)})"
        return text

    def __str__(self) -> str:
        text = self.summary()
        if self.advice:
            text += f". {self.advice}"
        return text

    def __repr__(self) -> str:
        return (
            f"TokenError(registry={self.registry!r}, code={self.code!r}, retryable={self.retryable!r}, "
            f"http_status={self.http_status!r})"
        )

    def with_registry(self, registry: str) -> TokenError:
        if registry == self.registry:
            return self
        return TokenError(
            registry,
            self.message,
            code=self.code,
            retryable=self.retryable,
            retry_after=self.retry_after,
            advice=self.advice,
            request_id=self.request_id,
            http_status=self.http_status,
            action=self.action,
            invalidates_credentials=self.invalidates_credentials,
        )


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secret values and secret-looking query parameters from `text`."""
    out = _SECRET_QUERY.sub(r"\1***", text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    return out


def _short(text: str | None, limit: int = 300) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------------
# Advice


def advice_for(
    code: str | None,
    *,
    http_status: int | None = None,
    identity: str = "",
    instance_id: str = "",
    region: str = "",
    action: str = "",
    role_arn: str | None = None,
) -> str:
    """What the operator should do about an error code (returns '' when there is nothing specific)."""
    c = (code or "").strip()
    low = c.lower()
    who = identity or "the RAM identity in use"
    if action in ("AssumeRole", "AssumeRoleWithOIDC"):
        role = role_arn or "the role"
        if low.startswith("entitynotexist.role") or low == "entitynotexist":
            return f"the RAM role {role} does not exist: check the role ARN (assumeRoleARN / rrsaRoleARN)"
        if low.startswith("authenticationfail.oidctoken") or ("oidc" in low and "token" in low):
            return (
                "the RRSA OIDC token was rejected: check that the pod's projected service account token is "
                "mounted (ALIBABA_CLOUD_OIDC_TOKEN_FILE), that RRSA is enabled on the cluster and that the "
                "role trusts the OIDC provider and this service account"
            )
        if low.startswith("entitynotexist.oidcprovider") or "oidcprovider" in low:
            return (
                "the OIDC provider was not found: check rrsaOIDCProviderRoleARN / "
                "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"
            )
        if low.startswith("nopermission") or low.startswith("forbidden") or http_status == 403:
            return (
                f"{who} may not assume {role}: grant it sts:AssumeRole (e.g. the AliyunSTSAssumeRoleAccess "
                f"policy) and add it as a trusted principal in the trust policy of {role}"
            )
        if low.startswith("invalidparameter.durationseconds") or "durationseconds" in low:
            return (
                "expireDuration is longer than the role's maximum session duration: lower expireDuration "
                "or raise the role's MaxSessionDuration"
            )
    if (
        low.startswith("forbidden")
        or low.startswith("nopermission")
        or low == "accessdenied"
        or (http_status == 403 and not low.startswith("invalid") and not low.startswith("signature"))
    ):
        where = f" on instance {instance_id}" if instance_id else ""
        return (
            f"{who} is not allowed to call the Container Registry API{where}: grant it the RAM actions "
            f"{', '.join(REQUIRED_CR_ACTIONS)} (e.g. a policy with cr:Get*, cr:List*, cr:PullRepository)"
        )
    if (
        low in ("instance_not_exist", "instance.notexist", "instance_not_found")
        or "instance_not_exist" in low
    ):
        reg = f" in region {region}" if region else ""
        return (
            f"instance {instance_id or '(none)'} was not found{reg}: check instanceId, and if the instance "
            "lives in another region set regionId on this acr-registry-info entry; for another account's "
            "instance use assumeRoleARN or that account's AccessKey"
        )
    if low.startswith("invalidaccesskeyid"):
        return (
            f"the AccessKey ID of {who} is unknown or disabled: check customAccessKey / the "
            "access-key-id of the referenced Secret, and that the AccessKey is enabled"
        )
    if low.startswith("signaturedoesnotmatch") or low.startswith("incompletesignature"):
        return (
            f"the AccessKey secret does not match the AccessKey ID of {who}: check customAccessKeySecret / "
            "the access-key-secret of the referenced Secret"
        )
    if low.startswith("invalidsecuritytoken"):
        return (
            "the temporary (STS) credentials were rejected; fresh ones will be requested on the next attempt"
        )
    if low.startswith("throttling") or http_status == 429:
        return "the API is throttling requests; the controller backs off and retries"
    if http_status is not None and http_status >= 500:
        return "the Alibaba Cloud API had a server-side error; the controller retries with backoff"
    if low.startswith("repo_not_exist") or low.startswith("namespace_not_exist"):
        return "check the repository/namespace on the instance"
    return ""


# ----------------------------------------------------------------------------------------------
# Classification of SDK exceptions


_RETRYABLE_CODES = (
    "throttling",
    "serviceunavailable",
    "internalerror",
    "unknownerror",
    "invalidsecuritytoken",
)


def is_retryable_code(code: str | None, http_status: int | None) -> bool:
    low = (code or "").lower()
    if any(low.startswith(p) for p in _RETRYABLE_CODES):
        return True
    if http_status is not None and (http_status >= 500 or http_status == 429):
        return True
    return False


def _data_field(data: Any, *names: str) -> str | None:
    if isinstance(data, dict):
        for n in names:
            v = data.get(n)
            if v not in (None, "", "None"):
                return str(v)
    return None


def _network_reason(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).lower()
    if "timed out" in text or "timeout" in text:
        return "the request timed out"
    if "refused" in text:
        return "the connection was refused"
    if "name or service not known" in text or "nodename nor servname" in text or "resolve" in text:
        return "the host name could not be resolved"
    if "ssl" in text or "tls" in text or "certificate" in text:
        return "the TLS handshake failed"
    if "reset" in text or "aborted" in text or "remote end closed" in text:
        return "the connection was reset"
    return "the endpoint could not be reached"


def classify(
    exc: BaseException,
    *,
    registry: str,
    action: str,
    endpoint: str = "",
    identity: str = "",
    instance_id: str = "",
    region: str = "",
    role_arn: str | None = None,
    secrets: Iterable[str] = (),
) -> TokenError:
    """Turn any exception from an SDK call into a `TokenError` with advice."""
    if isinstance(exc, TokenError):
        return exc.with_registry(registry)
    # Imported lazily so this module stays importable (and cheap) without the SDKs.
    from alibabacloud_tea_openapi.exceptions import AlibabaCloudException, ThrottlingException
    from darabonba.exceptions import ResponseException, RetryError
    from Tea.exceptions import UnretryableException as TeaUnretryable

    secrets = tuple(secrets)
    inner: BaseException | None = exc
    if isinstance(exc, TeaUnretryable):
        inner = getattr(exc, "inner_exception", None) or exc
    if isinstance(inner, ResponseException):
        data = getattr(inner, "data", None)
        code = getattr(inner, "code", None)
        if code in (None, "", "None"):
            code = _data_field(data, "Code", "code")
        status: Any = getattr(inner, "status_code", None)
        if status is None and isinstance(data, dict):
            status = data.get("statusCode")
        try:
            status = int(status) if status is not None else None
        except (TypeError, ValueError):
            status = None
        request_id = getattr(inner, "request_id", None)
        if request_id in (None, "", "None"):
            request_id = _data_field(data, "RequestId", "requestId")
        server_msg = _data_field(data, "Message", "message") or ""
        retry_after: float | None = None
        if isinstance(inner, ThrottlingException) and inner.retry_after:
            retry_after = float(inner.retry_after) / 1000.0
        elif isinstance(inner, AlibabaCloudException) and getattr(inner, "retry_after", None):
            retry_after = float(inner.retry_after) / 1000.0
        retryable = retry_after is not None or is_retryable_code(code, status)
        message = _short(scrub(server_msg, secrets)) or "the API call failed"
        advice = advice_for(
            code,
            http_status=status,
            identity=identity,
            instance_id=instance_id,
            region=region,
            action=action,
            role_arn=role_arn,
        )
        if retry_after is not None:
            advice = f"the API asked to retry after {retry_after:g}s; the controller backs off and retries"
        return TokenError(
            registry,
            message,
            code=str(code) if code else None,
            retryable=retryable,
            retry_after=retry_after,
            advice=advice,
            request_id=str(request_id) if request_id else None,
            http_status=status,
            action=action,
            invalidates_credentials=(code or "").lower().startswith("invalidsecuritytoken"),
        )
    where = f" {endpoint}" if endpoint else ""
    if isinstance(inner, RetryError) or _looks_like_network(inner):
        return TokenError(
            registry,
            f"{_network_reason(inner or exc)} ({'endpoint' + where if where else 'no endpoint'})",
            code="NetworkError",
            retryable=True,
            action=action,
            advice=(
                "check DNS, egress and proxies from the controller's pod to the endpoint; inside a VPC "
                "without internet access use --use-vpc-endpoints, or point --cr-endpoint / --sts-endpoint "
                "at a reachable endpoint"
            ),
        )
    if isinstance(inner, RuntimeError) and "json" in str(inner).lower():
        return TokenError(
            registry,
            f"the endpoint{where} returned a response that is not JSON",
            code="InvalidResponse",
            retryable=True,
            action=action,
            advice=(
                "check that --cr-endpoint / --sts-endpoint point at the Alibaba Cloud API, not a proxy page"
            ),
        )
    return TokenError(
        registry,
        f"unexpected {type(inner or exc).__name__} from the SDK",
        code=type(inner or exc).__name__,
        retryable=True,
        action=action,
        advice="this is likely transient; it is retried with backoff",
    )


def _looks_like_network(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    try:
        import requests
    except ImportError:  # pragma: no cover
        return isinstance(exc, (ConnectionError, TimeoutError))
    return isinstance(exc, (ConnectionError, TimeoutError, requests.exceptions.RequestException))
