"""Integration over real HTTP against the local emulator: every credential path, and call counts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from acr_helper.core.config import RegistryConfig
from acr_helper.settings import TokenSettings
from acr_helper.tokens import TokenCache, TokenError, TokenService
from acr_helper.tokens.emulator import AliyunEmulator, make_fake_jwt

AK, SK = "FAKE-AK-ID", "fake-secret-not-real"
CROSS = "acs:ram::1234567890123456:role/cross-account-puller"
RRSA_ROLE = "acs:ram::1234567890123456:role/acr-helper-rrsa"
OIDC_PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-cfake"


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 11, 28, 12, 0, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.t

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(clock: Clock) -> Iterator[AliyunEmulator]:
    e = AliyunEmulator(region="cn-hangzhou", clock=clock, access_keys={AK: SK})
    e.add_instance("cri-abc", name="myinst")
    e.add_instance("cri-bj", name="bj", region="cn-beijing")
    e.add_role(CROSS)
    e.add_role(RRSA_ROLE)
    e.add_oidc_provider(OIDC_PROVIDER)
    e.start()
    yield e
    e.stop()


def settings(emu: AliyunEmulator, **kw: object) -> TokenSettings:
    base: dict[str, object] = dict(
        region="cn-hangzhou",
        cr_endpoint=emu.url,
        sts_endpoint=emu.url,
        ecs_metadata_endpoint=emu.url,
        connect_timeout=2.0,
        read_timeout=5.0,
    )
    base.update(kw)
    return TokenSettings(**base)  # type: ignore[arg-type]


def cr_requests(emu: AliyunEmulator, action: str = "GetAuthorizationToken"):
    return [r for r in emu.requests if r.action == action]


def test_access_key(emu: AliyunEmulator, clock: Clock) -> None:
    svc = TokenService(settings(emu), environ={})
    reg = RegistryConfig(instance_id="cri-abc", custom_access_key=AK, custom_access_key_secret=SK)
    tok = svc.fetch("cri-abc", reg, rrsa_enabled=False, now=clock.now)
    assert emu.is_valid_registry_login(tok.username, tok.password.reveal())
    assert tok.domains == (
        "myinst-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
        "myinst-registry.cn-hangzhou.cr.aliyuncs.com",
    )
    assert tok.expires_at == clock.now + timedelta(hours=1)
    assert cr_requests(emu)[0].access_key_id == AK and emu.calls("imds-credentials") == 0


def test_assume_role_on_access_key(emu: AliyunEmulator, clock: Clock) -> None:
    svc = TokenService(settings(emu), environ={})
    reg = RegistryConfig(
        instance_id="cri-abc",
        custom_access_key=AK,
        custom_access_key_secret=SK,
        assume_role_arn=CROSS,
        expire_duration=1800,
    )
    tok = svc.fetch("cri-abc", reg, rrsa_enabled=False, now=clock.now)
    assert tok.source == f"access-key + assume-role({CROSS})"
    sts = cr_requests(emu, "AssumeRole")[0]
    assert sts.access_key_id == AK and sts.params["DurationSeconds"] == "1800"
    assert sts.params["RoleSessionName"] == "acr-helper-cri-abc"
    cr = cr_requests(emu)[0]
    assert emu.sts_principal(cr.access_key_id) == CROSS and cr.security_token_present
    # the registry token cannot outlive the STS credentials
    assert tok.expires_at == clock.now + timedelta(seconds=1800)


def test_assume_role_on_worker_role(emu: AliyunEmulator, clock: Clock) -> None:
    svc = TokenService(settings(emu), environ={})
    tok = svc.fetch(
        "cri-abc",
        RegistryConfig(instance_id="cri-abc", assume_role_arn=CROSS),
        rrsa_enabled=False,
        now=clock.now,
    )
    assert tok.source == f"worker-role + assume-role({CROSS})"
    sts = cr_requests(emu, "AssumeRole")[0]
    assert emu.sts_principal(sts.access_key_id) == emu.imds_role_arn  # signed by the worker role's key
    assert emu.sts_principal(cr_requests(emu)[0].access_key_id) == CROSS


def test_rrsa_with_token_file(emu: AliyunEmulator, clock: Clock, tmp_path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(
        make_fake_jwt({"sub": "system:serviceaccount:kube-system:acr-helper", "exp": clock() + 3600})
    )
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": RRSA_ROLE,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": OIDC_PROVIDER,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
    }
    svc = TokenService(settings(emu), environ=env)
    tok = svc.fetch("cri-abc", RegistryConfig(instance_id="cri-abc"), rrsa_enabled=True, now=clock.now)
    assert tok.source == "rrsa" and emu.is_valid_registry_login(tok.username, tok.password.reveal())
    assert emu.calls("AssumeRoleWithOIDC") == 1 and emu.calls("imds-credentials") == 0
    assert emu.sts_principal(cr_requests(emu)[0].access_key_id) == RRSA_ROLE
    # an expired projected token is reported with advice (after the cached credentials go stale)
    token_file.write_text(make_fake_jwt({"exp": clock() - 1}))
    clock.advance(3000)
    with pytest.raises(TokenError) as ei:
        svc.fetch("cri-abc", RegistryConfig(instance_id="cri-abc"), rrsa_enabled=True, now=clock.now)
    assert ei.value.code == "AuthenticationFail.OIDCToken.Expired" and "OIDC token" in ei.value.advice


@pytest.mark.parametrize("imds_v2", [True, False])
def test_worker_role_imdsv2_and_v1_fallback(clock: Clock, imds_v2: bool) -> None:
    e = AliyunEmulator(
        region="cn-hangzhou", clock=clock, reject_imds_token=not imds_v2, require_imdsv2=imds_v2
    )
    e.add_instance("cri-abc", name="myinst")
    with e:
        svc = TokenService(settings(e, region=None), environ={})
        assert svc.default_region() == "cn-hangzhou"
        tok = svc.fetch("cri-abc", RegistryConfig(instance_id="cri-abc"), rrsa_enabled=False, now=clock.now)
        assert tok.source == "worker-role"
        assert e.sts_principal(cr_requests(e)[0].access_key_id) == e.imds_role_arn
        assert e.calls("imds-token") >= 1
        if not imds_v2:
            svc2 = TokenService(settings(e, imds_v1_fallback=False), environ={})
            with pytest.raises(TokenError) as ei:
                svc2.fetch(
                    "cri-abc", RegistryConfig(instance_id="cri-abc"), rrsa_enabled=False, now=clock.now
                )
            assert ei.value.code == "WorkerRoleUnavailable"


def test_cross_region_instance_needs_region_id(clock: Clock) -> None:
    e = AliyunEmulator(region="cn-hangzhou", clock=clock, strict_region=True, access_keys={AK: SK})
    e.add_instance("cri-bj", name="bj", region="cn-beijing")
    with e:
        svc = TokenService(settings(e), environ={})
        creds = dict(custom_access_key=AK, custom_access_key_secret=SK)
        with pytest.raises(TokenError) as ei:
            svc.fetch(
                "cri-bj", RegistryConfig(instance_id="cri-bj", **creds), rrsa_enabled=False, now=clock.now
            )
        assert ei.value.code == "INSTANCE_NOT_EXIST" and "regionId" in ei.value.advice


def test_forbidden_and_throttling_through_the_emulator(emu: AliyunEmulator, clock: Clock) -> None:
    svc = TokenService(settings(emu), environ={})
    reg = RegistryConfig(instance_id="cri-abc", custom_access_key=AK, custom_access_key_secret=SK)
    emu.deny(AK, "ListInstanceEndpoint")
    with pytest.raises(TokenError) as ei:
        svc.fetch("cri-abc", reg, rrsa_enabled=False, now=clock.now)
    assert ei.value.code == "Forbidden.RAM" and "cr:ListInstanceEndpoint" in ei.value.advice
    assert AK in ei.value.advice
    emu.allow(AK, "ListInstanceEndpoint")
    emu.inject_fault("GetAuthorizationToken", "throttle-retry-after", retry_after_ms=3000)
    with pytest.raises(TokenError) as ei:
        svc.fetch("cri-abc", reg, rrsa_enabled=False, now=clock.now)
    assert ei.value.retryable and ei.value.retry_after == pytest.approx(3.0)


def test_one_token_call_per_registry_per_rotation(emu: AliyunEmulator, clock: Clock) -> None:
    """refresh() runs every 5 s for 3 hours; each registry costs one token call per ~45-minute rotation."""
    emu.add_role(CROSS)
    st = settings(emu, endpoint_cache_seconds=3600)
    svc = TokenService(st, environ={})
    cache = TokenCache(svc, st)
    regs = {
        "cri-abc": RegistryConfig(instance_id="cri-abc"),
        "cri-bj@cn-beijing": RegistryConfig(
            instance_id="cri-bj",
            region_id="cn-beijing",
            custom_access_key=AK,
            custom_access_key_secret=SK,
            assume_role_arn=CROSS,
        ),
        "personal/cn-hangzhou": RegistryConfig(),
    }
    end = clock() + 3 * 3600
    attempts = dict.fromkeys(regs, 0)
    refresh_calls = 0
    while clock() < end:
        report = cache.refresh(regs, threshold=timedelta(minutes=15), rrsa_enabled=False, now=clock.now)
        refresh_calls += 1
        assert report.errors == ()
        assert set(report.tokens) == set(regs)
        for key in report.attempted:
            attempts[key] += 1
        clock.advance(5)
    assert refresh_calls == 2160
    # one token call per registry per rotation, whatever the number of refresh() calls
    assert emu.calls("GetAuthorizationToken") == attempts["cri-abc"] + attempts["cri-bj@cn-beijing"]
    assert emu.calls("PersonalToken") == attempts["personal/cn-hangzhou"]
    assert emu.calls("AssumeRole") <= attempts["cri-bj@cn-beijing"]  # STS scales with registries
    # a rotation every 30-45 minutes (tokens are bounded by the STS credentials behind them)
    assert all(4 <= n <= 7 for n in attempts.values()), attempts
    assert emu.calls("ListInstanceEndpoint") <= 2 * 4
    assert emu.calls("imds-credentials") <= 8
