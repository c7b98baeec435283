#!/usr/bin/env python3
"""acr-helper at scale, against the project's fake API server and the Alibaba Cloud emulator.

    .venv/bin/python benchmarks/scale.py --namespaces 100,1000,10000
    .venv/bin/python benchmarks/scale.py --namespaces 1000 --skip rotation --json

For each N: N namespaces x `--sas` ServiceAccounts (default, builder, deployer, ...), the config
selecting `default,builder` (2 of 3), two registries (an Enterprise Edition instance + Personal
Edition). The controller is the real `python -m acr_helper run` as a SUBPROCESS, so its RSS (VmHWM)
and CPU seconds (utime + stime) are its own; the fake API server and the emulator live in this
process. Parts (skip any with `--skip a,b`):

* bare     the bare-write floor: a plain `kubernetes` client (benchmarks/bare_writer.py, also a
           child process) making only the minimum writes (N Secret creates + one PUT per selected
           ServiceAccount, objects from one LIST) against a fresh fake server seeded the same way;
           serially (the controller applies serially) and from `--bare-threads` threads.
* cold     controller start -> every Secret present and every selected ServiceAccount patched:
           time, requests by verb, ratio to the bare floor.
* idle     after convergence, with `--resync-period` (2s): writes must be 0; reads per resync pass.
* latency  a steady stream of namespace creations (`--rate`/s for `--stream-seconds`): namespace
           created -> Secret present and ServiceAccounts patched, p50/p99/max.
* rotation a natural token expiry: the emulator issues the first tokens with a lifetime of
           2 x `--rotation-at` and `expiring-threshold` is set above half of it, so both tokens are
           due exactly `--rotation-at` seconds after they were fetched (the policy's half-lifetime
           floor). Counts cloud token calls, Secret updates, time to rotate everything, and the
           largest request count in any 1 s window against `--kube-qps`/`--kube-burst`.

Completion is detected with in-process watches on the fake server's store (no polling delay).
Only 127.0.0.1 is used. Every credential is fake.
"""

from __future__ import annotations

import argparse
import bisect
import json
import math
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from acr_helper.kube.fakeserver import FakeKubeAPI
from acr_helper.kube.fakeserver_store import CLOSE, CUT, Watcher
from acr_helper.kube.fakeserver_util import resolve_resource
from acr_helper.tokens.emulator import AliyunEmulator

REGION = "cn-hangzhou"
EE = "cri-bench0001"
SECRET = "acr-credential-helper"
MANAGED = ("app.kubernetes.io/managed-by", "acr-helper")
SELECTED = ("default", "builder")
PARTS = ("bare", "cold", "idle", "latency", "rotation")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
HERE = pathlib.Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sa_names(count: int) -> list[str]:
    base = ["default", "builder", "deployer"]
    return (base + [f"sa-{i}" for i in range(4, count + 1)])[:count]


def registry_info() -> str:
    return f'- instanceId: "{EE}"\n  regionId: "{REGION}"\n- instanceId: ""\n  regionId: "{REGION}"\n'


def config_data(threshold_s: int) -> dict[str, str]:
    return {"service-account": ",".join(SELECTED), "watch-namespace": "all,!kube-system",
            "expiring-threshold": f"{threshold_s}s", "acr-registry-info": registry_info()}


def seed(api: FakeKubeAPI, n: int, sas: int, threshold_s: int, prefix: str = "bench") -> list[str]:
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}})
    api.create({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "acr-configuration", "namespace": "kube-system"},
                "data": config_data(threshold_s)})
    names = [f"{prefix}-{i:05d}" for i in range(n)]
    for name in names:
        create_namespace(api, name, sas)
    return names


def create_namespace(api: FakeKubeAPI, name: str, sas: int) -> None:
    api.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    for s in sa_names(sas):
        api.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": s, "namespace": name}})


