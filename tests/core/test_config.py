"""The `acr-configuration` ConfigMap contract: keys, defaults, validation, messages, secrets."""

from __future__ import annotations

import pathlib
from datetime import timedelta

import pytest
import yaml

from acr_helper.core.config import (
    KNOWN_KEYS,
    AcrConfig,
    ConfigMessage,
    ConfigResult,
    RegistryConfig,
    load_configmap_manifest,
    parse_config,
)
from acr_helper.core.durations import format_duration, parse_duration

SECRET = "fake-secret-not-real"


def ok(data: dict[str, str]) -> tuple[AcrConfig, ConfigResult]:
    result = parse_config(data)
    assert result.ok, [str(e) for e in result.errors]
    assert result.config is not None
    return result.config, result


def bad(data: dict[str, str]) -> ConfigResult:
    result = parse_config(data)
    assert not result.ok
    assert result.config is None
    assert result.errors
    return result


def reg_info(text: str, **extra: str) -> dict[str, str]:
    return {"acr-registry-info": text, **extra}


def one_error(result: ConfigResult) -> ConfigMessage:
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return result.errors[0]


def warning_with(result: ConfigResult, text: str) -> ConfigMessage:
    hits = [w for w in result.warnings if text in w.message]
    assert hits, [str(w) for w in result.warnings]
    return hits[0]


# ---- defaults ---------------------------------------------------------------------------------


def test_no_configmap_gives_the_add_on_defaults() -> None:
    result = parse_config(None, secret_name="my-pull")
    assert result.ok and result.config is not None
    cfg = result.config
    assert cfg.secret_name == "my-pull"
    assert cfg.service_accounts.include == ("default",)
    assert cfg.watch_namespaces.include == ("default",) and cfg.watch_namespaces.exclude == ()
    assert cfg.expiring_threshold == timedelta(minutes=15)
    assert cfg.registries == ()
    assert cfg.effective_registries() == (RegistryConfig(),)
    assert cfg.acr_api_version == "2018-12-01"
    assert not cfg.rrsa.enable
    assert (cfg.webhook.enable, cfg.webhook.failure_policy, cfg.webhook.timeout_seconds) == (
        False,
        "Ignore",
        10,
    )


def test_empty_data_is_the_defaults_without_messages() -> None:
    result = parse_config({})
    assert result.ok and result.config == AcrConfig()
    assert result.messages == ()


@pytest.mark.parametrize("text", ["", "   \n", "[]", "~", "# nothing yet\n"])
def test_absent_or_empty_registry_info_is_one_personal_registry(text: str) -> None:
    cfg, _ = ok(reg_info(text))
    assert cfg.registries == ()
    (only,) = cfg.effective_registries()
    assert only.edition == "personal" and only.region("cn-shanghai") == "cn-shanghai"
    assert list(cfg.registry_keys("cn-shanghai")) == ["personal/cn-shanghai"]


def test_data_that_is_not_a_mapping_is_an_error() -> None:
    result = parse_config(["watch-namespace"])  # type: ignore[arg-type]
    assert one_error(result).key == "data"


# ---- service-account ----------------------------------------------------------------------------


def test_service_accounts_comma_list_with_spaces_and_duplicates() -> None:
    cfg, result = ok({"service-account": " default, builder ,,default "})
    assert cfg.service_accounts.include == ("default", "builder")
    assert cfg.service_accounts.matches("builder") and not cfg.service_accounts.matches("deployer")
    assert result.warnings == ()


def test_service_accounts_star_means_every_account() -> None:
    cfg, _ = ok({"service-account": "*"})
    assert cfg.service_accounts.all and cfg.service_accounts.matches("anything")


def test_service_accounts_glob() -> None:
    cfg, _ = ok({"service-account": "ci-*"})
    assert cfg.service_accounts.matches("ci-runner") and not cfg.service_accounts.matches("default")


def test_service_account_upper_case_is_lowered_with_a_warning() -> None:
    # the guide's table says "Default value: Default"
    cfg, result = ok({"service-account": "Default"})
    assert cfg.service_accounts.include == ("default",)
    assert warning_with(result, "read as `default`").key == "service-account"


def test_service_account_empty_is_an_error_not_the_default() -> None:
    error = one_error(bad({"service-account": " , "}))
    assert error.key == "service-account" and error.message.startswith("empty")
    assert "`service-account: default`" in error.message


@pytest.mark.parametrize(
    ("value", "expected"), [("!default", "exclusions"), ("my sa", "not a ServiceAccount name")]
)
def test_service_account_errors(value: str, expected: str) -> None:
    error = one_error(bad({"service-account": value}))
    assert error.key == "service-account" and expected in error.message


