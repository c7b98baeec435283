"""Every YAML example of the add-on's user guide parses to its evident meaning or fails precisely.

The fixtures in tests/fixtures/guide/ are the guide's code blocks copied verbatim (non-breaking
spaces, trailing blanks and all; only the block's common left indentation removed). The two
JSON policy documents of the guide are RAM policies, not configuration, and are not fixtures.

Where the whole manifest is broken around the `data` (03: `metadata` is mis-indented), the test
asserts the manifest error and then loads only the `data:` part, as the brief asks.
"""

from __future__ import annotations

import pathlib
from datetime import timedelta

import pytest

from acr_helper.core.config import AcrConfig, ConfigResult, load_configmap_manifest, parse_config

GUIDE = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "guide"


def fixture(name: str) -> str:
    return (GUIDE / name).read_text(encoding="utf-8")


def manifest_config(name: str) -> ConfigResult:
    data, messages = load_configmap_manifest(fixture(name))
    assert data is not None, [str(m) for m in messages]
    assert not [m for m in messages if m.severity == "error"]
    return parse_config(data)


def ok(result: ConfigResult) -> AcrConfig:
    assert result.ok, [str(e) for e in result.errors]
    assert result.config is not None
    return result.config


def warned(result: ConfigResult, text: str, *, key: str | None = None, line: int | None = None) -> None:
    hits = [w for w in result.warnings if text in w.message and (key is None or w.key == key)]
    assert hits, f"no warning containing {text!r} in {[str(w) for w in result.warnings]}"
    if line is not None:
        assert any(w.line == line for w in hits), [str(w) for w in hits]


def assert_scenario_defaults(cfg: AcrConfig) -> None:
    """The common head of every scenario: default SA, all namespaces, 15m, notify-email kept."""
    assert cfg.service_accounts.include == ("default",)
    assert cfg.watch_namespaces.all
    assert cfg.watch_namespaces.matches("anything")
    assert cfg.expiring_threshold == timedelta(minutes=15)
    assert cfg.notify_email == "cs@aliyuncs.com"


def test_every_fixture_is_covered() -> None:
    tested = {
        "01-table-enterprise-registry-info.yaml",
        "02-table-personal-registry-info.yaml",
        "03-kubectl-enterprise-configmap.yaml",
        "04-kubectl-personal-configmap.yaml",
        "05-scenario1-enterprise.yaml",
        "06-scenario1-personal.yaml",
        "07-scenario1-both-editions.yaml",
        "08-scenario3-cross-region.yaml",
        "09-scenario4-assume-role.yaml",
        "10-scenario4-access-key.yaml",
    }
    assert {p.name for p in GUIDE.glob("*.yaml")} == tested


def test_01_table_enterprise_template() -> None:
    # the table's value for acr-registry-info, as is
    result = parse_config({"acr-registry-info": fixture("01-table-enterprise-registry-info.yaml")})
    (reg,) = ok(result).registries
    assert reg.edition == "enterprise"
    assert reg.instance_id == "cri-xxx"
    assert reg.region_id == "cn-hangzhou"
    assert reg.domains == ("xxx.com", "yyy.com")
    assert reg.index == 0
    warned(result, "placeholder", line=1)


def test_02_table_personal_template_with_non_breaking_spaces() -> None:
    text = fixture("02-table-personal-registry-info.yaml")
    assert "\u00a0" in text  # the guide really has them
    result = parse_config({"acr-registry-info": text})
    (reg,) = ok(result).registries
    assert reg.edition == "personal"
    assert reg.instance_id == ""
    assert reg.region_id == "cn-hangzhou"
    assert reg.domains == ("xxx.com", "yyy.com")
    warned(result, "non-breaking", line=1)


def test_03_kubectl_enterprise_manifest_has_broken_metadata() -> None:
    # ` name:` is indented one space and `  namespace:` two: the manifest is invalid YAML.
    data, messages = load_configmap_manifest(fixture("03-kubectl-enterprise-configmap.yaml"))
    assert data is None
    (error,) = [m for m in messages if m.severity == "error"]
    assert error.line == 13
    assert "`namespace` on line 13 is indented deeper than `name` on line 12" in error.message


def test_03_kubectl_enterprise_data_part() -> None:
    # the manifest is broken around the data, so load only the `data:` part (lines 2-9)
    lines = fixture("03-kubectl-enterprise-configmap.yaml").split("\n")
    assert lines[1] == "data:" and lines[9].startswith("kind:")
    data, messages = load_configmap_manifest("\n".join(lines[1:9]) + "\n")
    assert data is not None, [str(m) for m in messages]
    assert data["expiring-threshold"] == "15m"
    result = parse_config(data)
    cfg = ok(result)
    assert cfg.acr_api_version == "2018-12-01"
    assert cfg.service_accounts.include == ("default",)
    assert cfg.watch_namespaces.all
    assert cfg.expiring_threshold == timedelta(minutes=15)
    (reg,) = cfg.registries
    assert (reg.instance_id, reg.region_id, reg.domains) == ("cri-xxx", "cn-hangzhou", None)


