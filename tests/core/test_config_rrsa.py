"""rrsaRoleARN without `rrsa: enable: true`: the warning tells the truth the tokens layer acts on."""

from __future__ import annotations

from typing import Any

import pytest

from acr_helper.core.config import RRSA_DISABLED_WARNING, RegistryConfig, parse_config
from acr_helper.settings import TokenSettings
from acr_helper.tokens.credentials import CredentialResolver

ROLE = "acs:ram::1234567890123456:role/acr-rrsa"
PROVIDER = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123"
ENTRY = f"- instanceId: cri-abc\n  rrsaRoleARN: {ROLE}\n  rrsaOIDCProviderRoleARN: {PROVIDER}"


def resolver(addon: dict[str, str] | None) -> CredentialResolver:
    def read(name: str) -> dict[str, str] | None:
        return addon if name == "alibaba-addon-secret" else None

    imds: Any = object()  # base_source never calls the metadata service
    return CredentialResolver(TokenSettings(), secret_reader=read, environ={}, imds=imds)


def test_rrsa_disabled_warning_says_the_chain_continues() -> None:
    result = parse_config({"acr-registry-info": ENTRY})
    assert result.ok
    (warning,) = [w for w in result.warnings if w.field == "[0].rrsaRoleARN"]
    assert warning.message == RRSA_DISABLED_WARNING
    assert "still uses RRSA" not in warning.message
    assert "ignores rrsaRoleARN" in warning.message
    assert "alibaba-addon-secret" in warning.message and "worker RAM role" in warning.message
    assert "`enable: true`" in warning.message


def test_no_warning_when_rrsa_is_enabled() -> None:
    result = parse_config({"acr-registry-info": ENTRY, "rrsa": "enable: true"})
    assert result.ok and not [w for w in result.warnings if "rrsa" in w.message.lower()]


@pytest.mark.parametrize(
    ("addon", "kind"),
    [({"access-key-id": "FAKE-AK-ID", "access-key-secret": "fake-secret-not-real"}, "addon-secret"), (None, "worker-role")],
)
def test_the_warning_matches_what_the_tokens_layer_does(addon: dict[str, str] | None, kind: str) -> None:
    result = parse_config({"acr-registry-info": ENTRY})
    assert result.config is not None
    reg = result.config.registries[0]
    source = resolver(addon).base_source("cri-abc", reg, rrsa_enabled=result.config.rrsa.enable)
    assert source.kind == kind  # not rrsa: the entry's rrsaRoleARN is ignored
    assert reg.credential_hint(rrsa_enabled=result.config.rrsa.enable) == "default-chain"


def test_credential_hint_follows_the_rrsa_switch() -> None:
    reg = RegistryConfig(instance_id="cri-abc", rrsa_role_arn=ROLE, rrsa_oidc_provider_role_arn=PROVIDER)
    assert reg.credential_hint(rrsa_enabled=True) == "rrsa"
    assert reg.credential_hint(rrsa_enabled=False) == "default-chain"
    assert RegistryConfig().credential_hint(rrsa_enabled=True) == "rrsa"  # role from the pod's environment
    keyed = RegistryConfig(custom_access_key="FAKE-AK-ID", rrsa_role_arn=ROLE)
    assert keyed.credential_hint(rrsa_enabled=True) == "access-key"