def test_literal_quotes_around_a_value_are_removed_with_a_warning() -> None:
    cfg, result = ok({"service-account": '"default"'})
    assert cfg.service_accounts.include == ("default",)
    warning_with(result, "literal quotes")


# ---- watch-namespace ----------------------------------------------------------------------------


def test_watch_namespace_all_with_exclusions() -> None:
    cfg, _ = ok({"watch-namespace": "all,!kube-system,!kube-public"})
    sel = cfg.watch_namespaces
    assert sel.all and sel.exclude == ("kube-system", "kube-public")
    assert sel.matches("team-a") and not sel.matches("kube-system")
    assert not sel.matches("team-a", {"acr-helper/exclude": "true"})
    assert sel.matches("team-a", {"acr-helper/exclude": "false"})


def test_watch_namespace_names_globs_and_glob_exclusions() -> None:
    cfg, _ = ok({"watch-namespace": "default,team-*,!team-secret-*"})
    sel = cfg.watch_namespaces
    assert sel.include == ("default", "team-*") and sel.exclude == ("team-secret-*",)
    assert sel.matches("team-a") and sel.matches("default")
    assert not sel.matches("team-secret-1") and not sel.matches("other")


def test_watch_namespace_only_exclusions_means_all_but_those() -> None:
    cfg, result = ok({"watch-namespace": "!kube-system"})
    assert cfg.watch_namespaces.all and not cfg.watch_namespaces.matches("kube-system")
    warning_with(result, "read as `all,!kube-system`")


def test_watch_namespace_all_is_case_insensitive() -> None:
    cfg, result = ok({"watch-namespace": "All"})
    assert cfg.watch_namespaces.all
    warning_with(result, "lower case")


@pytest.mark.parametrize("value", ["!all", "team_a", "a" * 64, "team a"])
def test_watch_namespace_errors(value: str) -> None:
    error = one_error(bad({"watch-namespace": value}))
    assert error.key == "watch-namespace"
    assert error.line is None


# ---- expiring-threshold -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("90s", timedelta(seconds=90)),
        ("1h30m", timedelta(minutes=90)),
        ("1.5h", timedelta(minutes=90)),
        (" 20M ", timedelta(minutes=20)),
        ("600", timedelta(minutes=10)),
        ("12h", timedelta(hours=12)),
    ],
)
def test_threshold_durations(value: str, expected: timedelta) -> None:
    cfg, _ = ok({"expiring-threshold": value})
    assert cfg.expiring_threshold == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0s", "must be positive"),
        ("-5m", "must be positive"),
        ("13h", "longer than any token lives"),
        ("99999h", "longer than any token lives"),
        ("fifteen minutes", "not a duration"),
        ("15x", "not a duration"),
    ],
)
def test_threshold_errors(value: str, expected: str) -> None:
    error = one_error(bad({"expiring-threshold": value}))
    assert error.key == "expiring-threshold" and expected in error.message
    assert "15m" in error.message  # says what was expected


def test_short_threshold_is_a_warning() -> None:
    cfg, result = ok({"expiring-threshold": "30s"})
    assert cfg.expiring_threshold == timedelta(seconds=30)
    warning_with(result, "very short")


def test_threshold_not_below_token_lifetime_warns() -> None:
    _, result = ok(
        {"expiring-threshold": "2h", "acr-registry-info": "- instanceId: cri-abc\n  expireDuration: 3600"}
    )
    assert "[0]" in warning_with(result, "not shorter than the token lifetime").message


# ---- acr-registry-info: fields ------------------------------------------------------------------


FULL = """\
- instanceId: cri-abc123
  regionId: cn-hangzhou
  domains:
    - abc-registry.cn-hangzhou.cr.aliyuncs.com
    - abc-registry-vpc.cn-hangzhou.cr.aliyuncs.com
  assumeRoleARN: acs:ram::1234567890123456:role/acr-puller
  expireDuration: 7200
- regionId: cn-beijing
  customAccessKey: FAKE-AK-ID
  customAccessKeySecret: fake-secret-not-real
- instanceId: cri-def456
  accessKeySecretRef: acr-keys
- instanceId: cri-ghi789
  rrsaRoleARN: acs:ram::1234567890123456:role/acr-rrsa
  rrsaOIDCProviderRoleARN: acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123
"""