def proc_stats(pid: int) -> dict[str, float]:
    """VmHWM / VmRSS (MiB) and utime+stime (s) of a live process, from /proc."""
    out: dict[str, float] = {}
    try:
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmHWM:", "VmRSS:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        out["cpu_s"] = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
    except OSError:
        pass
    return out


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def bucket_excess(times: list[float], qps: float, burst: int) -> float:
    """Replay a full token bucket (qps, burst) over request times: how many requests went beyond
    what it allows (0 = the stream never exceeded the limit; `qps <= 0` = unlimited)."""
    if qps <= 0 or not times:
        return 0.0
    tokens, last, worst = float(burst), times[0], 0.0
    for t in times:
        tokens = min(float(burst), tokens + (t - last) * qps) - 1.0
        last = t
        worst = min(worst, tokens)
    return round(max(0.0, -worst), 1)


def max_in_window(times: list[float], width: float = 1.0) -> int:
    """The largest number of events in any half-open window of `width` seconds."""
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")
            and not k.startswith("ALIBABA_CLOUD_") and not k.startswith("ACR_HELPER_")}


# ----------------------------------------------------------------------------------------------
# watching the fake server's store


@dataclass
class Tracker:
    """Consumes in-process watch streams on Secrets and ServiceAccounts; records when each
    namespace got its managed Secret, each ServiceAccount our entry, and each Secret new data."""

    api: FakeKubeAPI
    selected: tuple[str, ...] = SELECTED
    secret_at: dict[str, float] = field(default_factory=dict)
    sa_at: dict[tuple[str, str], float] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    changed_at: dict[str, float] = field(default_factory=dict)
    last_change_at: dict[str, float] = field(default_factory=dict)
    changes: Counter[str] = field(default_factory=Counter)
    armed: bool = False
    _watchers: list[Watcher] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Tracker:
        store = self.api._store
        rv = self.api.resource_version
        for res, fn in (("secrets", self._on_secret), ("serviceaccounts", self._on_sa)):
            w = store.open_watch(resolve_resource(res), None, (), (), rv, False)
            self._watchers.append(w)
            t = threading.Thread(target=self._pump, args=(w, fn), daemon=True, name=f"track-{res}")
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for w in self._watchers:
            self.api._store.close_watch(w)
            w.push(CLOSE)
        for t in self._threads:
            t.join(5)

    @staticmethod
    def _pump(w: Watcher, fn: Any) -> None:
        while True:
            item = w.pop(0.5)
            if item is None:
                continue
            if item is CLOSE or item is CUT:
                return
            fn(item["type"], item["object"], time.monotonic())

    def _on_secret(self, etype: str, obj: dict[str, Any], t: float) -> None:
        meta = obj["metadata"]
        if meta["name"] != SECRET or etype == "DELETED":
            return
        if (meta.get("labels") or {}).get(MANAGED[0]) != MANAGED[1]:
            return
        ns = meta["namespace"]
        data = (obj.get("data") or {}).get(".dockerconfigjson")
        self.secret_at.setdefault(ns, t)
        old = self.data.get(ns)
        self.data[ns] = data
        if self.armed and old is not None and data != old:
            self.changed_at.setdefault(ns, t)
            self.last_change_at[ns] = t
            self.changes[ns] += 1

    def _on_sa(self, etype: str, obj: dict[str, Any], t: float) -> None:
        meta = obj["metadata"]
        if etype == "DELETED" or meta["name"] not in self.selected:
            return
        if any(p.get("name") == SECRET for p in obj.get("imagePullSecrets") or []):
            self.sa_at.setdefault((meta["namespace"], meta["name"]), t)

    def done_at(self, ns: str) -> float | None:
        ts = [self.secret_at.get(ns)] + [self.sa_at.get((ns, s)) for s in self.selected]
        return None if any(x is None for x in ts) else max(ts)  # type: ignore[type-var]

    def progress(self) -> tuple[int, int]:
        return len(self.secret_at), len(self.sa_at)


