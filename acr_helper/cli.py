"""Command line: `acr-helper {run,sandbox,plan,check}`.

Every flag can also come from the environment as `ACR_HELPER_<FLAG>` (upper case, dashes as
underscores), e.g. `ACR_HELPER_KUBE_QPS=50`. A flag given on the command line wins. A variable is
checked only when the chosen subcommand uses it and its flag is not given: a bad value is a usage
error (exit 2) that names the variable, and never breaks another subcommand.
Exit codes: 0 ok, 1 failure (invalid config, failed registry, failed pass), 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from acr_helper import __version__
from acr_helper.core.config import CONFIG_NAME, CONFIG_NAMESPACE
from acr_helper.core.model import DEFAULT_SECRET_NAME

ENV_PREFIX = "ACR_HELPER_"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


_BOOL_ACTIONS = ("store_true", argparse.BooleanOptionalAction)


class _EnvValue:
    """A flag's default taken from `ACR_HELPER_<FLAG>`, still unchecked.

    It is converted (and checked) only after parsing, and only when it is still the value of its
    flag: the flag belongs to the chosen subcommand and was not given on the command line. So a
    bad value breaks only the subcommand that uses it, and the error names the variable.
    """

    __slots__ = ("boolean", "choices", "flag", "name", "parser", "raw", "type")

    def __init__(
        self,
        name: str,
        raw: str,
        flag: str,
        *,
        boolean: bool,
        type: Callable[[str], object] | None,
        choices: Sequence[object] | None,
        parser: argparse.ArgumentParser,
    ) -> None:
        self.name, self.raw, self.flag = name, raw, flag
        self.boolean, self.type, self.choices, self.parser = boolean, type, choices, parser

    def __repr__(self) -> str:
        return f"<from {self.name}>"

    def resolve(self) -> object:
        """The converted value; exits through the subcommand's parser (code 2) when it is bad."""
        if self.boolean:
            low = self.raw.strip().lower()
            if low not in _TRUE | _FALSE:
                self.parser.error(f"{self.name}={self.raw!r}: expected true or false (for {self.flag})")
            return low in _TRUE
        value: object = self.raw
        if self.type is not None:
            try:
                value = self.type(self.raw)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                detail = str(exc) if isinstance(exc, argparse.ArgumentTypeError) else ""
                self.parser.error(
                    f"{self.name}={self.raw!r}: not a valid value for {self.flag}" + (f" ({detail})" if detail else "")
                )
        if self.choices is not None and value not in self.choices:
            shown = ", ".join(map(str, self.choices))
            self.parser.error(f"{self.name}={self.raw!r}: expected one of {shown} (for {self.flag})")
        return value


def resolve_env_values(namespace: argparse.Namespace) -> argparse.Namespace:
    """Replace every still-unchecked `ACR_HELPER_<FLAG>` default in `namespace` by its value."""
    for dest, value in sorted(vars(namespace).items()):
        if isinstance(value, _EnvValue):
            setattr(namespace, dest, value.resolve())
    return namespace


class EnvArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that resolves `ACR_HELPER_<FLAG>` defaults after parsing.

    Subparsers are of this class too (argparse creates them with the parent's class), so the
    values of the chosen subcommand are checked by its own parser: errors read
    `acr-helper <command>: error: ACR_HELPER_<FLAG>=...`.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        return resolve_env_values(parsed), rest


class _EnvDefaults:
    """Adds `ACR_HELPER_<FLAG>` defaults to a parser and documents them in --help.

    Nothing is converted or checked here (see `_EnvValue`): building the parser never fails.
    """

    def __init__(self, parser: argparse.ArgumentParser, environ: dict[str, str]) -> None:
        self.parser = parser
        self.environ = environ

    def add(self, *flags: str, **kwargs: object) -> None:
        long_flag = next(f for f in flags if f.startswith("--"))
        name = env_name(long_flag)
        help_text = str(kwargs.get("help", ""))
        kwargs["help"] = f"{help_text} [env {name}]".strip()
        action = kwargs.get("action")
        if name in self.environ:
            typ = kwargs.get("type")
            choices = kwargs.get("choices")
            kwargs["default"] = _EnvValue(
                name,
                self.environ[name],
                long_flag,
                boolean=action in _BOOL_ACTIONS,
                type=typ if callable(typ) else None,
                choices=list(choices) if isinstance(choices, list | tuple) else None,
                parser=self.parser,
            )
        self.parser.add_argument(*flags, **kwargs)  # type: ignore[arg-type]


def _output_flag(env: _EnvDefaults) -> None:
    env.add("-o", "--output", choices=["text", "json"], default="text", help="output format")


def _kube_flags(env: _EnvDefaults, *, kubeconfig_help: str) -> None:
    env.add("--kubeconfig", default=None, help=kubeconfig_help)
    env.add("--context", default=None, help="kubeconfig context (default: the current one)")
    env.add("--config-namespace", default=CONFIG_NAMESPACE, help="namespace of the configuration ConfigMap")
    env.add("--config-name", default=CONFIG_NAME, help="name of the configuration ConfigMap")
    env.add("--secret-name", default=DEFAULT_SECRET_NAME, help="name of the managed pull Secret")


def _token_flags(env: _EnvDefaults) -> None:
    env.add("--region", default=None, help="the cluster's region (default: ALIBABA_CLOUD_REGION_ID, then ECS metadata)")
    env.add(
        "--use-vpc-endpoints",
        action="store_true",
        default=False,
        help="call cr-vpc.<region>.aliyuncs.com and sts-vpc.<region>.aliyuncs.com",
    )
    env.add("--cr-endpoint", default=None, help="Container Registry API endpoint URL (plain http allowed)")
    env.add("--sts-endpoint", default=None, help="STS endpoint URL (plain http allowed; also ALIBABA_CLOUD_STS_ENDPOINT)")
    env.add(
        "--ecs-metadata-endpoint",
        default="http://100.100.100.200",
        help="ECS instance metadata service base URL",
    )
    env.add(
        "--imds-v1-fallback",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fall back to IMDSv1 when the IMDSv2 token request fails",
    )


def _log_flags(env: _EnvDefaults) -> None:
    env.add("--log-format", choices=["text", "json"], default="text", help="log line format")
    env.add(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default="info",
        help="log level",
    )


def _run_flags(env: _EnvDefaults) -> None:
    env.add("--metrics-bind-address", default=":8080", help='host:port for /metrics, /healthz, /readyz ("0" disables)')
    env.add(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="elect a leader on a coordination.k8s.io/v1 Lease; only the leader writes",
    )
    env.add("--lease-name", default="acr-helper", help="leader-election Lease name")
    env.add("--lease-namespace", default=CONFIG_NAMESPACE, help="leader-election Lease namespace")
    env.add("--lease-duration", type=float, default=15.0, help="lease duration in seconds")
    env.add("--resync-period", type=_duration_seconds, default=600.0, help="full resync interval (e.g. 10m, 90s)")
    env.add("--kube-qps", type=float, default=20.0, help="client-side rate limit on Kubernetes requests per second")
    env.add("--kube-burst", type=int, default=40, help="client-side burst above --kube-qps")
    env.add("--apply-workers", type=int, default=1,
            help="parallel writers when applying a plan (a namespace's actions stay in order on one)")
    env.add("--grace-period", type=float, default=20.0, help="seconds the current apply may take after SIGTERM")
    env.add("--once", action="store_true", default=False, help="one full pass, then exit (non-zero when it failed)")


def _duration_seconds(text: str) -> float:
    from acr_helper.core.durations import parse_duration

    return parse_duration(text).total_seconds()


def build_parser(environ: dict[str, str] | None = None) -> argparse.ArgumentParser:
    environ = dict(os.environ if environ is None else environ)
    parser = EnvArgumentParser(
        prog="acr-helper",
        description=(
            "Keeps Alibaba Cloud Container Registry pull Secrets fresh in Kubernetes namespaces. "
            "Every flag can also be set as ACR_HELPER_<FLAG> in the environment."
        ),
    )
    parser.add_argument("--version", action="version", version=f"acr-helper {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run the controller against a cluster")
    e = _EnvDefaults(p, environ)
    _kube_flags(e, kubeconfig_help="kubeconfig path (default: in-cluster, then $KUBECONFIG, then ~/.kube/config)")
    _run_flags(e)
    _token_flags(e)
    _log_flags(e)

    p = sub.add_parser(
        "sandbox",
        help="run the controller against a local fake API server and Alibaba Cloud emulator",
    )
    e = _EnvDefaults(p, environ)
    e.add("--once", action="store_true", default=False, help="converge once, print Secrets and ServiceAccounts, exit")
    e.add("--config", default=None, help="acr-configuration ConfigMap manifest to seed (default: the bundled example)")
    e.add("--state", default=None, help="cluster objects to seed (default: the bundled example)")
    e.add("--dir", default=".sandbox", help="where to write the sandbox kubeconfig")
    e.add("--api-port", type=int, default=0, help="fake API server port (0: any free port)")
    e.add("--metrics-bind-address", default="127.0.0.1:0", help="host:port for /metrics (port 0: any free port)")
    e.add("--token-lifetime", type=_duration_seconds, default=3600.0, help="lifetime of emulated tokens (e.g. 1h, 20m)")
    _log_flags(e)

    p = sub.add_parser("plan", help="print what the controller would do (offline, or read-only against a cluster)")
    e = _EnvDefaults(p, environ)
    e.add("-f", "--filename", default=None, help="acr-configuration ConfigMap manifest (YAML)")
    e.add("--state", default=None, help="cluster objects: `kubectl get ns,sa,secrets -A -o yaml` output or multi-document YAML")
    e.add("--kubeconfig", default=None, help="read the ConfigMap (unless -f) and the objects live from this cluster, read-only")
    e.add("--context", default=None, help="kubeconfig context (default: the current one)")
    e.add("--config-namespace", default=CONFIG_NAMESPACE, help="namespace of the configuration ConfigMap (live mode)")
    e.add("--config-name", default=CONFIG_NAME, help="name of the configuration ConfigMap (live mode)")
    e.add("--secret-name", default=DEFAULT_SECRET_NAME, help="name of the managed pull Secret")
    e.add("--region", default=None, help="the cluster's region, for registries without regionId (placeholder otherwise)")
    _output_flag(e)

    p = sub.add_parser("check", help="validate a configuration and fetch a token for every registry")
    e = _EnvDefaults(p, environ)
    e.add("-f", "--filename", required="ACR_HELPER_FILENAME" not in environ, help="acr-configuration ConfigMap manifest (YAML)")
    e.add("--offline", action="store_true", default=False, help="validate and resolve only; call no API")
    e.add("--kubeconfig", default=None, help="read referenced AccessKey Secrets / alibaba-addon-secret from this cluster")
    e.add("--context", default=None, help="kubeconfig context (default: the current one)")
    e.add("--config-namespace", default=CONFIG_NAMESPACE, help="namespace of the ConfigMap and referenced Secrets")
    _token_flags(e)
    _output_flag(e)
    return parser


_COMMANDS: dict[str, str] = {
    "run": "acr_helper.commands.run",
    "sandbox": "acr_helper.commands.sandbox",
    "plan": "acr_helper.commands.plan",
    "check": "acr_helper.commands.check",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return 2
    import importlib

    module = importlib.import_module(_COMMANDS[args.command])
    handler: Callable[[argparse.Namespace], int] = module.main
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
