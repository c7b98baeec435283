"""Two registry items may not claim the same domain: explicit `domains`, and the implicit defaults
(a Personal Edition region's four domains; every domain of an Enterprise Edition instance)."""

from __future__ import annotations

import pytest

from acr_helper.core.config import ConfigMessage, ConfigResult, parse_config, personal_default_domains


def parse(text: str) -> ConfigResult:
    return parse_config({"acr-registry-info": text})


def one_error(text: str) -> ConfigMessage:
    result = parse(text)
    assert not result.ok and result.config is None
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    return result.errors[0]


def clean(text: str) -> ConfigResult:
    result = parse(text)
    assert result.ok, [str(e) for e in result.errors]
    assert not [w for w in result.warnings if "claim" in w.message], [str(w) for w in result.warnings]
    return result


def one_warning(text: str, needle: str) -> ConfigMessage:
    result = parse(text)
    assert result.ok, [str(e) for e in result.errors]
    hits = [w for w in result.warnings if needle in w.message]
    assert len(hits) == 1, [str(w) for w in result.warnings]
    return hits[0]


def test_personal_default_domains_match_the_tokens_layer() -> None:
    assert personal_default_domains("cn-hangzhou") == (
        "registry.cn-hangzhou.aliyuncs.com",
        "registry-vpc.cn-hangzhou.aliyuncs.com",
        "registry-intl.cn-hangzhou.aliyuncs.com",
        "registry-intl-vpc.cn-hangzhou.aliyuncs.com",
    )


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("- regionId: cn-beijing\n- regionId: cn-beijing\n  assumeRoleARN: acs:ram::1:role/r", "cn-beijing"),
        ("- regionId: cn-beijing\n- regionId: CN-Beijing", "cn-beijing"),
        ('- instanceId: ""\n- customAccessKey: FAKE-AK-ID\n  customAccessKeySecret: fake-secret-not-real',
         "the cluster's region"),
        ("- assumeRoleARN: acs:ram::1:role/a\n- assumeRoleARN: acs:ram::2:role/b", "the cluster's region"),
    ],
)
def test_two_personal_items_for_one_region_without_domains_is_an_error(text: str, region: str) -> None:
    error = one_error(text)
    assert (error.key, error.line, error.field) == ("acr-registry-info", 2, "[1]")
    assert "[0] (line 1)" in error.message and "[1] (line 2)" in error.message
    assert f"Personal Edition registry in {region}" in error.message
    assert "fake-secret-not-real" not in str(error)


def test_personal_error_lists_the_region_default_domains() -> None:
    error = one_error("- regionId: cn-beijing\n- regionId: cn-beijing")
    for domain in personal_default_domains("cn-beijing"):
        assert f"`{domain}`" in error.message


@pytest.mark.parametrize(
    ("text", "region", "line"),
    [
        ("- instanceId: cri-a1\n- instanceId: cri-a1\n  assumeRoleARN: acs:ram::1:role/r",
         "the cluster's region", 2),
        ("- instanceId: cri-a1\n  regionId: cn-shanghai\n- instanceId: cri-a1\n  regionId: cn-shanghai",
         "cn-shanghai", 3),
    ],
)
def test_same_enterprise_instance_twice_without_domains_is_an_error(text: str, region: str, line: int) -> None:
    error = one_error(text)
    assert (error.line, error.field) == (line, "[1]")
    assert "[0] (line 1)" in error.message and f"[1] (line {line})" in error.message
    assert f"Enterprise Edition instance `cri-a1` in {region}" in error.message


def test_three_identical_items_name_each_pair() -> None:
    result = parse("- regionId: cn-beijing\n- regionId: cn-beijing\n- regionId: cn-beijing")
    assert not result.ok
    pairs = sorted((e.field, e.message.split(" both")[0]) for e in result.errors)
    assert pairs == [
        ("[1]", "items [0] (line 1) and [1] (line 2)"),
        ("[2]", "items [0] (line 1) and [2] (line 3)"),
        ("[2]", "items [1] (line 2) and [2] (line 3)"),
    ]


@pytest.mark.parametrize("prefix", ["registry", "registry-vpc", "registry-intl", "registry-intl-vpc"])
@pytest.mark.parametrize("explicit_first", [True, False])
def test_explicit_domain_that_is_a_personal_default_domain_is_an_error(prefix: str, explicit_first: bool) -> None:
    explicit = f"- instanceId: cri-a1\n  domains: [x.example.com, {prefix.upper()}.cn-beijing.aliyuncs.com]\n"
    implicit = "- regionId: cn-beijing\n"
    text = explicit + implicit if explicit_first else implicit + explicit
    error = one_error(text)
    assert error.field == "[1]"
    assert error.line == (3 if explicit_first else 2)
    assert f"`{prefix}.cn-beijing.aliyuncs.com`" in error.message.lower()
    assert "Personal Edition registry in cn-beijing" in error.message
    assert "[0] (line 1)" in error.message


def test_distinct_scopes_are_fine() -> None:
    clean("- regionId: cn-beijing\n- regionId: cn-hangzhou")  # two PE regions
    clean('- instanceId: ""\n- instanceId: "cri-xxxx"')  # the guide's "both editions"
    clean("- instanceId: cri-a1\n- instanceId: cri-b2")
    clean("- instanceId: cri-a1\n  regionId: cn-beijing\n- instanceId: cri-a1\n  regionId: cn-hangzhou")
    clean("- regionId: cn-beijing\n- regionId: cn-beijing\n  domains: registry.cn-hangzhou.aliyuncs.com")
    # explicit domains split between two items of one PE region
    clean(
        "- regionId: cn-beijing\n  domains: registry.cn-beijing.aliyuncs.com\n"
        "- regionId: cn-beijing\n  domains: registry-vpc.cn-beijing.aliyuncs.com"
    )


def test_personal_in_a_named_region_and_in_the_cluster_region_warns() -> None:
    w = one_warning("- regionId: cn-beijing\n- instanceId: ''", "when the cluster runs in cn-beijing")
    assert (w.line, w.field) == (2, "[1]")
    assert "[0] (line 1) and [1] (line 2)" in w.message


def test_enterprise_instance_with_and_without_region_warns() -> None:
    w = one_warning("- instanceId: cri-a1\n- instanceId: cri-a1\n  regionId: cn-beijing",
                    "when the cluster runs in cn-beijing")
    assert w.field == "[1]" and "`cri-a1`" in w.message


def test_explicit_personal_domain_against_cluster_region_default_warns() -> None:
    w = one_warning(
        "- domains: registry-vpc.cn-beijing.aliyuncs.com\n  regionId: cn-beijing\n- instanceId: ''",
        "when the cluster runs in cn-beijing",
    )
    assert w.field == "[1]" and "`registry-vpc.cn-beijing.aliyuncs.com`" in w.message


def test_enterprise_instance_with_and_without_domains_warns() -> None:
    w = one_warning("- instanceId: cri-a1\n- instanceId: cri-a1\n  domains: a.example.com", "every domain")
    assert w.field == "[1]" and "give item [0] its own `domains`" in w.message