def wait_until(cond: Any, timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


# ----------------------------------------------------------------------------------------------
# the bare floor


def run_bare(n: int, sas: int, threads: int, workdir: pathlib.Path, watch: bool = False) -> dict[str, Any]:
    api = FakeKubeAPI(bookmark_interval=10.0).start()
    try:
        seed(api, n, sas, 900)
        kubeconfig = api.write_kubeconfig(str(workdir / f"kubeconfig-bare-{threads}"))
        api.reset_log()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        out = subprocess.run([sys.executable, str(HERE / "bare_writer.py"), "--kubeconfig", kubeconfig,
                              "--threads", str(threads), "--service-accounts", ",".join(SELECTED),
                              *(["--watch"] if watch else [])],
                             capture_output=True, text=True, env=child_env(), timeout=3600, check=False)
        wall = time.monotonic() - t0
        server_cpu = time.process_time() - cpu0
        if out.returncode != 0:
            raise RuntimeError(f"bare writer failed: {out.stderr[-2000:]}")
        res: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        res["total_s"] = round(wall, 3)
        res["writes_per_s"] = round(res["writes"] / res["write_s"], 1) if res["write_s"] else None
        res["requests"] = dict(Counter(r.verb for r in api.requests))
        res["server_cpu_s"] = round(server_cpu, 2)
        expected = n * (1 + len(SELECTED))
        if res["writes"] != expected:
            raise RuntimeError(f"bare writer made {res['writes']} writes, expected {expected}")
        return res
    finally:
        api.stop()


# ----------------------------------------------------------------------------------------------
# the controller


class ControllerProc:
    def __init__(self, api: FakeKubeAPI, emu: AliyunEmulator, workdir: pathlib.Path, args: argparse.Namespace) -> None:
        self.metrics_port = free_port()
        self.keep_logs: str | None = args.keep_logs
        self.n = len(api.list("namespaces"))
        kubeconfig = api.write_kubeconfig(str(workdir / "kubeconfig-controller"))
        self.log_path = workdir / "controller.log"
        cmd = [sys.executable, "-m", "acr_helper", "run", "--kubeconfig", kubeconfig, "--region", REGION,
               "--cr-endpoint", emu.url, "--sts-endpoint", emu.url, "--ecs-metadata-endpoint", emu.url,
               "--metrics-bind-address", f"127.0.0.1:{self.metrics_port}",
               "--kube-qps", str(args.kube_qps), "--kube-burst", str(args.kube_burst),
               "--resync-period", f"{args.resync_period}s", "--log-format", "json",
               "--log-level", args.log_level]
        self._fh = open(self.log_path, "w")
        self.t_start = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=child_env(), text=True)
        self.profiler: subprocess.Popen[bytes] | None = None
        if args.profile:  # py-spy (pip install py-spy) samples every thread of the controller
            spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy"
            self.profiler = subprocess.Popen(
                [spy, "record", "--pid", str(self.proc.pid), "--rate", "250", "--format", "raw",
                 "--threads", "--gil", "-o", args.profile], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def metric(self, name: str, **labels: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
                body = r.read().decode()
        except OSError:
            return float("nan")
        total = 0.0
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stats(self) -> dict[str, float]:
        return proc_stats(self.proc.pid)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        if self.keep_logs:
            pathlib.Path(self.keep_logs).mkdir(parents=True, exist_ok=True)
            shutil.copy(self.log_path, pathlib.Path(self.keep_logs) / f"controller-{self.n}.log")
        if self.profiler is not None:
            self.profiler.wait(60)
        return self.proc.returncode


def by_verb(records: list[Any], t0: float, t1: float) -> dict[str, int]:
    c: Counter[str] = Counter()
    for r in records:
        if t0 <= r.time <= t1:
            c[f"{r.verb} {r.resource}"] += 1
    return dict(sorted(c.items()))


def run_controller(n: int, args: argparse.Namespace, parts: set[str], workdir: pathlib.Path,
                   bare_hint: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # when the natural rotation must happen: after every other part had time to finish
    converge_budget = 60.0 + n * 0.05
    rotation_at = args.rotation_at or (
        (3 * bare_hint + 20 if bare_hint else 20 + n * 0.02)
        + (args.idle_periods + 2) * args.resync_period + args.stream_seconds + 15)
    lifetime = 2 * rotation_at if "rotation" in parts else 6 * 3600
    threshold = math.ceil(0.6 * lifetime) if "rotation" in parts else 900
    emu = AliyunEmulator(region=REGION, token_lifetime=lifetime).start()
    emu.add_instance(EE, region=REGION, name="bench")
    api = FakeKubeAPI(bookmark_interval=10.0).start()
    ctl: ControllerProc | None = None
    tracker: Tracker | None = None
    try:
        t = time.monotonic()
        namespaces = seed(api, n, args.sas, threshold)
        log(f"  seeded {n} namespaces x {args.sas} ServiceAccounts in {time.monotonic() - t:.1f}s")
        tracker = Tracker(api).start()
        api.reset_log()
        cpu_server0 = time.process_time()
        ctl = ControllerProc(api, emu, workdir, args)
        t0 = ctl.t_start

        def converged() -> bool:
            s, a = tracker.progress()
            return (s >= n and a >= len(SELECTED) * n) or not ctl.alive()

        ok = wait_until(converged, converge_budget, 0.005)
        if not ctl.alive():
            raise RuntimeError("controller exited:\n" + ctl.log_path.read_text()[-3000:])
        t_conv = max(filter(None, (tracker.done_at(ns) for ns in namespaces)), default=time.monotonic())
        reqs = list(api.requests)
        writes = [r for r in reqs if r.verb in WRITE_VERBS]
        first_write = min((r.time for r in writes), default=t_conv)
        st = ctl.stats()
        s_count, a_count = tracker.progress()
        out["cold"] = {
            "converged": ok, "secrets": s_count, "service_accounts": a_count,
            "time_s": round(t_conv - t0, 3),
            "startup_s": round(first_write - t0, 3),  # process start -> first write (imports, lists, tokens)
            "apply_s": round(t_conv - first_write, 3),  # first write -> converged
            "requests": by_verb(reqs, t0, t_conv + 0.001),
            "writes": sum(1 for r in writes if r.time <= t_conv + 0.001),
            "cpu_s": st.get("cpu_s"), "rss_mib": round(st.get("VmRSS", 0.0), 1),
            "server_cpu_s": round(time.process_time() - cpu_server0, 2),
        }
        log(f"  cold start: {out['cold']['time_s']}s (converged={ok})")

        if "idle" in parts:
            time.sleep(max(1.0, args.resync_period))  # let the pass that followed convergence finish
            i0 = len(api.requests)
            passes0 = ctl.metric("acr_helper_reconcile_total")
            time.sleep(args.idle_periods * args.resync_period + 0.5)
            passes = ctl.metric("acr_helper_reconcile_total") - passes0
            window = list(api.requests)[i0:]
            w = sum(1 for r in window if r.verb in WRITE_VERBS)
            reads = sum(1 for r in window if r.verb in ("get", "list"))
            out["idle"] = {"seconds": args.idle_periods * args.resync_period + 0.5, "passes": passes,
                           "writes": w, "reads": reads, "watches": sum(1 for r in window if r.verb == "watch"),
                           "reads_per_pass": round(reads / passes, 2) if passes else None,
                           "requests": dict(Counter(f"{r.verb} {r.resource}" for r in window))}
            log(f"  idle: {passes:.0f} passes, {w} writes, {reads} reads")

        if "latency" in parts:
            created: dict[str, float] = {}
            count = int(args.rate * args.stream_seconds)
            start = time.monotonic()
            for i in range(count):
                due = start + i / args.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                name = f"lat-{i:05d}"
                created[name] = time.monotonic()
                create_namespace(api, name, args.sas)
            achieved = count / (time.monotonic() - start) if count else 0.0
            wait_until(lambda: all(tracker.done_at(x) is not None for x in created), 30.0, 0.02)
            lat = [d - created[x] for x, d in ((x, tracker.done_at(x)) for x in created) if d is not None]
            out["latency"] = {"created": count, "rate_per_s": round(achieved, 1), "served": len(lat),
                              "p50_s": _r(pct(lat, 50)), "p99_s": _r(pct(lat, 99)), "max_s": _r(max(lat, default=None)),
                              "mean_s": _r(statistics.fmean(lat) if lat else None)}
            log(f"  latency: p50={out['latency']['p50_s']}s p99={out['latency']['p99_s']}s")

        if "rotation" in parts:
            emu.set_token_lifetime(6 * 3600)  # the tokens fetched by the rotation: no second rotation
            calls0 = emu.calls("GetAuthorizationToken") + emu.calls("PersonalToken")
            overlapped = calls0 > 2
            tracker.changed_at.clear()
            tracker.last_change_at.clear()
            tracker.changes.clear()
            tracker.armed = True
            i0 = len(api.requests)
            t_arm = time.monotonic()
            left = t0 + rotation_at + 3 - time.monotonic()
            log(f"  rotation: waiting {max(0.0, left):.0f}s for the tokens to become due")
            all_ns = namespaces + [f"lat-{i:05d}" for i in range(int(args.rate * args.stream_seconds))
                                   if "latency" in parts]
            total = len(all_ns)
            rotated = wait_until(lambda: len(tracker.changed_at) >= total, max(0.0, left) + 60 + n * 0.05, 0.01)
            # a second wave (the other registry's token due a moment later) must be counted too:
            # wait until no Secret has changed for a while
            settle = max(3.0, 2 * args.resync_period)
            while time.monotonic() - max(tracker.last_change_at.values(), default=0.0) < settle:
                time.sleep(0.1)
            window = list(api.requests)[i0:]
            sec_writes = [r for r in window if r.resource == "secrets" and r.verb in ("update", "patch")]
            t_first = min((r.time for r in sec_writes), default=t_arm)
            t_all = max(tracker.changed_at.values(), default=t_first)
            t_last = max(tracker.last_change_at.values(), default=t_first)
            times = sorted(r.time for r in window if r.verb != "watch")
            first_sec = bisect.bisect_left(times, t_first + 1.0) - bisect.bisect_left(times, t_first - 0.001)
            after = [x for x in times if x >= t_first + 1.0]
            calls = emu.calls("GetAuthorizationToken") + emu.calls("PersonalToken") - calls0
            waves = sorted(set(tracker.changes.values()))
            out["rotation"] = {
                "namespaces": total, "rotated": len(tracker.changed_at), "complete": rotated,
                "overlapped_earlier_parts": overlapped, "token_calls": calls,
                "secret_updates": len(sec_writes), "secret_changes": sum(tracker.changes.values()),
                "waves": waves[0] if len(waves) == 1 else waves,
                "sa_writes": sum(1 for r in window if r.resource == "serviceaccounts" and r.verb in WRITE_VERBS),
                "time_s": round(t_all - t_first, 3), "time_last_write_s": round(t_last - t_first, 3),
                "rate_first_1s": first_sec, "rate_max_1s_after": max_in_window(after),
                "rate_max_1s": max_in_window(times),
                "rate_sustained": round(len([x for x in times if t_first <= x <= t_last]) / (t_last - t_first), 1)
                if t_last > t_first else None,
                "over_limit": bucket_excess([x for x in times if x >= t_first], args.kube_qps, args.kube_burst),
                "qps": args.kube_qps, "burst": args.kube_burst,
                "requests": dict(Counter(f"{r.verb} {r.resource}" for r in window if t_first - 0.001 <= r.time <= t_last)),
            }
            log(f"  rotation: {len(tracker.changed_at)}/{total} in {out['rotation']['time_s']}s, "
                f"{calls} token calls, {len(sec_writes)} Secret updates")
        st = ctl.stats()
        out["resources"] = {"peak_rss_mib": round(st.get("VmHWM", 0.0), 1), "rss_mib": round(st.get("VmRSS", 0.0), 1),
                            "cpu_s": st.get("cpu_s"), "wall_s": round(time.monotonic() - t0, 1)}
        return out
    finally:
        if tracker is not None:
            tracker.stop()
        if ctl is not None:
            rc = ctl.stop()
            out["exit_code"] = rc
        api.stop()
        emu.stop()


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


# ----------------------------------------------------------------------------------------------
# report


def table(results: dict[int, dict[str, Any]]) -> str:
    ns = sorted(results)
    rows: list[tuple[str, list[str]]] = []

    def get(n: int, *path: str) -> Any:
        cur: Any = results[n]
        for p in path:
            if not isinstance(cur, dict) or p not in cur:
                return None
            cur = cur[p]
        return cur

    def row(label: str, fn: Any) -> None:
        vals = []
        for n in ns:
            try:
                v = fn(n)
            except (TypeError, ZeroDivisionError, KeyError):
                v = None
            if isinstance(v, str) and v.startswith("None"):
                v = None
            vals.append("-" if v is None else str(v))
        if any(v != "-" for v in vals):
            rows.append((label, vals))

    def fmt_req(d: dict[str, int] | None) -> str | None:
        if not d:
            return None
        short = {"namespaces": "ns", "serviceaccounts": "sa", "secrets": "sec", "configmaps": "cm",
                 "events": "ev", "leases": "lease"}
        agg: Counter[str] = Counter()
        for k, v in d.items():
            verb, _, res = k.partition(" ")
            agg[f"{verb} {short.get(res, res)}"] += v
        return ", ".join(f"{k}:{v}" for k, v in sorted(agg.items()))

    row("bare floor serial: total s (write s)",
        lambda n: f"{get(n, 'bare_serial', 'total_s')} ({get(n, 'bare_serial', 'write_s')})")
    row("bare floor serial: writes/s", lambda n: get(n, "bare_serial", "writes_per_s"))
    row("bare floor parallel: total s (write s)",
        lambda n: f"{get(n, 'bare_parallel', 'total_s')} ({get(n, 'bare_parallel', 'write_s')})"
        f" x{get(n, 'bare_parallel', 'threads')}")
    row("bare floor parallel: writes/s", lambda n: get(n, "bare_parallel", "writes_per_s"))
    row("bare serial + 3 watches: total s (write s)",
        lambda n: f"{get(n, 'bare_watch', 'total_s')} ({get(n, 'bare_watch', 'write_s')})")
    row("cold start -> converged, s", lambda n: get(n, "cold", "time_s"))
    row("  of which startup (to 1st write), s", lambda n: get(n, "cold", "startup_s"))
    row("  of which apply (1st write -> done), s", lambda n: get(n, "cold", "apply_s"))
    row("ratio cold / bare serial (target <= 1.5)",
        lambda n: round(get(n, "cold", "time_s") / get(n, "bare_serial", "total_s"), 2))
    row("ratio apply / bare serial writes",
        lambda n: round(get(n, "cold", "apply_s") / get(n, "bare_serial", "write_s"), 2))
    row("ratio cold / bare serial + watches",
        lambda n: round(get(n, "cold", "time_s") / get(n, "bare_watch", "total_s"), 2))
    row("ratio cold / bare parallel",
        lambda n: round(get(n, "cold", "time_s") / get(n, "bare_parallel", "total_s"), 2))
    row("controller CPU s at convergence", lambda n: get(n, "cold", "cpu_s"))
    row("fake server CPU s during cold start", lambda n: get(n, "cold", "server_cpu_s"))
    row("idle: passes / writes (target 0)",
        lambda n: f"{get(n, 'idle', 'passes'):.0f} / {get(n, 'idle', 'writes')}")
    row("idle: reads per resync pass", lambda n: get(n, "idle", "reads_per_pass"))
    row("new ns -> ready p50 s", lambda n: get(n, "latency", "p50_s"))
    row("new ns -> ready p99 s (target < 1)", lambda n: get(n, "latency", "p99_s"))
    row("new ns -> ready max s", lambda n: get(n, "latency", "max_s"))
    row("  stream: created @ rate/s, served",
        lambda n: f"{get(n, 'latency', 'created')} @ {get(n, 'latency', 'rate_per_s')}/s, "
        f"{get(n, 'latency', 'served')}")
    row("rotation: token calls (= registries 2)", lambda n: get(n, "rotation", "token_calls"))
    row("rotation: Secret updates / namespaces",
        lambda n: f"{get(n, 'rotation', 'secret_updates')} / {get(n, 'rotation', 'namespaces')}")
    row("rotation: waves (Secret writes per namespace)", lambda n: get(n, "rotation", "waves"))
    row("rotation: time to rotate all, s (to last write)",
        lambda n: f"{get(n, 'rotation', 'time_s')} ({get(n, 'rotation', 'time_last_write_s')})")
    row("rotation: max req in 1s: first s / after (qps, burst)",
        lambda n: f"{get(n, 'rotation', 'rate_first_1s')} / {get(n, 'rotation', 'rate_max_1s_after')} "
        f"({get(n, 'rotation', 'qps'):g}, {get(n, 'rotation', 'burst')})")
    row("rotation: sustained req/s; requests beyond a (qps, burst) bucket",
        lambda n: f"{get(n, 'rotation', 'rate_sustained')}; {get(n, 'rotation', 'over_limit')}")
    row("peak RSS MiB (target <= 150 at 10k)", lambda n: get(n, "resources", "peak_rss_mib"))
    row("controller CPU s, whole run", lambda n: get(n, "resources", "cpu_s"))
    row("controller wall s, whole run", lambda n: get(n, "resources", "wall_s"))

    notes = [f"cold-start requests at {n:,} ns: {fmt_req(get(n, 'cold', 'requests'))}"
             for n in ns if get(n, "cold", "requests")]
    notes += [f"rotation requests at {n:,} ns: {fmt_req(get(n, 'rotation', 'requests'))}"
              for n in ns if get(n, "rotation", "requests")]
    head = ["metric"] + [f"{n:,} ns" for n in ns]
    widths = [max(len(head[0]), *(len(r[0]) for r in rows))]
    for i in range(len(ns)):
        widths.append(max(len(head[i + 1]), *(len(r[1][i]) for r in rows)))
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for label, vals in rows:
        cells = [label, *vals]
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |")
    return "\n".join([*lines, "", *notes])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--namespaces", default="100,1000", help="comma-separated namespace counts (e.g. 100,1000,10000)")
    p.add_argument("--sas", type=int, default=3, help="ServiceAccounts per namespace (default, builder, deployer, ...)")
    p.add_argument("--registries", type=int, default=2, choices=[2],
                   help="registries (fixed: one Enterprise Edition instance + Personal Edition)")
    p.add_argument("--kube-qps", type=float, default=1000.0, help="the controller's --kube-qps")
    p.add_argument("--kube-burst", type=int, default=2000, help="the controller's --kube-burst")
    p.add_argument("--resync-period", type=float, default=2.0, help="the controller's --resync-period (seconds)")
    p.add_argument("--idle-periods", type=int, default=4, help="resync periods to watch while idle")
    p.add_argument("--rate", type=float, default=20.0, help="namespace creations per second in the latency stream")
    p.add_argument("--stream-seconds", type=float, default=15.0, help="length of the creation stream")
    p.add_argument("--bare-threads", type=int, default=4, help="threads of the parallel bare client")
    p.add_argument("--bare-watch", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure the serial bare client with the controller's three watches open")
    p.add_argument("--rotation-at", type=float, default=None,
                   help="seconds after the first token fetch when the tokens become due (default: estimated)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="the controller's --log-level")
    p.add_argument("--profile", default=None, metavar="PATH",
                   help="record the controller with py-spy into PATH (collapsed stacks; needs py-spy on PATH)")
    p.add_argument("--keep-logs", default=None, metavar="DIR", help="copy the controller's log into DIR")
    p.add_argument("--skip", default="", help=f"parts to skip, comma-separated: {','.join(PARTS)}")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(PARTS)
    if unknown:
        p.error(f"unknown parts to skip: {', '.join(sorted(unknown))}")
    parts = set(PARTS) - skip
    if parts & {"idle", "latency", "rotation"}:
        parts.add("cold")  # they run on the converged controller
    counts = [int(x) for x in args.namespaces.split(",") if x.strip()]
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="acr-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        for n in counts:
            log(f"N = {n}")
            res: dict[str, Any] = {"namespaces": n, "service_accounts": n * args.sas,
                                   "selected_service_accounts": n * len(SELECTED)}
            if "bare" in parts:
                res["bare_serial"] = run_bare(n, args.sas, 1, workdir)
                log(f"  bare serial: {res['bare_serial']['total_s']}s total, {res['bare_serial']['writes_per_s']} writes/s")
                res["bare_parallel"] = run_bare(n, args.sas, args.bare_threads, workdir)
                log(f"  bare x{args.bare_threads}: {res['bare_parallel']['total_s']}s total, "
                    f"{res['bare_parallel']['writes_per_s']} writes/s")
                if args.bare_watch:
                    res["bare_watch"] = run_bare(n, args.sas, 1, workdir, watch=True)
                    log(f"  bare serial + watches: {res['bare_watch']['total_s']}s total")
            if "cold" in parts:
                hint = res.get("bare_serial", {}).get("total_s")
                res.update(run_controller(n, args, parts, workdir, hint))
            results[n] = res
    if args.json:
        print(json.dumps({"machine": machine(), "args": vars(args), "results": results}, indent=2, sort_keys=True))
    else:
        print(f"machine: {machine()}")
        print(table(results))
    return 0


def machine() -> str:
    cpu = "?"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}"


if __name__ == "__main__":
    sys.exit(main())