def test_every_registry_field() -> None:
    cfg, result = ok(reg_info(FULL, rrsa="enable: true"))
    ee, pe, ref, rrsa = cfg.registries
    assert [r.index for r in cfg.registries] == [0, 1, 2, 3]
    assert (ee.edition, ee.instance_id, ee.region_id) == ("enterprise", "cri-abc123", "cn-hangzhou")
    assert ee.domains == (
        "abc-registry.cn-hangzhou.cr.aliyuncs.com",
        "abc-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
    )
    assert ee.assume_role_arn == "acs:ram::1234567890123456:role/acr-puller"
    assert ee.expire_duration == 7200
    assert (pe.edition, pe.region_id, pe.expire_duration) == ("personal", "cn-beijing", 3600)
    assert pe.custom_access_key == "FAKE-AK-ID"
    assert (
        pe.custom_access_key_secret is not None and pe.custom_access_key_secret.get_secret_value() == SECRET
    )
    assert ref.access_key_secret_ref == "acr-keys" and ref.credential_hint() == "secret-ref(acr-keys)"
    assert rrsa.rrsa_role_arn == "acs:ram::1234567890123456:role/acr-rrsa"
    assert rrsa.rrsa_oidc_provider_role_arn == "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c123"
    assert rrsa.credential_hint() == "rrsa"
    assert cfg.rrsa.enable
    assert result.warnings == ()
    assert list(cfg.registry_keys("cn-shanghai")) == [
        "cri-abc123@cn-hangzhou",
        "personal/cn-beijing",
        "cri-def456",
        "cri-ghi789",
    ]


def test_domains_as_comma_string_with_port_and_upper_case() -> None:
    cfg, _ = ok(reg_info("- instanceId: cri-a1\n  domains: Reg.Example.com:5000, other.example.com"))
    assert cfg.registries[0].domains == ("reg.example.com:5000", "other.example.com")


def test_domains_with_scheme_are_read_as_host_names() -> None:
    cfg, result = ok(reg_info("- instanceId: cri-a1\n  domains: https://reg.example.com/"))
    assert cfg.registries[0].domains == ("reg.example.com",)
    warning_with(result, "domains are host names")


def test_empty_domains_means_every_domain() -> None:
    cfg, _ = ok(reg_info('- instanceId: cri-a1\n  domains: ""'))
    assert cfg.registries[0].domains is None


@pytest.mark.parametrize(
    ("text", "line", "field", "expected"),
    [
        ("- instanceId: abc", 1, "[0].instanceId", "expected `cri-`"),
        ("- instanceId: cri-a\n- instanceId: 12345", 2, "[1].instanceId", "must be a string"),
        ("- regionId: hangzhou", 1, "[0].regionId", "not a region ID"),
        ("- domains: not_a_host!", 1, "[0].domains", "not a host name"),
        ("- domains: a.com:99999", 1, "[0].domains", "not a host name"),
        ("- domains: {a: b}", 1, "[0].domains", "comma-separated string or a YAML list"),
        ("- assumeRoleARN: arn:aws:iam::1:role/x", 1, "[0].assumeRoleARN", "acs:ram::<account-id>:role/"),
        ("- rrsaRoleARN: acs:ram::abc:role/x", 1, "[0].rrsaRoleARN", "acs:ram::<account-id>:role/"),
        (
            "- rrsaRoleARN: acs:ram::1:role/x\n  rrsaOIDCProviderRoleARN: nope",
            2,
            "[0].rrsaOIDCProviderRoleARN",
            "oidc-provider",
        ),
        ("- expireDuration: 899", 1, "[0].expireDuration", "from 900 to 43200"),
        ("- expireDuration: 43201", 1, "[0].expireDuration", "from 900 to 43200"),
        ("- expireDuration: soon", 1, "[0].expireDuration", "not a number"),
        ("- expireDuration: true", 1, "[0].expireDuration", "not a number"),
        ("- accessKeySecretRef: Bad_Name", 1, "[0].accessKeySecretRef", "not a Secret name"),
        (
            "- instanceId: cri-a\n  customAccessKey: FAKE-AK-ID",
            2,
            "[0].customAccessKeySecret",
            "customAccessKeySecret is missing",
        ),
        (
            f"- instanceId: cri-a\n  customAccessKeySecret: {SECRET}",
            2,
            "[0].customAccessKey",
            "customAccessKey is missing",
        ),
        (
            f"- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: {SECRET}\n  accessKeySecretRef: keys",
            3,
            "[0].accessKeySecretRef",
            "not both",
        ),
        ("- instanceId: cri-a\n-\n", 2, "[1]", "empty list item"),
        ("- instanceId: cri-a\n- just-a-string", 2, "[1]", "must be a mapping"),
        ("- instanceId: [cri-a]", 1, "[0].instanceId", "must be a string, not a list"),
    ],
)
def test_registry_field_errors_are_line_precise(text: str, line: int, field: str, expected: str) -> None:
    error = one_error(bad(reg_info(text)))
    assert (error.key, error.line, error.field) == ("acr-registry-info", line, field)
    assert expected in error.message
    assert str(error).startswith(f"acr-registry-info{field} (line {line}): ")


