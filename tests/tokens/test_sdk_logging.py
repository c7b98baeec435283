"""Nothing the SDKs (or we) print or log can carry a credential, on failing and succeeding calls."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import responses
from tokens_helpers import CR_URL, NOW, STS_URL, add_imds, ee_token_body, error_body, sts_body

from acr_helper.core.config import RegistryConfig
from acr_helper.settings import TokenSettings
from acr_helper.tokens import TokenCache, TokenError, TokenService
from acr_helper.tokens.sdk_logging import SDK_LOGGERS, quiet_sdk_loggers

SECRETS = (
    "fake-secret-not-real",
    "ee-password-SECRET-1",
    "sts-secret-SECRET-3",
    "sts-token-SECRET-4",
    "worker-secret-SECRET-5",
    "worker-token-SECRET-6",
    "oidc-jwt-SECRET-7",
)


def test_sdk_loggers_have_no_stream_handlers_and_do_not_propagate() -> None:
    import alibabacloud_credentials.client
    import alibabacloud_credentials.provider  # noqa: F401

    quiet_sdk_loggers()
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        assert not logger.propagate and logger.disabled
        assert all(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert logging.getLogger("urllib3.connectionpool").getEffectiveLevel() >= logging.INFO


def test_no_secret_in_logs_or_output(
    rsps: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path,
) -> None:
    monkeypatch.setenv("DEBUG", "sdk")  # makes darabonba dump request headers, incl. the security token
    caplog.set_level(logging.DEBUG)
    token_file = tmp_path / "token"
    token_file.write_text("oidc-jwt-SECRET-7")
    add_imds(rsps)
    rsps.add(responses.POST, STS_URL, json=sts_body(NOW + timedelta(hours=1)))
    rsps.add(responses.POST, CR_URL, json=ee_token_body(NOW + timedelta(hours=1)))
    settings = TokenSettings(region="cn-hangzhou")
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": "r",
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": "p",
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
    }
    svc = TokenService(settings, environ=env)
    regs = {
        "ak": RegistryConfig(
            instance_id="cri-abc",
            domains=("d",),
            custom_access_key="FAKE-AK-ID",
            custom_access_key_secret="fake-secret-not-real",
            assume_role_arn="acs:ram::1:role/x",
        ),
        "worker": RegistryConfig(instance_id="cri-abc", domains=("d",)),
    }
    cache = TokenCache(svc, settings)
    ok = cache.refresh(regs, threshold=timedelta(minutes=15), rrsa_enabled=False, now=NOW)
    assert ok.errors == () and len(ok.tokens) == 2
    svc.fetch("rrsa", RegistryConfig(instance_id="cri-abc", domains=("d",)), rrsa_enabled=True, now=NOW)
    # now fail every way we can
    rsps.replace(responses.POST, CR_URL, json=error_body("Forbidden.RAM"), status=403)
    rsps.replace(responses.POST, STS_URL, json=error_body("NoPermission"), status=403)
    failed = cache.refresh(
        regs, threshold=timedelta(minutes=15), rrsa_enabled=False, now=NOW + timedelta(hours=2)
    )
    assert len(failed.errors) == 2
    for err in failed.errors:
        logging.getLogger("acr_helper.test").error("refresh failed: %s", err, exc_info=err)
    with pytest.raises(TokenError):
        svc.fetch(
            "rrsa2",
            RegistryConfig(instance_id="cri-abc", domains=("d",)),
            rrsa_enabled=True,
            now=NOW + timedelta(hours=3),
        )
    out = capsys.readouterr()
    texts = [
        out.out,
        out.err,
        caplog.text,
        *(repr(s) for s in failed.statuses.values()),
        *(str(s) for s in failed.statuses.values()),
        repr(ok.tokens),
        str(ok.tokens),
    ]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
