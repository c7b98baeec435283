"""Token refresh policy: is a token due, when next, how long to back off. Pure; `now` is passed in.

Modelled on cert-manager's policies: decisions come back as data with a reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from acr_helper.core.model import RegistryToken

#: the largest early-refresh jitter, and its share of the threshold
MAX_JITTER = timedelta(seconds=60)
JITTER_SHARE = 0.1


def jitter_fraction(key: str) -> float:
    """A deterministic number in [0, 1) derived from the registry key (spreads refreshes)."""
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def refresh_at(token: RegistryToken, threshold: timedelta) -> datetime:
    """When `token` becomes due: `threshold` (plus a little jitter) before it expires.

    A token whose whole lifetime is shorter than the threshold would be due the moment it
    arrives; such a token is refreshed at half its lifetime instead, so we never spin.
    """
    jitter = min(threshold * JITTER_SHARE, MAX_JITTER) * jitter_fraction(token.registry)
    due = token.expires_at - threshold - jitter
    lifetime = token.expires_at - token.obtained_at
    floor = token.obtained_at + lifetime / 2
    return max(due, floor)


def backoff_delay(
    failures: int,
    initial: timedelta = timedelta(seconds=5),
    cap: timedelta = timedelta(minutes=5),
    retry_after: timedelta | None = None,
) -> timedelta:
    """Capped exponential backoff after `failures` consecutive failures (>= 1).

    A server-sent retry-after is honoured when it asks for longer than our own schedule.
    """
    exponent = max(0, failures - 1)
    delay: timedelta = initial * (1 << min(exponent, 30))
    delay = min(delay, cap)
    if retry_after is not None and retry_after > delay:
        delay = min(retry_after, max(cap, retry_after))
    return delay


@dataclass(frozen=True)
class TokenStatus:
    """What the token cache knows about one registry."""

    registry: str
    token: RegistryToken | None = None
    failures: int = 0  # consecutive failures since the last success
    last_error: str | None = None  # secret-free message with advice
    last_error_retryable: bool = True
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    retry_at: datetime | None = None  # earliest next attempt after a failure


@dataclass(frozen=True)
class RefreshDecision:
    due: bool
    reason: str  # "no-token" | "changed" | "expired" | "expiring" | "backoff" | "fresh"
    next_at: datetime | None  # when to look again (None: as soon as possible / no token)


def decide(
    status: TokenStatus | None, threshold: timedelta, now: datetime, *, changed: bool = False
) -> RefreshDecision:
    """Should the cache call the registry API for this registry now?

    `changed`: the registry entry or its credential identity changed since the cached token was
    made; the token is then due at once (ignoring any backoff from the old configuration).
    """
    if changed:
        return RefreshDecision(True, "changed", None)
    if status is not None and status.retry_at is not None and now < status.retry_at:
        return RefreshDecision(False, "backoff", status.retry_at)
    token = status.token if status is not None else None
    if token is None:
        return RefreshDecision(True, "no-token", None)
    if now >= token.expires_at:
        return RefreshDecision(True, "expired", None)
    at = refresh_at(token, threshold)
    if now >= at:
        return RefreshDecision(True, "expiring", None)
    return RefreshDecision(False, "fresh", at)


def next_wakeup(statuses: list[TokenStatus], threshold: timedelta, now: datetime) -> datetime | None:
    """The earliest time any registry needs attention."""
    times = [d.next_at for d in (decide(s, threshold, now) for s in statuses) if d.next_at is not None]
    return min(times) if times else None