def test_expire_duration_as_quoted_number_or_duration() -> None:
    cfg, result = ok(
        reg_info('- instanceId: cri-a\n  expireDuration: "1800"\n- instanceId: cri-b\n  expireDuration: 2h')
    )
    assert [r.expire_duration for r in cfg.registries] == [1800, 7200]
    warning_with(result, "read as 7200 seconds")


def test_crpi_instances_are_accepted_with_a_warning() -> None:
    cfg, result = ok(reg_info("- instanceId: crpi-abc123"))
    assert cfg.registries[0].instance_id == "crpi-abc123"
    assert "not support" in warning_with(result, "crpi").message


def test_placeholder_account_in_arn_is_accepted_with_a_warning() -> None:
    cfg, result = ok(reg_info("- assumeRoleARN: acs:ram::.*:role/kubernetesworkerrole-test"))
    assert cfg.registries[0].assume_role_arn == "acs:ram::.*:role/kubernetesworkerrole-test"
    assert warning_with(result, "placeholder").field == "[0].assumeRoleARN"


def test_two_registries_claiming_one_domain_is_an_error_naming_both() -> None:
    text = (
        "- instanceId: cri-a1\n  domains: reg.example.com\n"
        "- instanceId: cri-b2\n  domains: [x.example.com, REG.example.com]"
    )
    error = one_error(bad(reg_info(text)))
    assert error.field == "[1].domains" and error.line == 3
    assert "[0] (line 1)" in error.message and "[1] (line 3)" in error.message
    assert "reg.example.com" in error.message.lower()


def test_same_registry_twice_with_own_domains_keeps_keys_unique() -> None:
    cfg, result = ok(
        reg_info(
            "- instanceId: cri-a1\n  domains: a.example.com\n"
            "- instanceId: cri-a1\n  domains: b.example.com\n  assumeRoleARN: acs:ram::1:role/r"
        )
    )
    assert list(cfg.registry_keys("cn-hangzhou")) == ["cri-a1", "cri-a1#1"]
    assert result.warnings == ()
    # without `domains` the two claim the same default domains: an error (tests/core/test_config_domains.py)
    assert not parse_config(reg_info("- regionId: cn-beijing\n- regionId: cn-beijing")).ok


def test_unknown_field_names_the_nearest_known_one() -> None:
    cfg, result = ok(
        reg_info("- instanceId: cri-a1\n  regionID: cn-hangzhou\n  domain: a.example.com\n  colour: red")
    )
    assert cfg.registries[0].region_id == "cn-hangzhou"  # case-insensitive match: accepted
    assert cfg.registries[0].domains is None  # `domain` is unknown: ignored
    case = warning_with(result, "`regionID` read as `regionId`")
    assert (case.line, case.field) == (2, "[0].regionId")
    near = warning_with(result, "unknown field `domain`")
    assert "did you mean `domains`?" in near.message and near.line == 3
    far = warning_with(result, "unknown field `colour`")
    assert "known fields" in far.message


def test_duplicate_field_warns_and_the_last_wins() -> None:
    cfg, result = ok(reg_info("- instanceId: cri-a1\n  regionId: cn-beijing\n  regionId: cn-hangzhou"))
    assert cfg.registries[0].region_id == "cn-hangzhou"
    assert warning_with(result, "appears twice").line == 3


def test_single_mapping_is_read_as_a_list_of_one() -> None:
    cfg, result = ok(reg_info("instanceId: cri-a1\nregionId: cn-hangzhou"))
    assert cfg.registries[0].instance_id == "cri-a1"
    warning_with(result, "list of one")


def test_scalar_registry_info_is_an_error() -> None:
    error = one_error(bad(reg_info("cri-a1")))
    assert error.line == 1 and "expected a YAML list" in error.message


# ---- acr-registry-info: lenient input -------------------------------------------------------------


