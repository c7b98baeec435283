"""benchmarks/scale.py at ~20 namespaces, so the benchmark never rots.

Runs the script as a user would (a subprocess, `--json`) and checks that every part produced
figures that make sense: convergence, the minimum writes, zero idle writes, every stream namespace
served, and (in the slow test) one natural rotation with one token call per registry.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "scale.py"
N = 20


def run_scale(*extra: str, timeout: float = 240) -> dict[str, Any]:
    out = subprocess.run([sys.executable, str(SCRIPT), "--namespaces", str(N), "--json", *extra],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    doc: dict[str, Any] = json.loads(out.stdout)
    res: dict[str, Any] = doc["results"][str(N)]
    return res


def check_cold(res: dict[str, Any]) -> None:
    cold = res["cold"]
    assert cold["converged"] is True
    assert cold["secrets"] == N and cold["service_accounts"] == 2 * N
    assert cold["time_s"] > 0 and cold["startup_s"] > 0
    reqs = cold["requests"]
    assert reqs.get("create secrets") == N  # one create per namespace, nothing more
    assert sum(v for k, v in reqs.items() if k.startswith(("update serviceaccounts", "patch serviceaccounts"))) == 2 * N
    assert not any(k.startswith("delete") for k in reqs)
    assert res["resources"]["peak_rss_mib"] > 10
    assert res["resources"]["cpu_s"] > 0
    assert res["exit_code"] == 0  # SIGTERM: a clean exit


@pytest.mark.e2e
@pytest.mark.slow
def test_scale_smoke_without_rotation() -> None:
    res = run_scale("--skip", "rotation", "--resync-period", "1", "--idle-periods", "2",
                    "--stream-seconds", "1", "--bare-threads", "2")
    for kind in ("bare_serial", "bare_parallel", "bare_watch"):
        bare = res[kind]
        assert bare["writes"] == 3 * N and bare["namespaces"] == N
        assert bare["requests"]["create"] == N and bare["requests"]["update"] == 2 * N
    assert res["bare_parallel"]["threads"] == 2
    assert res["bare_watch"]["watch_events"] > 0 and res["bare_serial"]["watch_events"] == 0
    check_cold(res)
    idle = res["idle"]
    assert idle["passes"] >= 1 and idle["writes"] == 0
    lat = res["latency"]
    assert lat["created"] == 20 and lat["served"] == 20
    assert 0 < lat["p50_s"] <= lat["p99_s"] <= lat["max_s"] < 10
    assert "rotation" not in res


@pytest.mark.e2e
@pytest.mark.slow
def test_scale_smoke_rotation() -> None:
    res = run_scale("--skip", "bare,idle,latency", "--rotation-at", "15", "--kube-qps", "10", "--kube-burst", "5")
    check_cold(res)
    rot = res["rotation"]
    assert rot["complete"] is True and rot["overlapped_earlier_parts"] is False
    assert rot["rotated"] == N
    assert rot["token_calls"] == 2  # one per registry
    # every Secret write carried new content, and every namespace got the same number of writes:
    # one per wave (1 when both registries rotate in the same pass, 2 when a moment apart)
    assert rot["waves"] in (1, 2)
    assert rot["secret_updates"] == rot["secret_changes"] == N * rot["waves"]
    assert rot["sa_writes"] == 0
    # the client-side limit holds: at most burst + qps in the first second, about qps after
    assert rot["rate_first_1s"] <= 5 + 10 + 1
    assert rot["rate_max_1s_after"] <= 10 + 1
    assert rot["time_s"] >= 0.9  # 20 updates at 10/s after a burst of 5 take more than a second
    assert rot["over_limit"] <= 1.0  # replaying a (10/s, 5) token bucket: nothing went beyond it


def load_scale() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_scale", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_scale"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_window_and_bucket_helpers() -> None:
    scale = load_scale()
    assert scale.max_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3  # windows are half-open
    assert scale.max_in_window([]) == 0
    assert scale.pct([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and scale.pct([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert scale.pct([], 50) is None
    # a (10/s, burst 3) bucket allows 3 at once, then one every 0.1 s
    assert scale.bucket_excess([0.0, 0.0, 0.0, 0.1, 0.2], 10, 3) == 0
    assert scale.bucket_excess([0.0, 0.0, 0.0, 0.0], 10, 3) == 1
    # 50 requests at 20/s against 10/s + 5: ~20 beyond the limit; unlimited (qps 0): none
    assert 19 <= scale.bucket_excess([i * 0.05 for i in range(50)], 10, 5) <= 21
    assert scale.bucket_excess([0.0] * 100, 0, 1) == 0


def test_table_renders_missing_parts_as_dashes() -> None:
    scale = load_scale()
    text = scale.table({10: {"cold": {"time_s": 1.5, "startup_s": 1.0, "apply_s": 0.5, "requests": {"create secrets": 10}},
                             "bare_serial": {"total_s": 1.0, "write_s": 0.4, "writes_per_s": 75.0}}})
    ratio = next(line for line in text.splitlines() if line.startswith("| ratio cold / bare serial (target"))
    assert ratio.split("|")[2].strip() == "1.5"
    idle = [line for line in text.splitlines() if line.startswith("| idle")]
    assert idle == []  # parts that did not run are left out
    assert "create sec:10" in text
    assert "None" not in text
