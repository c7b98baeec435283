"""Building Alibaba Cloud SDK client configurations with explicit values (never the environment)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

# Import the SDKs here (once), then remove the handlers their import attached.
from alibabacloud_tea_openapi.utils_models import Config

from acr_helper.core.model import Sensitive
from acr_helper.tokens.sdk_logging import quiet_sdk_loggers

quiet_sdk_loggers()

USER_AGENT = "acr-helper"


@dataclass(frozen=True)
class Endpoint:
    """An endpoint override: `host[:port]` plus the protocol (None: the SDK's default, https)."""

    host: str
    protocol: str | None = None

    def __str__(self) -> str:
        return f"{self.protocol}://{self.host}" if self.protocol else self.host


def parse_endpoint(value: str | None) -> Endpoint | None:
    """`http://127.0.0.1:8080` -> Endpoint('127.0.0.1:8080', 'http'); `cr.example.com` -> https host."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if "://" in text:
        parts = urlsplit(text)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"endpoint {value!r}: expected http://host[:port] or https://host[:port]")
        return Endpoint(parts.netloc, scheme)
    return Endpoint(text.rstrip("/"), None)


@dataclass(frozen=True)
class Credential:
    """Resolved API credentials. Only the AccessKey ID and `identity` are safe to show."""

    access_key_id: str
    access_key_secret: Sensitive
    security_token: Sensitive | None = None
    expiration: datetime | None = None
    obtained_at: datetime | None = None
    #: human-readable, secret-free: "AccessKey LTAI…", "worker RAM role X", "role acs:ram::…"
    identity: str = ""

    def usable_at(self, now: datetime) -> bool:
        """Reusable: no expiry, or less than half of its lifetime used and > 5 minutes left."""
        if self.expiration is None:
            return True
        if now >= self.expiration - timedelta(minutes=5):
            return False
        if self.obtained_at is not None and self.expiration > self.obtained_at:
            half = self.obtained_at + (self.expiration - self.obtained_at) / 2
            return now < half
        return True

    def secrets(self) -> tuple[str, ...]:
        out = [self.access_key_secret.reveal()]
        if self.security_token is not None:
            out.append(self.security_token.reveal())
        return tuple(s for s in out if s)

    def __repr__(self) -> str:
        return f"Credential(identity={self.identity!r}, access_key_id={self.access_key_id!r})"


def make_config(
    *,
    credential: Credential | None,
    region: str | None,
    endpoint: Endpoint | None,
    use_vpc: bool,
    connect_timeout: float,
    read_timeout: float,
) -> Config:
    config = Config(
        region_id=region or None,
        connect_timeout=int(connect_timeout * 1000),
        read_timeout=int(read_timeout * 1000),
        user_agent=USER_AGENT,
    )
    if credential is not None:
        config.access_key_id = credential.access_key_id
        config.access_key_secret = credential.access_key_secret.reveal()
        if credential.security_token is not None and credential.security_token:
            config.security_token = credential.security_token.reveal()
    if endpoint is not None:
        config.endpoint = endpoint.host
        if endpoint.protocol:
            config.protocol = endpoint.protocol
    elif use_vpc:
        config.network = "vpc"
    return config


def runtime_options(connect_timeout: float, read_timeout: float) -> object:
    from darabonba.runtime import RuntimeOptions

    return RuntimeOptions(
        connect_timeout=int(connect_timeout * 1000),
        read_timeout=int(read_timeout * 1000),
        autoretry=False,
    )
