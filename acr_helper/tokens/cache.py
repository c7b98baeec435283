"""The token cache: refresh only what `core.policy.decide` says is due, back off on failure.

Keyed by registry key; each cached token remembers the fingerprint of the entry and credential
identity it was made with, so a changed entry or a changed AccessKey Secret refreshes at once.
An old token keeps serving while it is valid; it is never replaced by an empty or invalid one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from acr_helper.core.config import RegistryConfig
from acr_helper.core.model import RegistryToken
from acr_helper.core.policy import RefreshDecision, TokenStatus, backoff_delay, decide, next_wakeup
from acr_helper.settings import TokenSettings
from acr_helper.tokens.errors import TokenError
from acr_helper.tokens.service import TokenService

#: at most this much earlier than due, a registry is refreshed together with one that is due
COALESCE_WINDOW = timedelta(minutes=5)
#: ACR temporary passwords live one hour (GetAuthorizationToken and GET /tokens; never requested
#: longer); a token claiming more is not adopted
MAX_ADOPTED_LIFETIME = timedelta(minutes=65)
ADOPT_CLOCK_SKEW = timedelta(minutes=1)


def identity_digest(fingerprint: str) -> str:
    """A short public digest of a (secret-free) credential fingerprint, for the tokens annotation."""
    return hashlib.sha256(("acr-helper-identity\0" + fingerprint).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RefreshReport:
    tokens: dict[str, RegistryToken]  # valid at `now`, in the order of `registries`
    statuses: dict[str, TokenStatus]
    attempted: tuple[str, ...]  # registries fetched this call
    results: tuple[tuple[str, str], ...]  # (registry, "success" | "error")
    errors: tuple[TokenError, ...]
    next_wakeup: datetime | None  # earliest time a registry is due or may be retried


class TokenCache:
    def __init__(
        self,
        service: TokenService,
        settings: TokenSettings,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        #: when a failure happened: backoff counts from it, not from the start of the pass (a slow
        #: failing call must not eat into the wait the server asked for). None: the pass's `now`.
        self._clock = clock
        self.service = service
        self.settings = settings
        self._statuses: dict[str, TokenStatus] = {}
        self._fingerprints: dict[str, str] = {}

    def refresh(
        self,
        registries: Mapping[str, RegistryConfig],
        *,
        threshold: timedelta,
        rrsa_enabled: bool,
        now: datetime,
    ) -> RefreshReport:
        for gone in [k for k in self._statuses if k not in registries]:
            del self._statuses[gone]
            self._fingerprints.pop(gone, None)

        attempted: list[str] = []
        results: list[tuple[str, str]] = []
        errors: list[TokenError] = []
        fingerprints: dict[str, str] = {}
        decisions = {}
        for key, registry in registries.items():
            status = self._statuses.get(key)
            fingerprints[key] = self.service.credential_fingerprint(key, registry, rrsa_enabled=rrsa_enabled)
            changed = status is not None and self._fingerprints.get(key) != fingerprints[key]
            decisions[key] = (changed, decide(status, threshold, now, changed=changed))
        # Every rotation rewrites every Secret: when one registry is due, refresh the others that
        # would fall due soon in the same pass, so a rotation costs one write per namespace, not
        # one per registry (their jittered due times are seconds to a minute apart).
        window = min(threshold / 2, COALESCE_WINDOW)
        if any(d.due for _, d in decisions.values()):
            for key, (changed, d) in decisions.items():
                if not d.due and d.reason == "fresh" and d.next_at is not None and d.next_at - now <= window:
                    decisions[key] = (changed, RefreshDecision(True, "coalesced", None))
        for key, registry in registries.items():
            status = self._statuses.get(key)
            fingerprint = fingerprints[key]
            changed, decision = decisions[key]
            if not decision.due:
                continue
            attempted.append(key)
            base = status or TokenStatus(registry=key)
            if changed:
                # a new entry or identity: retry at once; the old token serves until replaced
                base = replace(base, failures=0, retry_at=None)
            try:
                token = self.service.fetch(key, registry, rrsa_enabled=rrsa_enabled, now=now)
                if not token.valid_at(now):
                    raise TokenError(
                        key,
                        "the API returned an empty or already expired token",
                        code="InvalidToken",
                        retryable=True,
                        advice="retried with backoff",
                    )
            except Exception as exc:  # one registry's failure never stops the others
                err = (
                    exc.with_registry(key)
                    if isinstance(exc, TokenError)
                    else TokenError(
                        key,
                        f"unexpected {type(exc).__name__} while fetching the token",
                        code="InternalError",
                        retryable=True,
                        advice="this is a bug in acr-helper; it is retried with backoff",
                    )
                )
                errors.append(err)
                results.append((key, "error"))
                failures = base.failures + 1
                retry_after = timedelta(seconds=err.retry_after) if err.retry_after else None
                delay = backoff_delay(
                    failures,
                    initial=timedelta(seconds=self.settings.backoff_initial),
                    cap=timedelta(seconds=self.settings.backoff_max),
                    retry_after=retry_after,
                )
                old = base.token
                keep = old if (old is not None and old.valid_at(now)) else None
                self._statuses[key] = replace(
                    base,
                    token=keep,
                    failures=failures,
                    last_error=str(err),
                    last_error_retryable=err.retryable,
                    last_attempt_at=now,
                    retry_at=max(now, self._clock() if self._clock is not None else now) + delay,
                )
                self._fingerprints[key] = fingerprint
                continue
            results.append((key, "success"))
            token = replace(token, credential_id=identity_digest(fingerprint))
            self._statuses[key] = TokenStatus(
                registry=key,
                token=token,
                failures=0,
                last_error=None,
                last_error_retryable=True,
                last_attempt_at=now,
                last_success_at=now,
                retry_at=None,
            )
            self._fingerprints[key] = fingerprint

        statuses = {k: self._statuses[k] for k in registries if k in self._statuses}
        tokens: dict[str, RegistryToken] = {}
        for key in registries:
            st = statuses.get(key)
            if st is not None and st.token is not None and st.token.valid_at(now):
                tokens[key] = st.token
        return RefreshReport(
            tokens=tokens,
            statuses=statuses,
            attempted=tuple(attempted),
            results=tuple(results),
            errors=tuple(errors),
            next_wakeup=next_wakeup(list(statuses.values()), threshold, now),
        )

    def adopt(
        self,
        key: str,
        registry: RegistryConfig,
        token: RegistryToken,
        *,
        rrsa_enabled: bool,
        now: datetime,
    ) -> bool:
        """Take over a token an existing Secret already holds (after a restart or a leader
        change), so the Secrets are not all rewritten with a fresh one. Only when nothing is known
        for `key` yet, the token is valid at `now`, and it serves the configured domains."""
        if key in self._statuses or not token.valid_at(now):
            return False
        if registry.domains is not None and {d.lower() for d in registry.domains} != set(token.domains):
            return False
        # a plausible token only: issued in the past, living no longer than the registry APIs issue
        # them for (a forged far-future expiry must never stop the refresh)
        if (token.obtained_at > now + ADOPT_CLOCK_SKEW or token.expires_at <= token.obtained_at
                or token.expires_at - token.obtained_at > MAX_ADOPTED_LIFETIME
                or token.expires_at > now + MAX_ADOPTED_LIFETIME):
            return False
        fingerprint = self.service.credential_fingerprint(key, registry, rrsa_enabled=rrsa_enabled)
        if token.credential_id != identity_digest(fingerprint):
            return False  # obtained with another credential identity than the one configured now
        self._statuses[key] = TokenStatus(
            registry=key,
            token=token,
            last_success_at=token.obtained_at,
        )
        self._fingerprints[key] = fingerprint
        return True

    def clear(self) -> None:
        """Forget every token (on losing leadership: the next term adopts what the Secrets hold,
        which another leader may have rotated meanwhile)."""
        self._statuses.clear()
        self._fingerprints.clear()

    def statuses(self) -> dict[str, TokenStatus]:
        return dict(self._statuses)

    def forget(self, key: str) -> None:
        self._statuses.pop(key, None)
        self._fingerprints.pop(key, None)
