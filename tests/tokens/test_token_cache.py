"""TokenCache with a fixed clock and a scripted service."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from acr_helper.core.config import RegistryConfig
from acr_helper.core.model import RegistryToken, Sensitive
from acr_helper.settings import TokenSettings
from acr_helper.tokens import TokenCache, TokenError

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
THRESHOLD = timedelta(minutes=15)
SETTINGS = TokenSettings(backoff_initial=5.0, backoff_max=300.0)


class FakeService:
    def __init__(self) -> None:
        self.calls: list[tuple[str, datetime]] = []
        self.lifetime = timedelta(hours=1)
        self.fail: Callable[[str], TokenError | None] = lambda key: None
        self.password = "pw"
        self.fingerprints: dict[str, str] = {}

    def credential_fingerprint(self, key: str, registry: RegistryConfig, *, rrsa_enabled: bool) -> str:
        return self.fingerprints.get(key, "fp")

    def fetch(
        self, key: str, registry: RegistryConfig, *, rrsa_enabled: bool, now: datetime
    ) -> RegistryToken:
        self.calls.append((key, now))
        err = self.fail(key)
        if err is not None:
            raise err
        return RegistryToken(
            key, "user", Sensitive(self.password), now + self.lifetime, now, ("d.example.com",)
        )


def make(regs: tuple[str, ...] = ("a", "b")) -> tuple[FakeService, TokenCache, dict[str, RegistryConfig]]:
    svc = FakeService()
    cache = TokenCache(svc, SETTINGS)  # type: ignore[arg-type]
    return svc, cache, {k: RegistryConfig(instance_id=f"cri-{k}") for k in regs}


def refresh(cache: TokenCache, regs: dict[str, RegistryConfig], now: datetime):
    return cache.refresh(regs, threshold=THRESHOLD, rrsa_enabled=False, now=now)


def test_fetches_once_then_serves_from_cache_until_due() -> None:
    svc, cache, regs = make()
    r = refresh(cache, regs, T0)
    assert r.attempted == ("a", "b") and r.results == (("a", "success"), ("b", "success"))
    assert list(r.tokens) == ["a", "b"] and r.errors == ()
    for minutes in (1, 10, 30, 44):
        r = refresh(cache, regs, T0 + timedelta(minutes=minutes))
        assert r.attempted == () and len(r.tokens) == 2
    assert len(svc.calls) == 2
    # due at expiry - threshold - jitter (jitter <= 10% of threshold)
    assert r.next_wakeup is not None
    assert T0 + timedelta(minutes=45) - timedelta(seconds=90) <= r.next_wakeup <= T0 + timedelta(minutes=45)
    r = refresh(cache, regs, T0 + timedelta(minutes=46))
    assert r.attempted == ("a", "b")
    assert len(svc.calls) == 4


def test_failure_keeps_old_token_and_backs_off_exponentially() -> None:
    svc, cache, regs = make(("a",))
    refresh(cache, regs, T0)
    svc.fail = lambda key: TokenError(key, "boom", code="ServiceUnavailable", retryable=True, http_status=503)
    now = T0 + timedelta(minutes=46)
    r = refresh(cache, regs, now)
    assert r.results == (("a", "error"),) and r.errors[0].code == "ServiceUnavailable"
    assert r.tokens["a"].obtained_at == T0  # old token keeps serving
    st = r.statuses["a"]
    assert st.failures == 1 and st.retry_at == now + timedelta(seconds=5)
    assert "boom" in (st.last_error or "")
    assert r.next_wakeup == now + timedelta(seconds=5)
    # inside the backoff: no call
    assert refresh(cache, regs, now + timedelta(seconds=4)).attempted == ()
    r = refresh(cache, regs, now + timedelta(seconds=5))
    assert r.attempted == ("a",) and r.statuses["a"].retry_at == now + timedelta(seconds=15)  # 5 + 10
    # after expiry the old token is no longer served
    r = refresh(cache, regs, T0 + timedelta(hours=1, seconds=1))
    assert r.tokens == {}
    svc.fail = lambda key: None
    r = refresh(cache, regs, T0 + timedelta(hours=2))
    assert r.tokens["a"].obtained_at == T0 + timedelta(hours=2) and r.statuses["a"].failures == 0


def test_backoff_is_capped_and_honours_retry_after() -> None:
    svc, cache, regs = make(("a",))
    svc.fail = lambda key: TokenError(
        key, "slow down", code="Throttling.User", retryable=True, retry_after=42.0
    )
    r = refresh(cache, regs, T0)
    assert r.statuses["a"].retry_at == T0 + timedelta(seconds=42)
    svc.fail = lambda key: TokenError(key, "x", code="InternalError", retryable=True)
    now = T0
    for _ in range(12):
        now = cache.statuses()["a"].retry_at or now
        r = refresh(cache, regs, now)
    assert r.statuses["a"].retry_at - now == timedelta(seconds=300)


def test_invalid_token_never_replaces_a_valid_one() -> None:
    svc, cache, regs = make(("a",))
    refresh(cache, regs, T0)
    svc.password = ""
    r = refresh(cache, regs, T0 + timedelta(minutes=50))
    assert r.results == (("a", "error"),) and r.errors[0].code == "InvalidToken"
    assert r.tokens["a"].password.reveal() == "pw"


def test_unexpected_exception_is_contained_and_secret_free() -> None:
    svc, cache, regs = make(("a", "b"))

    def boom(key: str) -> TokenError | None:
        if key == "a":
            raise ValueError("contains fake-secret-not-real")
        return None

    svc.fail = boom
    r = refresh(cache, regs, T0)
    assert r.results == (("a", "error"), ("b", "success"))
    assert "fake-secret-not-real" not in str(r.errors[0]) and r.errors[0].code == "InternalError"


def test_forgets_unconfigured_registries_and_keeps_order() -> None:
    _svc, cache, regs = make(("a", "b", "c"))
    refresh(cache, regs, T0)
    regs2 = {"c": regs["c"], "a": regs["a"]}
    r = refresh(cache, regs2, T0 + timedelta(minutes=1))
    assert list(r.tokens) == ["c", "a"] and set(cache.statuses()) == {"a", "c"}


def test_changed_credentials_refresh_at_once_and_clear_backoff() -> None:
    svc, cache, regs = make(("a",))
    svc.fail = lambda key: TokenError(key, "denied", code="Forbidden.RAM", retryable=False)
    refresh(cache, regs, T0)
    assert refresh(cache, regs, T0 + timedelta(seconds=1)).attempted == ()
    svc.fail = lambda key: None
    svc.fingerprints["a"] = "rotated"
    r = refresh(cache, regs, T0 + timedelta(seconds=2))
    assert r.attempted == ("a",) and "a" in r.tokens
    assert refresh(cache, regs, T0 + timedelta(seconds=3)).attempted == ()


def test_one_call_per_registry_per_rotation_no_matter_how_often_refresh_runs() -> None:
    svc, cache, regs = make(("a", "b", "c"))
    now = T0
    end = T0 + timedelta(hours=5)
    while now < end:
        refresh(cache, regs, now)
        now += timedelta(seconds=7)
    per_key = {k: sum(1 for c, _ in svc.calls if c == k) for k in regs}
    # 1h tokens refreshed ~15 min before expiry: one call every ~45 min -> 7 per key in 5 h
    assert all(6 <= n <= 7 for n in per_key.values()), per_key


def test_registries_due_within_the_window_rotate_together() -> None:
    """One rotation pass, not one per registry: each rotation rewrites every Secret."""
    _svc, cache, regs = make(("a", "b", "c"))
    refresh(cache, regs, T0)
    now = T0
    rotation_passes = []
    while now < T0 + timedelta(hours=3):
        r = refresh(cache, regs, now)
        if r.attempted:
            rotation_passes.append(r.attempted)
        now += timedelta(seconds=5)
    assert rotation_passes and all(p == ("a", "b", "c") for p in rotation_passes), rotation_passes


def test_a_registry_far_from_due_is_not_pulled_forward() -> None:
    _svc, cache, regs = make(("a", "b"))
    refresh(cache, {"a": regs["a"]}, T0)
    refresh(cache, regs, T0 + timedelta(minutes=30))  # b fetched 30 min later
    r = refresh(cache, regs, T0 + timedelta(minutes=46))  # a due; b due only at ~75 min
    assert r.attempted == ("a",)


def _adoptable(now: datetime, **kw) -> RegistryToken:
    from acr_helper.tokens.cache import identity_digest

    base = dict(registry="a", username="user", password=Sensitive("pw"), expires_at=now + timedelta(minutes=40),
                obtained_at=now - timedelta(minutes=20), domains=("d.example.com",),
                credential_id=identity_digest("fp"))
    base.update(kw)
    return RegistryToken(**base)


def test_adopt_takes_a_plausible_token_obtained_with_the_current_identity() -> None:
    svc, cache, regs = make(("a",))
    assert cache.adopt("a", regs["a"], _adoptable(T0), rrsa_enabled=False, now=T0)
    r = refresh(cache, regs, T0 + timedelta(minutes=1))
    assert r.attempted == () and r.tokens["a"].password.reveal() == "pw"
    assert svc.calls == []


def test_adopt_refuses_forged_or_foreign_tokens() -> None:
    for bad in (
        dict(expires_at=datetime(2099, 1, 1, tzinfo=UTC)),  # far-future expiry
        dict(obtained_at=T0 + timedelta(hours=1)),  # issued in the future
        dict(obtained_at=T0 - timedelta(hours=3), expires_at=T0 + timedelta(minutes=10)),  # too long-lived
        dict(credential_id="0000000000000000"),  # another credential identity
        dict(credential_id=""),  # no identity recorded
        dict(expires_at=T0 - timedelta(seconds=1)),  # expired
    ):
        _svc, cache, regs = make(("a",))
        assert not cache.adopt("a", regs["a"], _adoptable(T0, **bad), rrsa_enabled=False, now=T0), bad


def test_fetched_tokens_carry_the_identity_and_clear_forgets_everything() -> None:
    from acr_helper.tokens.cache import identity_digest

    _svc, cache, regs = make(("a",))
    r = refresh(cache, regs, T0)
    assert r.tokens["a"].credential_id == identity_digest("fp")
    cache.clear()
    assert cache.statuses() == {}
