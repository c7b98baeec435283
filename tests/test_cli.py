"""CLI contract: subcommands, flags, ACR_HELPER_<FLAG> environment defaults, exit codes."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from acr_helper.cli import build_parser, env_name, main
from acr_helper.commands.run import settings_from_args

ROOT = pathlib.Path(__file__).resolve().parents[1]


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


def test_bad_environment_value_is_a_usage_error_of_the_subcommand_that_uses_it(capsys):
    parser = build_parser({"ACR_HELPER_LEADER_ELECT": "maybe"})  # building never fails
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["run"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "acr-helper run: error: ACR_HELPER_LEADER_ELECT='maybe': expected true or false" in err


@pytest.mark.parametrize(
    ("env", "argv", "message"),
    [
        ({"ACR_HELPER_KUBE_QPS": "abc"}, ["run"], "ACR_HELPER_KUBE_QPS='abc': not a valid value for --kube-qps"),
        ({"ACR_HELPER_KUBE_BURST": "1.5"}, ["run"], "ACR_HELPER_KUBE_BURST='1.5': not a valid value"),
        ({"ACR_HELPER_RESYNC_PERIOD": "soon"}, ["run"], "ACR_HELPER_RESYNC_PERIOD='soon': not a valid value"),
        ({"ACR_HELPER_API_PORT": "x"}, ["sandbox"], "ACR_HELPER_API_PORT='x'"),
        ({"ACR_HELPER_OUTPUT": "yaml"}, ["plan", "-f", "x"], "ACR_HELPER_OUTPUT='yaml': expected one of text, json"),
        ({"ACR_HELPER_LOG_LEVEL": "loud"}, ["run"], "ACR_HELPER_LOG_LEVEL='loud': expected one of debug"),
        ({"ACR_HELPER_OFFLINE": "perhaps"}, ["check", "-f", "x"], "ACR_HELPER_OFFLINE='perhaps'"),
    ],
)
def test_each_bad_value_names_its_variable(env, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser(env).parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"acr-helper {argv[0]}: error: " in err and message in err


def test_a_bad_value_for_one_subcommand_does_not_break_another(capsys):
    env = {"ACR_HELPER_KUBE_QPS": "abc", "ACR_HELPER_LEADER_ELECT": "maybe", "ACR_HELPER_API_PORT": "x"}
    args = build_parser(env).parse_args(["plan", "-f", "cm.yaml"])
    assert args.filename == "cm.yaml" and args.output == "text"
    args = build_parser(env).parse_args(["check", "-f", "cm.yaml", "--offline"])
    assert args.offline is True
    assert capsys.readouterr().err == ""


def test_the_command_line_wins_over_a_bad_environment_value():
    env = {"ACR_HELPER_KUBE_QPS": "abc", "ACR_HELPER_LEADER_ELECT": "maybe"}
    args = build_parser(env).parse_args(["run", "--kube-qps", "3", "--no-leader-elect"])
    assert args.kube_qps == 3.0 and args.leader_elect is False


def test_plan_runs_with_a_bad_value_meant_for_run(monkeypatch, capsys):
    monkeypatch.setenv("ACR_HELPER_KUBE_QPS", "abc")
    monkeypatch.setenv("ACR_HELPER_LEADER_ELECT", "maybe")
    assert main(["plan", "-f", str(ROOT / "examples" / "acr-configuration.yaml"), "-o", "json"]) == 0
    captured = capsys.readouterr()
    assert '"actions"' in captured.out and captured.err == ""
    with pytest.raises(SystemExit) as exc:
        main(["run"])
    assert exc.value.code == 2 and "ACR_HELPER_KUBE_QPS='abc'" in capsys.readouterr().err


def test_env_values_are_converted_for_every_subcommand():
    env = {"ACR_HELPER_API_PORT": "8081", "ACR_HELPER_TOKEN_LIFETIME": "20m", "ACR_HELPER_OUTPUT": "json",
           "ACR_HELPER_OFFLINE": "true", "ACR_HELPER_IMDS_V1_FALLBACK": "false", "ACR_HELPER_FILENAME": "cm.yaml"}
    parser = build_parser(env)
    sandbox = parser.parse_args(["sandbox"])
    assert sandbox.api_port == 8081 and sandbox.token_lifetime == 1200.0
    plan = parser.parse_args(["plan"])
    assert plan.output == "json" and plan.filename == "cm.yaml"
    check = parser.parse_args(["check"])
    assert check.offline is True and check.imds_v1_fallback is False and check.filename == "cm.yaml"
    assert parser.parse_args(["check", "--imds-v1-fallback"]).imds_v1_fallback is True


def test_help_works_with_a_bad_value_and_still_documents_the_variables():
    env = {**os.environ, "ACR_HELPER_KUBE_QPS": "abc"}
    out = subprocess.run([sys.executable, "-m", "acr_helper", "run", "--help"], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 0 and "[env ACR_HELPER_KUBE_QPS]" in " ".join(out.stdout.split())


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
