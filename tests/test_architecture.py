"""The layering rules of docs/architecture.md, enforced."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
CORE = ROOT / "acr_helper" / "core"


def test_import_contracts_hold():
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run(
        [str(lint), str(ROOT / ".importlinter")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "BROKEN" not in proc.stdout


CLOCK_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("datetime", "today"), ("date", "today"),
               ("time", "time"), ("time", "monotonic"), ("time", "sleep"), ("time", "perf_counter")}
FORBIDDEN_NAMES = {"open", "print", "input"}


def test_core_reads_no_clock_and_does_no_io():
    offenders = []
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                    if (func.value.id, func.attr) in CLOCK_CALLS:
                        offenders.append(f"{path.name}:{node.lineno} {func.value.id}.{func.attr}()")
                if isinstance(func, ast.Name) and func.id in FORBIDDEN_NAMES:
                    offenders.append(f"{path.name}:{node.lineno} {func.id}()")
            if isinstance(node, ast.ImportFrom) and node.module in {"time", "os", "random"}:
                offenders.append(f"{path.name}:{node.lineno} from {node.module} import")
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in {"time", "os", "random"}:
                        offenders.append(f"{path.name}:{node.lineno} import {alias.name}")
    assert offenders == []
