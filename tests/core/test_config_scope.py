"""A typo'd or emptied scope key is an error, never a silent fall-back to the default `default`.

The default (`default` only) would remove pull Secrets from every other namespace (or the entry
from every other ServiceAccount), so a near miss of an absent scope key, or an empty value, blocks
the whole ConfigMap (the controller keeps the last good configuration).
"""

from __future__ import annotations

import pathlib

import pytest

from acr_helper.core.config import AcrConfig, ConfigResult, load_configmap_manifest, parse_config

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "guide"


def only_error(result: ConfigResult) -> str:
    assert not result.ok and result.config is None
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return str(result.errors[0])


@pytest.mark.parametrize(
    ("key", "scope"),
    [
        ("watch-namespaces", "watch-namespace"),
        ("watch-namspace", "watch-namespace"),
        ("watched-namespace", "watch-namespace"),
        ("namespaces", "watch-namespace"),
        ("service-accounts", "service-account"),
        ("serviceaccount-names", "service-account"),
        ("service-acount", "service-account"),
    ],
)
def test_a_near_miss_of_an_absent_scope_key_is_an_error(key: str, scope: str) -> None:
    result = parse_config({key: "all", "expiring-threshold": "15m"})
    text = only_error(result)
    assert result.errors[0].key == key
    assert f"`{key}` is not a key; did you mean `{scope}`? Not applying the default (`default`)" in text
    what = "every other namespace" if scope == "watch-namespace" else "every other ServiceAccount"
    assert what in text


def test_the_exact_message_for_watch_namespaces() -> None:
    result = parse_config({"watch-namespaces": "all,!kube-system"})
    assert only_error(result) == (
        "watch-namespaces: `watch-namespaces` is not a key; did you mean `watch-namespace`? Not applying "
        "the default (`default`), which would remove pull Secrets from every other namespace"
    )


@pytest.mark.parametrize("key", ["watchNamespace", "Watch_Namespace", "WATCH-NAMESPACE"])
def test_a_spelling_variant_is_read_as_the_key_not_the_default(key: str) -> None:
    result = parse_config({key: "all"})
    assert result.ok and result.config is not None and result.config.watch_namespaces.all
    assert any("read as `watch-namespace`" in w.message for w in result.warnings)


def test_service_account_variant_is_read_as_the_key() -> None:
    result = parse_config({"serviceAccount": "*"})
    assert result.ok and result.config is not None and result.config.service_accounts.all


def test_a_near_miss_next_to_the_real_key_stays_a_warning() -> None:
    result = parse_config({"watch-namespaces": "all", "watch-namespace": "team-a"})
    assert result.ok and result.config is not None
    assert result.config.watch_namespaces.include == ("team-a",)
    (warning,) = result.warnings
    assert warning.key == "watch-namespaces" and "unknown key ignored; did you mean `watch-namespace`?" in warning.message


def test_other_unknown_keys_stay_warnings() -> None:
    result = parse_config({"expire-threshold": "1m", "colour": "red", "watch-namespace": "all"})
    assert result.ok and len(result.warnings) == 2 and not result.errors


def test_both_scope_keys_mistyped_give_two_errors() -> None:
    result = parse_config({"watch-namespaces": "all", "service-accounts": "*"})
    assert not result.ok and {e.key for e in result.errors} == {"watch-namespaces", "service-accounts"}


@pytest.mark.parametrize("key", ["watch-namespace", "service-account"])
@pytest.mark.parametrize("value", ["", "   ", ",", " , ,", '""', "''", None])
def test_an_empty_scope_value_is_an_error(key: str, value: str | None) -> None:
    result = parse_config({key: value})  # type: ignore[dict-item]
    text = only_error(result)
    assert result.errors[0].key == key and "empty" in text
    assert f"`{key}: default`" in text  # says how to write the default explicitly


def test_an_empty_scope_value_in_a_manifest_is_an_error() -> None:
    data, messages = load_configmap_manifest("kind: ConfigMap\ndata:\n  watch-namespace:\n  service-account: ''\n")
    assert data == {"watch-namespace": "", "service-account": ""} and not messages
    result = parse_config(data)
    assert {e.key for e in result.errors} == {"watch-namespace", "service-account"}


def test_absent_scope_keys_are_still_the_default() -> None:
    result = parse_config({"expiring-threshold": "15m"})
    assert result.ok and result.config == AcrConfig() and not result.messages


@pytest.mark.parametrize("path", sorted(GUIDE.glob("*.yaml")), ids=lambda p: p.name)
def test_no_guide_example_trips_the_scope_checks(path: pathlib.Path) -> None:
    data, _ = load_configmap_manifest(path.read_text())
    if data is None:
        return  # the guide's invalid manifest: covered by test_config_guide_examples
    result = parse_config(data)
    assert not any("is not a key" in e.message or e.message.startswith("empty") for e in result.errors)
