"""Alibaba Cloud credentials and ACR tokens. The only package that imports the Alibaba Cloud SDKs."""

from __future__ import annotations

from acr_helper.core.policy import TokenStatus
from acr_helper.tokens.cache import RefreshReport, TokenCache
from acr_helper.tokens.errors import TokenError
from acr_helper.tokens.service import TokenService

__all__ = ["RefreshReport", "TokenCache", "TokenError", "TokenService", "TokenStatus"]
