#!/usr/bin/env python3
"""Where the controller's memory goes at N namespaces (tracemalloc, in-process controller).

    .venv/bin/python benchmarks/memory.py --namespaces 10000

The fake API server and the emulator run in a CHILD process (this script with `--serve`), so
everything traced here is the controller's: the same `runtime.Controller` that `acr-helper run`
builds, run in a thread until its caches show every Secret and every selected ServiceAccount
entry, then `--passes` more resync passes. Prints RSS (VmRSS/VmHWM), traced current/peak, and
the top allocation sites grouped by the first acr_helper frame of each traceback (or the first
frame at all when none is ours). tracemalloc slows everything down ~2-3x; use scale.py for
timings.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import tracemalloc

HERE = pathlib.Path(__file__).resolve().parent
REGION = "cn-hangzhou"


def serve(n: int, sas: int) -> int:
    """Child: seed the fake server like scale.py, start the emulator, print the endpoints, wait."""
    sys.path.insert(0, str(HERE))
    import scale  # the same seeding as the scale benchmark

    from acr_helper.kube.fakeserver import FakeKubeAPI
    from acr_helper.tokens.emulator import AliyunEmulator

    emu = AliyunEmulator(region=REGION).start()
    emu.add_instance(scale.EE, region=REGION, name="bench")
    api = FakeKubeAPI().start()
    scale.seed(api, n, sas, 900)
    print(json.dumps({"api": api.url, "emulator": emu.url}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    api.stop()
    emu.stop()
    return 0


def rss() -> dict[str, float]:
    out = {}
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return out


def type_census() -> dict[str, tuple[int, int]]:
    """Count and shallow size per type of every gc-tracked object, plus the str/bytes/int values
    they reference directly (strings are not gc-tracked), each counted once."""
    out: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])
    seen: set[int] = set()
    for obj in gc.get_objects():
        t = type(obj).__qualname__
        rec = out[t]
        rec[0] += 1
        rec[1] += sys.getsizeof(obj)
        for ref in gc.get_referents(obj):
            if isinstance(ref, (str, bytes, int, float)) and id(ref) not in seen:
                seen.add(id(ref))
                r = out[type(ref).__qualname__]
                r[0] += 1
                r[1] += sys.getsizeof(ref)
    return {k: (v[0], v[1]) for k, v in out.items()}


def site(tb: tracemalloc.Traceback) -> str:
    for frame in reversed(tb):  # most recent call first
        f = frame.filename
        if "/acr_helper/" in f and "fakeserver" not in f and "emulator" not in f:
            return f"{f.split('/acr_helper/', 1)[1]}:{frame.lineno}"
    frame = tb[-1]
    return f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--namespaces", type=int, default=10000)
    p.add_argument("--sas", type=int, default=3)
    p.add_argument("--passes", type=int, default=2, help="resync passes after convergence")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--frames", type=int, default=25, help="traceback depth kept by tracemalloc")
    p.add_argument("--no-trace", action="store_true",
                   help="no tracemalloc (real speed and RSS): only RSS and the gc census by type")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        return serve(args.namespaces, args.sas)

    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    child = subprocess.Popen([sys.executable, __file__, "--serve", "--namespaces", str(args.namespaces),
                              "--sas", str(args.sas)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None
        urls = json.loads(child.stdout.readline())
        return measure(args, urls)
    finally:
        child.terminate()
        child.wait(30)


def measure(args: argparse.Namespace, urls: dict[str, str]) -> int:
    import tempfile

    from acr_helper.metrics import Metrics
    from acr_helper.runtime import Controller
    from acr_helper.settings import KubeSettings, RuntimeSettings, ServerSettings, Settings, TokenSettings

    n = args.namespaces
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = pathlib.Path(tmp) / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": urls["api"]}}],
            "users": [{"name": "admin", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "admin"}}]}))
        settings = Settings(
            kube=KubeSettings(kubeconfig=str(kubeconfig), qps=0.0, burst=1),
            tokens=TokenSettings(region=REGION, cr_endpoint=urls["emulator"], sts_endpoint=urls["emulator"],
                                 ecs_metadata_endpoint=urls["emulator"]),
            runtime=RuntimeSettings(resync_period=1.0, debounce=0.2),
            server=ServerSettings(metrics_bind_address="127.0.0.1:0"),
        )
        before = rss()
        gc.collect()
        if not args.no_trace:
            tracemalloc.start(args.frames)
        ctl = Controller(settings, metrics=Metrics(), environ={}, install_signal_handlers=False)
        t = threading.Thread(target=ctl.run, daemon=True)
        t0 = time.monotonic()
        t.start()

        def converged() -> bool:
            c = ctl.cache
            if c is None or not c.synced():
                return False
            view = c.snapshot()
            secrets = sum(1 for s in view.secrets.values() if s.owned)
            entries = sum(1 for a in view.service_accounts.values() if "acr-credential-helper" in a.image_pull_secrets)
            return bool(secrets >= n and entries >= 2 * n)

        while not converged():
            time.sleep(0.5)
            if time.monotonic() - t0 > 1800:
                raise SystemExit("not converged after 30 min")
        t_conv = time.monotonic() - t0
        passes0 = ctl.metrics.reconcile_total.labels(result="success")._value.get()
        while ctl.metrics.reconcile_total.labels(result="success")._value.get() < passes0 + args.passes:
            time.sleep(0.2)
        gc.collect()
        after = rss()
        census = type_census()
        snap = tracemalloc.take_snapshot() if not args.no_trace else None
        current, peak = tracemalloc.get_traced_memory()
        ctl.request_stop()
        t.join(30)
    tracemalloc.stop()
    print(f"namespaces={n} x {args.sas} ServiceAccounts; converged in {t_conv:.1f}s"
          f"{'' if args.no_trace else ' (under tracemalloc)'}")
    print(f"RSS before the controller: {before}; after: {after}")
    print(f"{'MiB':>7} {'objects':>8}  type (gc-tracked objects + their direct str/bytes members, shallow sizes)")
    for name, (count, size) in sorted(census.items(), key=lambda kv: -kv[1][1])[: args.top]:
        print(f"{size / 2**20:7.2f} {count:8d}  {name}")
    if snap is None:
        return 0

    groups: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    for stat in snap.statistics("traceback"):
        key = site(stat.traceback)
        groups[key] += stat.size
        counts[key] += stat.count
    total = sum(groups.values())
    print(f"traced: current {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB; "
          f"kept at the end: {total / 2**20:.1f} MiB")
    print(f"{'MiB':>7} {'blocks':>8}  site (first acr_helper frame)")
    for key, size in groups.most_common(args.top):
        print(f"{size / 2**20:7.2f} {counts[key]:8d}  {key}")
    return 0




if __name__ == "__main__":
    sys.exit(main())