def test_04_kubectl_personal_manifest_fails_on_line_2_of_registry_info() -> None:
    # The manifest itself is valid YAML (metadata is consistently indented by one space), but
    # inside acr-registry-info `regionId` is indented deeper than `instanceId`: invalid YAML
    # ("expected <block end>"). We refuse to guess (see docs/configuration.md) and explain.
    result = manifest_config("04-kubectl-personal-configmap.yaml")
    assert not result.ok
    assert result.config is None
    (error,) = result.errors
    assert error.key == "acr-registry-info"
    assert error.line == 2
    assert "`regionId` on line 2 is indented" in error.message
    assert "lines up with `instanceId`" in error.message
    assert str(error).startswith("acr-registry-info (line 2): not valid YAML")


def test_05_scenario1_enterprise() -> None:
    result = manifest_config("05-scenario1-enterprise.yaml")
    cfg = ok(result)
    assert_scenario_defaults(cfg)
    (reg,) = cfg.registries
    assert (reg.instance_id, reg.region_id) == ("cri-xxx", "cn-hangzhou")
    assert reg.domains == ("xxx.com", "yyy.com")
    # `domains: "xxx.com","yyy.com"` is invalid YAML: accepted, with the correct form shown
    warned(result, 'read as `domains: "xxx.com,yyy.com"`', line=3)
    warned(result, "domains: [xxx.com, yyy.com]")
    warned(result, "ignored", key="notify-email")


def test_06_scenario1_personal() -> None:
    result = manifest_config("06-scenario1-personal.yaml")
    cfg = ok(result)
    assert_scenario_defaults(cfg)
    (reg,) = cfg.registries
    assert reg.edition == "personal"
    assert reg.region_id == "cn-hangzhou"
    assert reg.domains == ("xxx.com", "yyy.com")
    warned(result, 'read as `domains: "xxx.com,yyy.com"`', line=3)


def test_07_scenario1_both_editions() -> None:
    cfg = ok(manifest_config("07-scenario1-both-editions.yaml"))
    assert_scenario_defaults(cfg)
    pe, ee = cfg.registries
    assert (pe.edition, pe.instance_id, pe.region_id, pe.domains, pe.index) == ("personal", "", None, None, 0)
    assert (ee.edition, ee.instance_id, ee.region_id, ee.domains) == ("enterprise", "cri-xxxx", None, None)
    assert ee.index == 1
    assert list(cfg.registry_keys("cn-shenzhen")) == ["personal/cn-shenzhen", "cri-xxxx"]


def test_08_scenario3_cross_region() -> None:
    result = manifest_config("08-scenario3-cross-region.yaml")
    cfg = ok(result)
    assert_scenario_defaults(cfg)
    beijing, hangzhou = cfg.registries
    assert (beijing.edition, beijing.region_id) == ("personal", "cn-beijing")
    assert (hangzhou.edition, hangzhou.region_id) == ("personal", "cn-hangzhou")
    assert list(cfg.registry_keys("cn-shanghai")) == ["personal/cn-beijing", "personal/cn-hangzhou"]
    assert not [w for w in result.warnings if w.key == "acr-registry-info"]


def test_09_scenario4_assume_role() -> None:
    result = manifest_config("09-scenario4-assume-role.yaml")
    cfg = ok(result)
    assert_scenario_defaults(cfg)
    (reg,) = cfg.registries
    assert reg.edition == "personal"
    assert reg.region_id == "cn-beijing"
    assert reg.domains == ("registry.cn-beijing.aliyuncs.com",)
    assert reg.assume_role_arn == "acs:ram::.*:role/kubernetesworkerrole-test"
    assert reg.credential_hint() == "default-chain + assume-role(acs:ram::.*:role/kubernetesworkerrole-test)"
    warned(result, "placeholder", key="acr-registry-info", line=4)


def test_10_scenario4_access_key_with_slash_comments() -> None:
    result = manifest_config("10-scenario4-access-key.yaml")
    cfg = ok(result)
    assert_scenario_defaults(cfg)
    (reg,) = cfg.registries
    assert reg.edition == "personal"
    assert reg.custom_access_key == "xxxxx"
    assert reg.custom_access_key_secret is not None
    assert reg.custom_access_key_secret.get_secret_value() == "xxxxxx"
    assert reg.credential_hint() == "access-key"
    warned(result, "trailing `// ...` comment", line=2)
    warned(result, "trailing `// ...` comment", line=3)
    warned(result, "`customAccessKey: ...  # comment`", line=2)
    # the comment text is not part of any value, and the secret is not in any message
    assert "xxxxxx" not in repr(result) + result.model_dump_json() + " ".join(map(str, result.messages))


@pytest.mark.parametrize(
    "name",
    ["05-scenario1-enterprise.yaml", "06-scenario1-personal.yaml", "10-scenario4-access-key.yaml"],
)
def test_guide_examples_survive_crlf_and_bom(name: str) -> None:
    text = "\ufeff" + fixture(name).replace("\n", "\r\n")
    plain = manifest_config(name)
    data, _ = load_configmap_manifest(text)
    assert data is not None
    assert parse_config(data).config == plain.config