def test_tabs_crlf_bom_and_block_styles() -> None:
    expected, _ = ok(reg_info("- instanceId: cri-a1\n  regionId: cn-hangzhou\n"))
    variants = [
        "\ufeff- instanceId: cri-a1\r\n  regionId: cn-hangzhou\r\n",
        "- instanceId: cri-a1\n  regionId: cn-hangzhou",  # |- (no final newline)
        "\n\n  - instanceId: cri-a1\n    regionId: cn-hangzhou   \n\n",  # surrounding whitespace
        "- instanceId:\tcri-a1\n  regionId:  cn-hangzhou\n",
    ]
    for text in variants:
        cfg, result = ok(reg_info(text))
        assert cfg == expected, text
        assert result.warnings == (), text
    cfg, result = ok(reg_info("- instanceId: cri-a1\n\tregionId: cn-hangzhou\n"))
    assert cfg == expected
    assert warning_with(result, "tab characters").line == 2


def test_quoted_comma_list_of_domains_is_accepted_with_the_correct_form() -> None:
    cfg, result = ok(reg_info("- instanceId: cri-a1\n  domains: 'a.example.com', \"b.example.com\""))
    assert cfg.registries[0].domains == ("a.example.com", "b.example.com")
    w = warning_with(result, "is not valid YAML")
    assert (w.line, w.field) == (2, "[0].domains")
    assert (
        'domains: "a.example.com,b.example.com"' in w.message
        and "[a.example.com, b.example.com]" in w.message
    )


def test_trailing_slash_comments_are_stripped_but_not_inside_quotes_or_urls() -> None:
    text = (
        '- instanceId: cri-a1 // the EE\n  domains: "a.example.com"   // two\n'
        "  regionId: cn-hangzhou # fine\n"
    )
    cfg, result = ok(reg_info(text))
    assert cfg.registries[0].instance_id == "cri-a1"
    assert cfg.registries[0].domains == ("a.example.com",)
    assert [w.line for w in result.warnings if "`// ...`" in w.message] == [1, 2]
    cfg2, _ = ok(reg_info('- assumeRoleARN: "acs:ram::1:role/a"\n  domains: "x.example.com"  # a // b'))
    assert cfg2.registries[0].domains == ("x.example.com",)


def test_mis_indented_key_fails_with_an_indentation_explanation() -> None:
    error = one_error(bad(reg_info("- instanceId: cri-a1\n    regionId: cn-hangzhou")))
    assert error.line == 2
    assert "`regionId` on line 2 is indented 4 spaces" in error.message
    assert "exactly 2 spaces" in error.message
    error = one_error(bad(reg_info("- instanceId: cri-a1\n regionId: cn-hangzhou")))
    assert error.line == 2 and "indented 1 spaces" in error.message


def test_unclosed_quote_points_at_its_line() -> None:
    error = one_error(bad(reg_info('- instanceId: cri-a1\n  regionId: "cn-hangzhou\n  domains: a.com\n')))
    assert error.line == 2 and "quote" in error.message


# ---- other keys -----------------------------------------------------------------------------------


def test_api_version_and_notify_email() -> None:
    cfg, result = ok({"acr-api-version": "2018-12-01", "notify-email": "ops@example.com"})
    assert cfg.acr_api_version == "2018-12-01" and cfg.notify_email == "ops@example.com"
    assert warning_with(result, "ignored").key == "notify-email"
    cfg, result = ok({"acr-api-version": "2016-06-07"})
    assert cfg.acr_api_version == "2016-06-07"
    assert warning_with(result, "only 2018-12-01").key == "acr-api-version"


@pytest.mark.parametrize(
    ("text", "enabled"),
    [("enable: true", True), ("enable: false", False), ("enable: 'True'", True), ("", False), ("true", True)],
)
def test_rrsa(text: str, enabled: bool) -> None:
    cfg, _ = ok({"rrsa": text})
    assert cfg.rrsa.enable is enabled


def test_rrsa_errors() -> None:
    error = one_error(bad({"rrsa": "enable: maybe"}))
    assert (error.key, error.line, error.field) == ("rrsa", 1, "enable")
    error = one_error(bad({"rrsa": "- enable"}))
    assert "expected a YAML mapping" in error.message


def test_webhook_configuration() -> None:
    cfg, result = ok({"webhook-configuration": "enable: true\nfailure-policy: Fail\ntimeout-seconds: 5\n"})
    assert (cfg.webhook.enable, cfg.webhook.failure_policy, cfg.webhook.timeout_seconds) == (True, "Fail", 5)
    assert result.warnings == ()
    cfg, result = ok({"webhook-configuration": "enable: true\nfailurePolicy: ignore\nretries: 3"})
    assert cfg.webhook.failure_policy == "Ignore"
    warning_with(result, "`failurePolicy` read as `failure-policy`")
    warning_with(result, "unknown field `retries`")


