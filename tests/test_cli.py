"""CLI contract: subcommands, flags, ACR_HELPER_<FLAG> environment defaults, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from acr_helper.cli import build_parser, env_name, main
from acr_helper.commands.run import settings_from_args


def test_env_name():
    assert env_name("--kube-qps") == "ACR_HELPER_KUBE_QPS"
    assert env_name("--metrics-bind-address") == "ACR_HELPER_METRICS_BIND_ADDRESS"


def test_every_flag_takes_its_default_from_the_environment():
    env = {
        "ACR_HELPER_KUBE_QPS": "55", "ACR_HELPER_KUBE_BURST": "99", "ACR_HELPER_LEADER_ELECT": "true",
        "ACR_HELPER_RESYNC_PERIOD": "2m", "ACR_HELPER_SECRET_NAME": "my-pull", "ACR_HELPER_REGION": "cn-beijing",
        "ACR_HELPER_USE_VPC_ENDPOINTS": "1", "ACR_HELPER_ONCE": "yes", "ACR_HELPER_LOG_FORMAT": "json",
    }
    args = build_parser(env).parse_args(["run"])
    s = settings_from_args(args)
    assert (s.kube.qps, s.kube.burst, s.kube.secret_name) == (55.0, 99, "my-pull")
    assert s.runtime.leader_elect and s.runtime.once and s.runtime.resync_period == 120.0
    assert s.tokens.region == "cn-beijing" and s.tokens.use_vpc_endpoints
    assert args.log_format == "json"
    # the command line wins over the environment
    args = build_parser(env).parse_args(["run", "--kube-qps", "7", "--no-leader-elect"])
    assert args.kube_qps == 7.0 and args.leader_elect is False


def test_defaults_match_the_documented_contract():
    args = build_parser({}).parse_args(["run"])
    s = settings_from_args(args)
    assert s.kube.config_namespace == "kube-system" and s.kube.config_name == "acr-configuration"
    assert s.kube.secret_name == "acr-credential-helper"
    assert s.server.metrics_bind_address == ":8080"
    assert s.runtime.resync_period == 600.0 and s.runtime.lease_name == "acr-helper"
    assert s.runtime.leader_elect is False


def test_bad_environment_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser({"ACR_HELPER_LEADER_ELECT": "maybe"})
    assert exc.value.code == 2
    assert "ACR_HELPER_LEADER_ELECT" in capsys.readouterr().err


def test_help_documents_each_flag_and_its_environment_variable():
    for cmd in ("run", "sandbox", "plan", "check"):
        out = subprocess.run([sys.executable, "-m", "acr_helper", cmd, "--help"], capture_output=True, text=True,
                             timeout=60).stdout
        assert "ACR_HELPER_" in out, cmd
    out = subprocess.run([sys.executable, "-m", "acr_helper", "run", "--help"], capture_output=True, text=True,
                         timeout=60).stdout
    for flag in ("--kubeconfig", "--config-namespace", "--config-name", "--secret-name", "--metrics-bind-address",
                 "--leader-elect", "--lease-name", "--lease-namespace", "--resync-period", "--kube-qps",
                 "--kube-burst", "--region", "--use-vpc-endpoints", "--cr-endpoint", "--sts-endpoint",
                 "--ecs-metadata-endpoint", "--log-format", "--log-level", "--once"):
        assert flag in out, flag
        assert env_name(flag) in out.replace("\n", " ").replace("  ", " ") or env_name(flag)[:20] in out


def test_no_command_is_a_usage_error():
    assert main([]) == 2
