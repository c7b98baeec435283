"""The bare-write floor: a plain `kubernetes` client making only the minimum writes.

Run by `benchmarks/scale.py` as a child process (so it has its own interpreter and GIL, exactly
like the controller it is compared with), against a fresh fake API server seeded the same way:

* one untimed-in-the-write-phase LIST of ServiceAccounts (it "already holds" the objects),
* then N Secret creates (POST) + one PUT per selected ServiceAccount (the object it holds, with
  our entry appended), serially or from `--threads` threads.

Requests go through the same raw-JSON path the controller uses (`ApiClient.param_serialize` +
`call_api`, JSON decoded), with no rate limit, no retries, no caches, no logging. Prints one JSON
line: timings in seconds (relative to this process's start) and counts.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

T_START = time.monotonic()

SECRET_NAME = "acr-credential-helper"


def fake_dockerconfigjson(domains: list[str]) -> str:
    """A payload the size of the controller's: one auths entry per domain, fake credentials."""
    auths = {}
    for d in domains:
        user, password = "cr_temp_user", "fake-registry-token-" + "x" * 28  # the emulator token length (48)
        auths[d] = {"username": user, "password": password,
                    "auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    return json.dumps({"auths": auths}, sort_keys=True, separators=(",", ":"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--service-accounts", default="default,builder")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--watch", action="store_true",
                   help="also keep the controller's watches open (Namespaces, ServiceAccounts, our Secrets), "
                        "each read and JSON-decoded by its own thread: the floor of a list-watch controller")
    p.add_argument("--domains", default="bench-registry.cn-hangzhou.cr.aliyuncs.com,"
                   "bench-registry-vpc.cn-hangzhou.cr.aliyuncs.com,registry.cn-hangzhou.aliyuncs.com")
    args = p.parse_args(argv)

    from kubernetes import client as k8s
    from kubernetes import config as k8s_config

    t_import = time.monotonic() - T_START
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=args.kubeconfig, client_configuration=cfg,  # type: ignore[no-untyped-call]
                                persist_config=False)
    cfg.connection_pool_maxsize = max(4, args.threads)
    api = k8s.ApiClient(cfg)

    def req(method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        m, url, h, payload, post = api.param_serialize(method=method, resource_path=path, query_params=query or [],
                                                       header_params=headers, body=body,
                                                       auth_settings=["BearerToken"])
        resp = api.call_api(m, url, h, payload, post, _request_timeout=(10.0, 30.0))
        data = resp.read()  # type: ignore[no-untyped-call]
        if not 200 <= resp.status <= 299:
            raise RuntimeError(f"{method} {path}: HTTP {resp.status}")
        return json.loads(data) if data else {}

    selected = set(args.service_accounts.split(","))
    t_list0 = time.monotonic() - T_START
    sas = req("GET", "/api/v1/serviceaccounts")["items"]
    t_list1 = time.monotonic() - T_START
    by_ns: dict[str, list[dict[str, Any]]] = {}
    for sa in sas:
        if sa["metadata"]["name"] in selected:
            by_ns.setdefault(sa["metadata"]["namespace"], []).append(sa)
    payload = base64.b64encode(fake_dockerconfigjson(args.domains.split(",")).encode()).decode()
    writes = 0
    lock = threading.Lock()

    def one_namespace(ns: str) -> None:
        nonlocal writes
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": SECRET_NAME, "namespace": ns,
                               "labels": {"app.kubernetes.io/managed-by": "acr-helper"},
                               "annotations": {"acr-helper/expires-at": "2030-01-01T00:00:00Z"}},
                  "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": payload}}
        req("POST", f"/api/v1/namespaces/{ns}/secrets", secret)
        n = 1
        for sa in by_ns[ns]:
            sa = dict(sa)
            sa["imagePullSecrets"] = [*(sa.get("imagePullSecrets") or []), {"name": SECRET_NAME}]
            req("PUT", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa['metadata']['name']}", sa)
            n += 1
        with lock:
            writes += n

    watchers: list[threading.Thread] = []
    events = {"n": 0}
    if args.watch:
        import urllib3

        http = urllib3.PoolManager()
        base = cfg.host.rstrip("/")

        def watch(path: str) -> None:
            r = http.request("GET", f"{base}{path}", preload_content=False, timeout=urllib3.Timeout(read=3600))
            buf = b""
            for chunk in r.stream(65536):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        json.loads(line)
                        events["n"] += 1

        rv = str(req("GET", "/api/v1/namespaces", query=[("limit", "1")])["metadata"]["resourceVersion"])
        for path in ("/api/v1/namespaces", "/api/v1/serviceaccounts",
                     f"/api/v1/secrets?fieldSelector=metadata.name%3D{SECRET_NAME}"):
            sep = "&" if "?" in path else "?"
            t = threading.Thread(target=watch, args=(f"{path}{sep}watch=true&resourceVersion={rv}"
                                                     "&allowWatchBookmarks=true&timeoutSeconds=3600",), daemon=True)
            t.start()
            watchers.append(t)
        time.sleep(0.2)

    t_w0 = time.monotonic() - T_START
    namespaces = sorted(by_ns)
    if args.threads <= 1:
        for ns in namespaces:
            one_namespace(ns)
    else:
        with ThreadPoolExecutor(args.threads) as pool:
            for f in [pool.submit(one_namespace, ns) for ns in namespaces]:
                f.result()
    t_w1 = time.monotonic() - T_START
    api.close()  # type: ignore[no-untyped-call]
    print(json.dumps({"import_s": round(t_import, 3), "list_s": round(t_list1 - t_list0, 3),
                      "write_start_s": round(t_w0, 3), "write_s": round(t_w1 - t_w0, 3),
                      "done_s": round(t_w1, 3), "writes": writes, "threads": args.threads, "watch_events": events["n"],
                      "namespaces": len(namespaces)}))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