@pytest.mark.parametrize(
    ("text", "line", "expected"),
    [
        ("failure-policy: Maybe", 1, "Ignore or Fail"),
        ("enable: true\ntimeout-seconds: 31", 2, "from 1 to 30"),
        ("enable: yes please", 1, "true or false"),
        ("enable: [true]", 1, "single value"),
    ],
)
def test_webhook_errors(text: str, line: int, expected: str) -> None:
    error = one_error(bad({"webhook-configuration": text}))
    assert error.key == "webhook-configuration" and error.line == line and expected in error.message


def test_unknown_top_level_keys_name_the_nearest_known_key() -> None:
    cfg, result = ok(
        {"watch-namespaces": "all", "watch-namespace": "default", "expire-threshold": "1m", "colour": "red"}
    )
    assert cfg == AcrConfig()  # unknown keys change nothing
    assert "did you mean `watch-namespace`?" in warning_with(result, "unknown key").message
    assert any("`expiring-threshold`" in w.message for w in result.warnings if w.key == "expire-threshold")
    assert "known keys" in next(w for w in result.warnings if w.key == "colour").message


def test_case_variants_of_known_keys_are_accepted_with_a_warning() -> None:
    cfg, result = ok({"Watch_Namespace": "all"})
    assert cfg.watch_namespaces.all
    warning_with(result, "read as `watch-namespace`")
    cfg, result = ok({"Watch-Namespace": "all", "watch-namespace": "default"})
    assert not cfg.watch_namespaces.all
    warning_with(result, "duplicates")


def test_known_keys_are_all_handled() -> None:
    data = {
        "service-account": "default",
        "watch-namespace": "default",
        "expiring-threshold": "15m",
        "acr-registry-info": "",
        "acr-api-version": "2018-12-01",
        "notify-email": "",
        "rrsa": "enable: false",
        "webhook-configuration": "enable: false",
    }
    assert set(data) == set(KNOWN_KEYS)
    result = parse_config(data)
    assert result.ok and result.messages == ()


def test_non_string_values_are_read_with_a_warning() -> None:
    cfg, result = ok({"expiring-threshold": 600, "acr-api-version": None})  # type: ignore[dict-item]
    assert cfg.expiring_threshold == timedelta(minutes=10)
    warning_with(result, "expected a string")


def test_errors_in_several_keys_are_all_reported() -> None:
    result = bad({"expiring-threshold": "0", "watch-namespace": "a b", "acr-registry-info": "- regionId: x"})
    assert {e.key for e in result.errors} == {"expiring-threshold", "watch-namespace", "acr-registry-info"}


# ---- secrets never leak -------------------------------------------------------------------------


def everything(result: ConfigResult) -> str:
    parts = [repr(result), str(result), result.model_dump_json(), repr(result.model_dump())]
    parts += [str(m) for m in result.messages] + [repr(m) for m in result.messages]
    if result.config is not None:
        parts += [repr(result.config), str(result.config), result.config.model_dump_json()]
        for reg in result.config.registries:
            parts += [repr(reg), str(reg), reg.credential_hint(), repr(reg.model_dump())]
    return "\n".join(parts)


@pytest.mark.parametrize(
    "text",
    [
        f"- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: {SECRET}",
        f'- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: "{SECRET}" // the secret',
        f"- customAccessKeySecret: {SECRET}",  # error: no customAccessKey
        f"- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: {SECRET}\n  accessKeySecretRef: k",
        f'- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: "{SECRET}\n',  # unclosed quote
        # a YAML error on the secret's line
        f'- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: "{SECRET}" extra',
        f"- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: *{SECRET}",  # undefined alias
        f"- customAccessKey: FAKE-AK-ID\n      customAccessKeySecret: {SECRET}",  # bad indentation
        f'- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: "\\q{SECRET}"',  # bad escape
        f"- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: [{SECRET}]",
        f"- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: {{{SECRET}: 1}}",
        f"- customAccesKeySecret: {SECRET}",  # misspelt key
        f"- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: {SECRET}\n"
        f"- customAccessKeySecret: {SECRET}",
    ],
)
def test_secret_never_appears_in_any_output(text: str) -> None:
    result = parse_config({"acr-registry-info": text, "expiring-threshold": "15m"})
    assert SECRET not in everything(result)
    assert result.messages or result.ok


