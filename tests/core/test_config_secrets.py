"""No secret text pasted under any key or registry field reaches a message, str, repr or JSON dump."""

from __future__ import annotations

import pytest

from acr_helper.core.config import KNOWN_KEYS, REGISTRY_FIELDS, ConfigResult, load_configmap_manifest, parse_config
from acr_helper.core.durations import parse_duration

SECRET = "fake-secret-not-real"
#: short enough that no truncation of a message can hide it
SHORT = "Zq9FakeVal"
PASTES = (
    f"customAccessKeySecret: {SECRET}",
    f"customAccessKeySecret: {SHORT}",
    f"password={SHORT}",
    f"token {SHORT}",
    f"AccessKeySecret:{SHORT}",
    f"`customAccessKeySecret: {SHORT}`",
    f"'customAccessKeySecret: {SHORT}'",
    f'"customAccessKeySecret: {SHORT}"',
    f"x`y customAccessKeySecret: {SHORT}",
)
#: fragments of the secrets that must never be shown (a masked value may keep the key's name)
LEAKS = ("not-real", "t-not", SHORT, SHORT[3:])


def everything(result: ConfigResult) -> str:
    parts = [repr(result), str(result), result.model_dump_json(), repr(result.model_dump())]
    parts += [str(m) for m in result.messages] + [repr(m) for m in result.messages]
    if result.config is not None:
        parts += [repr(result.config), str(result.config), result.config.model_dump_json()]
        for reg in result.config.registries:
            parts += [repr(reg), str(reg), reg.credential_hint(), repr(reg.model_dump())]
    return "\n".join(parts)


def assert_no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, text


@pytest.mark.parametrize("paste", PASTES)
@pytest.mark.parametrize("key", KNOWN_KEYS)
def test_secret_pasted_as_any_top_level_value_is_never_shown(key: str, paste: str) -> None:
    result = parse_config({key: paste})
    assert_no_leak(everything(result))


@pytest.mark.parametrize("paste", PASTES)
def test_secret_pasted_as_a_key_name_is_never_shown(paste: str) -> None:
    result = parse_config({paste: "x", "watch-namespace": "default"})
    assert result.warnings
    assert_no_leak(everything(result))


def _registry_texts(field: str, paste: str) -> list[str]:
    escaped = paste.replace("\\", "\\\\").replace('"', '\\"')
    single = paste.replace("'", "''")
    return [
        f'- {field}: "{escaped}"',
        f"- {field}: '{single}'",
        f"- {field}: {paste}",  # unquoted: often a YAML error on this very line
        f"- {field}:\n  - {paste}",
        f"- instanceId: cri-abc\n  {field}: [{paste}]",
        f'- instanceId: cri-abc\n  "{escaped}": {field}',  # pasted as a field name
    ]


@pytest.mark.parametrize("paste", PASTES)
@pytest.mark.parametrize("field", list(REGISTRY_FIELDS))
def test_secret_pasted_into_any_registry_field_is_never_shown(field: str, paste: str) -> None:
    for text in _registry_texts(field, paste):
        result = parse_config({"acr-registry-info": text})
        if field != "customAccessKeySecret":
            assert result.messages, text
        assert_no_leak(everything(result))


@pytest.mark.parametrize("paste", PASTES[:3])
@pytest.mark.parametrize("key", ["rrsa", "webhook-configuration"])
def test_secret_pasted_into_a_flag_mapping_field_is_never_shown(key: str, paste: str) -> None:
    for field in ("enable", "failure-policy", "timeout-seconds", paste):
        escaped = paste.replace('"', '\\"')
        for text in (f'{field}: "{escaped}"', f"{field}: {paste}", f'"{escaped}": true'):
            result = parse_config({key: text})
            assert_no_leak(everything(result))


@pytest.mark.parametrize("paste", PASTES)
def test_secret_pasted_into_a_manifest_value_is_never_shown(paste: str) -> None:
    for key in KNOWN_KEYS:
        for line in (f"  {key}: {paste}", f"  {key}: {paste} extra: 1", f"  {key}: [{paste}]"):
            data, messages = load_configmap_manifest(f"kind: ConfigMap\ndata:\n{line}\n")
            assert_no_leak("".join(str(m) + repr(m) for m in messages))
            if data is not None:
                assert_no_leak(everything(parse_config(data)))


def test_the_guides_expiring_threshold_example_from_the_audit() -> None:
    result = parse_config({"expiring-threshold": "customAccessKeySecret: Zq9SuperSecretVal"})
    assert not result.ok
    (error,) = result.errors
    assert error.key == "expiring-threshold" and "not a duration" in error.message
    assert "Zq9SuperSecretVal" not in everything(result) and "SuperSecret" not in everything(result)


@pytest.mark.parametrize("paste", [f"secret {SHORT}", f"{SHORT} password", f"token:{SHORT}", f"1h ak-token {SHORT}"])
def test_duration_errors_never_echo_a_value_that_mentions_a_secret(paste: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_duration(paste)
    assert SHORT not in str(exc.value) and "not a duration" in str(exc.value)


def test_duration_errors_still_echo_ordinary_values() -> None:
    with pytest.raises(ValueError, match="'15 minutes' is not a duration"):
        parse_duration("15 minutes")
