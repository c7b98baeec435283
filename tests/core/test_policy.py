"""core.policy: due decisions, jitter, backoff, next wakeup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from acr_helper.core.model import RegistryToken, Sensitive
from acr_helper.core.policy import (
    MAX_JITTER,
    TokenStatus,
    backoff_delay,
    decide,
    jitter_fraction,
    next_wakeup,
    refresh_at,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TH = timedelta(minutes=15)


def tok(key: str = "r", lifetime: timedelta = timedelta(hours=1)) -> RegistryToken:
    return RegistryToken(key, "u", Sensitive("p"), T0 + lifetime, T0, ("d",))


def test_decide_reasons() -> None:
    assert decide(None, TH, T0).reason == "no-token"
    st_ = TokenStatus("r", token=tok())
    d = decide(st_, TH, T0 + timedelta(minutes=10))
    assert not d.due and d.reason == "fresh" and d.next_at == refresh_at(st_.token, TH)
    assert decide(st_, TH, T0 + timedelta(minutes=46)).reason == "expiring"
    assert decide(st_, TH, T0 + timedelta(hours=1)).reason == "expired"
    backing = TokenStatus("r", token=tok(), retry_at=T0 + timedelta(minutes=50))
    assert decide(backing, TH, T0 + timedelta(minutes=49)).reason == "backoff"
    assert decide(backing, TH, T0 + timedelta(minutes=49), changed=True).reason == "changed"


def test_short_lived_tokens_refresh_at_half_life() -> None:
    t = tok(lifetime=timedelta(minutes=10))
    assert refresh_at(t, TH) == T0 + timedelta(minutes=5)


def test_backoff_sequence_cap_and_retry_after() -> None:
    assert [backoff_delay(n).total_seconds() for n in (1, 2, 3, 4)] == [5, 10, 20, 40]
    assert backoff_delay(30) == timedelta(minutes=5)
    assert backoff_delay(1, retry_after=timedelta(seconds=30)) == timedelta(seconds=30)
    assert backoff_delay(4, retry_after=timedelta(seconds=1)) == timedelta(seconds=40)


def test_next_wakeup_is_earliest() -> None:
    a = TokenStatus("a", token=tok("a"))
    b = TokenStatus("b", token=tok("b"), retry_at=T0 + timedelta(minutes=1))
    assert next_wakeup([a, b], TH, T0) == T0 + timedelta(minutes=1)
    assert next_wakeup([], TH, T0) is None


@given(st.text(min_size=1, max_size=30))
def test_jitter_is_bounded_and_deterministic(key: str) -> None:
    f = jitter_fraction(key)
    assert 0 <= f < 1 and f == jitter_fraction(key)
    at = refresh_at(tok(key), TH)
    assert T0 + timedelta(minutes=45) - MAX_JITTER <= at <= T0 + timedelta(minutes=45)