def test_secret_is_kept_for_the_tokens_layer() -> None:
    cfg, _ = ok(reg_info(f"- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: '{SECRET}'"))
    secret = cfg.registries[0].custom_access_key_secret
    assert secret is not None and secret.get_secret_value() == SECRET
    assert SECRET not in repr(cfg) + cfg.model_dump_json()


def test_secret_in_manifest_never_appears_in_messages() -> None:
    text = (
        "kind: ConfigMap\nmetadata:\n  name: acr-configuration\ndata:\n  acr-registry-info: |\n"
        f"    - customAccessKey: FAKE-AK-ID\n      customAccessKeySecret: '{SECRET}' oops\n"
    )
    data, messages = load_configmap_manifest(text)
    assert data is not None
    result = parse_config(data)
    assert not result.ok and result.errors[0].line == 2
    assert SECRET not in everything(result) + "".join(map(str, messages))
    data, messages = load_configmap_manifest(f"data:\n  customAccessKeySecret: '{SECRET}' x\n")
    assert data is None and messages[0].line == 2
    assert SECRET not in "".join(str(m) + repr(m) for m in messages)


# ---- load_configmap_manifest --------------------------------------------------------------------


def test_manifest_configmap() -> None:
    text = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: acr-configuration
  namespace: kube-system
data:
  watch-namespace: "all,!kube-system"
  expiring-threshold: 15m
  acr-registry-info: |
    - instanceId: cri-a1
