"""Property tests: the parser never raises on user input, and never leaks a secret.

Deterministic (`derandomize=True`), 1,000+ examples each, a few seconds in all.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acr_helper.core.config import (
    KNOWN_KEYS,
    REGISTRY_FIELDS,
    ConfigResult,
    load_configmap_manifest,
    parse_config,
)

SECRET = "fake-secret-not-real"

FUZZ = settings(
    max_examples=1000,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# pieces that make YAML parsers and our lenient pass work hard
FRAGMENTS = (
    [
        "- ",
        "-",
        "  ",
        "    ",
        " ",
        "\n",
        "\r\n",
        "\t",
        "\u00a0",
        "\ufeff",
        ":",
        ": ",
        ",",
        '"',
        "'",
        "//",
        "# ",
        "[",
        "]",
        "{",
        "}",
        "*",
        "&a ",
        "!",
        "|",
        ">",
        "~",
        "null",
        "true",
        "no",
        "0",
        "900",
        "43200",
        "3600",
        "1e3",
        "-1",
        "2001-13-45",
        "cri-",
        "cri-abc",
        "crpi-x",
        "cn-hangzhou",
        "xxx.com",
        "a.example.com:5000",
        "acs:ram::123:role/r",
        "acs:ram::.*:role/r",
        "acs:ram::1:oidc-provider/p",
        '"xxx.com","yyy.com"',
        "\\",
        "%",
        "@",
        "`",
        "<<",
        "---",
        "...",
        "?",
        "\x00",
        "\x07",
        "é",
        "😀",
    ]
    + [f"{k}: " for k in REGISTRY_FIELDS]
    + [f"- {k}: " for k in REGISTRY_FIELDS]
    + ["customAccessKeySecret: "]
)

yamlish = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join)
any_text = st.one_of(yamlish, st.text(max_size=80))
keys = st.one_of(
    st.sampled_from(KNOWN_KEYS), st.text(max_size=20), st.sampled_from(["Watch-Namespace", "rrsa "])
)
data_maps = st.dictionaries(keys, any_text, max_size=6)


def check_invariants(result: ConfigResult) -> None:
    assert isinstance(result, ConfigResult)
    if result.config is None:
        assert result.errors, "no config and no error"
    else:
        assert not result.errors and result.ok
    for msg in result.messages:
        assert msg.key and msg.key.strip()
        assert msg.message and msg.message.strip()
        assert msg.line is None or msg.line >= 1
        assert str(msg)
    for error in result.errors:
        assert error.severity == "error"
    for warning in result.warnings:
        assert warning.severity == "warning"


@FUZZ
@given(data_maps)
def test_random_configmap_data_never_raises(data: dict[str, str]) -> None:
    check_invariants(parse_config(data))


@FUZZ
@given(yamlish, st.sampled_from(["acr-registry-info", "rrsa", "webhook-configuration"]))
def test_random_embedded_yaml_never_raises(text: str, key: str) -> None:
    result = parse_config({key: text})
    check_invariants(result)
    for msg in result.messages:
        if msg.line is not None:  # lines point into the user's text
            assert msg.line <= text.replace("\r\n", "\n").count("\n") + text.count("\r") + 1


@FUZZ
@given(yamlish, yamlish)
def test_secret_never_leaks_from_random_yaml(before: str, after: str) -> None:
    for text in (
        f"{before}customAccessKeySecret: {SECRET}{after}",
        f'- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: "{SECRET}"{after}',
        f"{before}\n  customAccessKeySecret: '{SECRET}' {after}",
    ):
        result = parse_config({"acr-registry-info": text})
        check_invariants(result)
        out = repr(result) + result.model_dump_json() + "".join(str(m) for m in result.messages)
        assert SECRET not in out


@FUZZ
@given(any_text)
def test_random_manifests_never_raise(text: str) -> None:
    data, messages = load_configmap_manifest("data:\n  " + text)
    assert data is not None or any(m.severity == "error" for m in messages)
    if data is not None:
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
        check_invariants(parse_config(data))
    data, messages = load_configmap_manifest(text)
    assert data is not None or any(m.severity == "error" for m in messages)