"""
    data, messages = load_configmap_manifest(text)
    assert messages == []
    assert data == {
        "watch-namespace": "all,!kube-system",
        "expiring-threshold": "15m",
        "acr-registry-info": "- instanceId: cri-a1\n",
    }


def test_manifest_picks_acr_configuration_from_a_list_or_stream() -> None:
    other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\ndata:\n  a: b\n"
    ours = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: acr-configuration\n"
        "data:\n  rrsa: 'enable: true'\n"
    )
    data, _ = load_configmap_manifest(other + "---\n" + ours)
    assert data == {"rrsa": "enable: true"}
    lst = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"kind": "Namespace"},
            {
                "kind": "ConfigMap",
                "metadata": {"name": "acr-configuration"},
                "data": {"service-account": "*"},
            },
        ],
    }
    import json

    data, _ = load_configmap_manifest(json.dumps(lst))
    assert data == {"service-account": "*"}


def test_manifest_other_name_is_read_with_a_warning() -> None:
    data, messages = load_configmap_manifest("kind: ConfigMap\nmetadata:\n  name: mine\ndata:\n  a: b\n")
    assert data == {"a": "b"}
    assert messages[0].severity == "warning" and "not `acr-configuration`" in messages[0].message


def test_manifest_fragment_and_non_string_values() -> None:
    data, messages = load_configmap_manifest(
        "data:\n  expiring-threshold: 900\n  notify-email:\n  rrsa: on\n"
    )
    assert data == {"expiring-threshold": "900", "notify-email": "", "rrsa": "on"}
    warnings = {m.key: m for m in messages}
    assert warnings["expiring-threshold"].line == 2 and "int" in warnings["expiring-threshold"].message
    assert warnings["rrsa"].line == 4 and "bool" in warnings["rrsa"].message


def test_manifest_errors_carry_manifest_lines() -> None:
    data, messages = load_configmap_manifest("data:\n  acr-registry-info:\n    - instanceId: cri-a1\n")
    assert data is None
    assert (messages[0].key, messages[0].line) == ("acr-registry-info", 3)
    assert "block string" in messages[0].message
    data, messages = load_configmap_manifest("kind: ConfigMap\ndata:\n  a: 'x\n")
    assert data is None and messages[0].line == 3
    data, messages = load_configmap_manifest("kind: Secret\ndata: {}\n")
    assert data is None and "no ConfigMap" in messages[0].message
    data, messages = load_configmap_manifest("kind: ConfigMap\ndata: [a]\n")
    assert data is None and messages[0].line == 2


def test_manifest_without_data_is_empty() -> None:
    data, messages = load_configmap_manifest("kind: ConfigMap\nmetadata:\n  name: acr-configuration\n")
    assert data == {} and messages == []


# ---- durations -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15m", 900),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("90s", 90),
        ("500ms", 0.5),
        ("1.5h", 5400),
        ("2d", 172800),
        ("-5m", -300),
        ("+1m", 60),
        ("300", 300),
        ("1µs", 1e-6),
        ("10us", 1e-5),
        ("1000ns", 1e-6),
        (".5m", 30),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "m", "15", "1y", "15 minutes", "1h-5m", "--5m", "1e3h"])
def test_parse_duration_rejects(text: str) -> None:
    if text == "15":
        assert parse_duration(text) == timedelta(seconds=15)
        return
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_parse_duration_rejects_absurd_magnitudes_without_overflow() -> None:
    with pytest.raises(ValueError, match="too long"):
        parse_duration("9" * 30 + "h")


def test_format_duration() -> None:
    assert format_duration(timedelta(seconds=5400)) == "1h30m"
    assert format_duration(timedelta(minutes=15)) == "15m"
    assert format_duration(timedelta(0)) == "0s"
    assert format_duration(timedelta(milliseconds=500)) == "500ms"
    assert format_duration(timedelta(minutes=-5)) == "-5m"


# ---- the shipped examples -----------------------------------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parents[2]


def example(name: str) -> AcrConfig:
    data, messages = load_configmap_manifest((ROOT / "examples" / name).read_text(encoding="utf-8"))
    assert data is not None and messages == [], [str(m) for m in messages]
    result = parse_config(data)
    assert result.ok and result.messages == (), [str(m) for m in result.messages]
    assert result.config is not None
    return result.config


def test_example_acr_configuration() -> None:
    cfg = example("acr-configuration.yaml")
    assert cfg.watch_namespaces.all
    assert cfg.watch_namespaces.exclude == ("kube-system", "kube-public", "kube-node-lease")
    assert cfg.service_accounts.include == ("default", "builder")
    ee, pe = cfg.registries
    assert (ee.instance_id, ee.region_id) == ("cri-sandbox0001", "cn-hangzhou")
    assert ee.domains == (
        "sandbox-registry.cn-hangzhou.cr.aliyuncs.com",
        "sandbox-registry-vpc.cn-hangzhou.cr.aliyuncs.com",
    )
    assert (pe.edition, pe.region_id) == ("personal", "cn-hangzhou")
    assert list(cfg.registry_keys("cn-beijing")) == ["cri-sandbox0001@cn-hangzhou", "personal/cn-hangzhou"]


def test_example_scenarios() -> None:
    assert example("cross-account-assume-role.yaml").registries[0].assume_role_arn == (
        "acs:ram::1234567890123456:role/acr-pull-from-partner"
    )
    assert [r.region_id for r in example("cross-region.yaml").registries] == [
        "cn-beijing",
        "cn-hangzhou",
        "ap-southeast-1",
    ]
    assert example("access-key-secret-ref.yaml").registries[0].access_key_secret_ref == "acr-pull-keys"
    rrsa = example("rrsa.yaml")
    assert rrsa.rrsa.enable and rrsa.registries[0].credential_hint() == "rrsa"


def test_example_cluster_state_has_what_the_scenario_needs() -> None:
    objects = yaml.safe_load((ROOT / "examples" / "cluster-state.yaml").read_text(encoding="utf-8"))["items"]
    ns = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Namespace"}
    assert set(ns) == {"default", "kube-system", "kube-public", "team-a", "team-b", "team-c"}
    assert ns["team-c"]["metadata"]["labels"]["acr-helper/exclude"] == "true"
    sas = {
        (o["metadata"]["namespace"], o["metadata"]["name"]): o
        for o in objects
        if o["kind"] == "ServiceAccount"
    }
    assert {n for n, _ in sas} == set(ns) and ("team-a", "builder") in sas
    assert sas[("team-a", "default")]["imagePullSecrets"] == [{"name": "corp-registry"}]
    (secret,) = [o for o in objects if o["kind"] == "Secret"]
    assert (secret["metadata"]["namespace"], secret["metadata"]["name"]) == (
        "team-b",
        "acr-credential-helper",
    )
    assert "app.kubernetes.io/managed-by" not in secret["metadata"].get("labels", {})


@pytest.mark.parametrize("name", ["acr-configuration.yaml", "cluster-state.yaml"])
def test_packaged_examples_match_the_repository_examples(name: str) -> None:
    packaged = ROOT / "acr_helper" / "examples" / name
    assert packaged.read_bytes() == (ROOT / "examples" / name).read_bytes()


@pytest.mark.parametrize("key", ["service-account", "watch-namespace", "expiring-threshold", "acr-api-version"])
def test_a_secret_pasted_under_the_wrong_key_is_not_echoed(key):
    result = parse_config({key: "customAccessKeySecret: fake-secret-not-real"})
    text = " ".join(str(m) for m in (*result.errors, *result.warnings))
    assert result.errors or result.warnings
    assert "fake-secret-not-real" not in text
    assert "fake-secret-not-real" not in result.model_dump_json()
