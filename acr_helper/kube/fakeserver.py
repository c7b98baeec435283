"""An in-process fake Kubernetes API server that the official ``kubernetes`` client talks to unchanged.

Stdlib only (``http.server``, ``json``, ``threading``); it never imports the ``kubernetes`` client.
Serves discovery, namespaces, configmaps, secrets, serviceaccounts, core and events.k8s.io events,
and coordination.k8s.io leases over plain HTTP on loopback, with list/watch semantics, optimistic
concurrency, patches, namespace cascade deletion, fault injection, a request log and optional RBAC
enforcement. ``docs/fake-api-server.md`` lists where it differs from a real API server.

    with FakeKubeAPI().start() as api:
        cfg = kubernetes.client.Configuration(host=api.url)
        ...

Run by hand: ``python -m acr_helper.kube.fakeserver --port 8001 --kubeconfig /tmp/kubeconfig``.
"""

from __future__ import annotations

import argparse
import builtins
import copy
import json
import logging
import math
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from acr_helper.kube.fakeserver_rbac import Attributes, RbacAuthorizer, forbidden_message
from acr_helper.kube.fakeserver_store import CLOSE, CUT, Store, Watcher
from acr_helper.kube.fakeserver_util import (
    BY_API_KIND,
    BY_PATH,
    GROUPS,
    RESOURCES,
    VERBS,
    ApiError,
    JsonDict,
    PatchError,
    ResourceType,
    bad_request,
    exact_name,
    first,
    injected_error,
    json_patch,
    load_body,
    merge_patch,
    parse_field_selector,
    parse_label_selector,
    resolve_resource,
    status_body,
    strategic_merge,
)

__all__ = ["ApiError", "FakeKubeAPI", "Fault", "RequestRecord", "main"]

log = logging.getLogger(__name__)

ADMIN_GROUPS = ("system:masters", "system:authenticated")
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
VERSION_INFO = {"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "0" * 40,
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24.0",
                "compiler": "gc", "platform": "linux/amd64"}
PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+json": "apply",
}


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One served request. ``time`` is ``time.monotonic()`` at arrival; ``duration`` in seconds
    (for a watch: until the stream was established)."""

    time: float
    verb: str  # list|watch|get|create|update|patch|delete|deletecollection, or "discovery"
    resource: str  # plural ("secrets", "leases", "events"); "" for discovery
    namespace: str | None
    name: str | None
    code: int
    user: str
    field_selector: str | None
    label_selector: str | None
    duration: float
    group: str = ""


@dataclass
class Fault:
    """An injected fault; ``times=None`` means forever. ``code=None`` injects latency only."""

    verb: str | None
    resource: str | None
    code: int | None
    times: int | None
    retry_after: float | None
    latency: float
    namespace: str | None
    name: str | None
    hits: int = 0

    def matches(self, verb: str, rt: ResourceType | None, namespace: str | None, name: str | None) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.verb is not None and self.verb != verb:
            return False
        if self.resource is not None and (rt is None or self.resource not in (rt.plural, rt.key)):
            return False
        if self.namespace is not None and self.namespace != namespace:
            return False
        return self.name is None or self.name == name


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256
    api: FakeKubeAPI

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients dropping connections is normal here; anything else goes to the log, not stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            return
        log.exception("fake API server: error serving %s", client_address)


@dataclass(slots=True)
class _Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str


class FakeKubeAPI:
    """The fake API server. Thread-safe; direct store methods emit watch events like HTTP writes."""

    def __init__(self, *, history_limit: int = 1000, bookmark_interval: float = 10.0,
                 auto_create_namespaces: bool = False, require_auth: bool = False,
                 system_namespaces: bool = False, default_service_accounts: bool = False,
                 terminating_namespaces: bool = False, namespace_deletion_delay: float = 0.5,
                 default_watch_timeout: float = 1800.0) -> None:
        self.bookmark_interval = bookmark_interval
        self.require_auth = require_auth
        self.default_service_accounts = default_service_accounts
        self.default_watch_timeout = default_watch_timeout
        self._store = Store(history_limit=history_limit, auto_create_namespaces=auto_create_namespaces,
                            terminating_namespaces=terminating_namespaces,
                            namespace_deletion_delay=namespace_deletion_delay)
        self._store.default_service_accounts = default_service_accounts
        self._tokens: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._rbac: RbacAuthorizer | None = None
        self._faults: builtins.list[Fault] = []
        self._fault_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.requests: builtins.list[RequestRecord] = []
        self.denied: builtins.list[RequestRecord] = []
        self.url = ""
        if system_namespaces:
            for ns in SYSTEM_NAMESPACES:
                self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # ------------------------------------------------------------------ lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeKubeAPI:
        httpd = _Server((host, port), _Handler)
        httpd.api = self
        self._httpd = httpd
        self.url = f"http://{host}:{httpd.server_address[1]}"
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fake-kube-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: end every watch, close every connection. Idempotent."""
        self._store.stop()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        time.sleep(0.05)  # let watch handlers write their terminating chunk
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeKubeAPI:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1]) if self.url else 0

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion."""
        return str(self._store.rv)

    # ------------------------------------------------------------------ identity and RBAC

    def add_token(self, token: str, user: str, groups: Iterable[str] = ()) -> None:
        """Map a bearer token to a user. ServiceAccount users get the SA groups automatically."""
        gs = [*groups, "system:authenticated"]
        if user.startswith("system:serviceaccount:"):
            ns = user.split(":")[2]
            gs += ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
        self._tokens[token] = (user, tuple(dict.fromkeys(gs)))

    def enable_rbac(self, documents: Iterable[JsonDict]) -> int:
        """Load RBAC objects (other kinds are ignored) and enforce RBAC from now on. Returns the
        number of RBAC objects loaded. May be called again to add more."""
        if self._rbac is None:
            self._rbac = RbacAuthorizer()
        return self._rbac.load(documents)

    def disable_rbac(self) -> None:
        self._rbac = None

    def write_kubeconfig(self, path: str | Path, *, user: str = "admin", token: str | None = None,
                         groups: Iterable[str] = ()) -> str:
        """Write a kubeconfig (JSON, which is YAML) for ``self.url``. A non-admin ``user`` without a
        ``token`` gets a generated fake token mapped to it. Returns the path."""
        if token is None and user != "admin":
            token = f"fake-token-{user.replace(':', '-')}"
        if token is not None and token not in self._tokens:
            self.add_token(token, user, groups)
        user_entry: JsonDict = {"token": token} if token else {}
        doc = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": user, "user": user_entry}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": user}}],
            "preferences": {},
        }
        Path(path).write_text(json.dumps(doc, indent=2))
        return str(path)

    def _identify(self, header: str | None) -> tuple[str, tuple[str, ...]]:
        if header and header.lower().startswith("bearer "):
            found = self._tokens.get(header[7:].strip())
            if found is None:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            return found
        if self.require_auth:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return "admin", ADMIN_GROUPS

    # ------------------------------------------------------------------ faults

    def inject(self, verb: str | None = None, resource: str | None = None, code: int | None = 500,
               times: int | None = 1, retry_after: float | None = None, latency: float = 0.0,
               namespace: str | None = None, name: str | None = None) -> Fault:
        """Fail (or delay) the next ``times`` matching requests. Returns the fault (see ``hits``)."""
        fault = Fault(verb, resource, code, times, retry_after, latency, namespace, name)
        with self._fault_lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self._fault_lock:
            self._faults.clear()

    def _take_fault(self, verb: str, rt: ResourceType | None, ns: str | None,
                    name: str | None) -> Fault | None:
        with self._fault_lock:
            for f in self._faults:
                if f.matches(verb, rt, ns, name):
                    f.hits += 1
                    return f
        return None

    def cut_watches(self, resource: str | None = None) -> int:
        """Close open watch streams abruptly (no terminating chunk). Returns how many."""
        return self._store.end_watches(resource, CUT)

    def close_watches(self, resource: str | None = None) -> int:
        """End open watch streams cleanly, as a server-side timeout does."""
        return self._store.end_watches(resource, CLOSE)

    def force_watch_error_410(self, resource: str | None = None) -> int:
        """Send ERROR 410 Expired on open watch streams, then end them."""
        return self._store.end_watches(resource, CLOSE, error_410=True)

    def expire_history(self) -> None:
        """Drop all watch history: a watch from any older resourceVersion now gets 410."""
        self._store.compact()

    compact = expire_history

    def send_bookmarks(self, resource: str | None = None) -> int:
        """Send a BOOKMARK now on every open watch that allowed bookmarks. Returns how many."""
        return self._store.send_bookmarks(resource)

    def open_watches(self, resource: str | None = None) -> int:
        with self._store.lock:
            return len(self._store._selected(resource))

    def wait_for_watches(self, count: int = 1, resource: str | None = None, timeout: float = 5.0) -> bool:
        """Block until at least ``count`` watches (of ``resource``) are open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.open_watches(resource) >= count:
                return True
            time.sleep(0.005)
        return False

    # ------------------------------------------------------------------ request log

    def count(self, verb: str | None = None, resource: str | None = None, code: int | None = None,
              namespace: str | None = None, user: str | None = None) -> int:
        return sum(1 for r in list(self.requests)
                   if (verb is None or r.verb == verb) and (resource is None or r.resource == resource)
                   and (code is None or r.code == code) and (namespace is None or r.namespace == namespace)
                   and (user is None or r.user == user))

    def reset_log(self) -> None:
        self.requests = []
        self.denied = []

    # ------------------------------------------------------------------ direct store API

    def create(self, obj: JsonDict) -> JsonDict:
        """Create ``obj`` (resource from apiVersion/kind; namespace from metadata)."""
        rt = _kind_of(obj)
        return copy.deepcopy(self._store.create(rt, None, copy.deepcopy(obj)))

    def get(self, resource: str, namespace: str | None, name: str) -> JsonDict | None:
        try:
            return copy.deepcopy(self._store.get(resolve_resource(resource), namespace or "", name))
        except ApiError:
            return None

    def list(self, resource: str, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> builtins.list[JsonDict]:
        rt = resolve_resource(resource)
        items, _ = self._store.find(rt, namespace or None, parse_label_selector(label_selector),
                                    parse_field_selector(field_selector, rt))
        return copy.deepcopy(items)

    def update(self, obj: JsonDict) -> JsonDict:
        """Replace an object; ``metadata.resourceVersion``, when set, must match (else 409)."""
        rt = _kind_of(obj)
        return copy.deepcopy(self._store.update(rt, None, None, copy.deepcopy(obj)))

    def patch(self, resource: str, namespace: str | None, name: str, patch: Any,
              patch_type: str = "merge") -> JsonDict:
        """Patch with ``patch_type`` merge | json | strategic | apply."""
        rt = resolve_resource(resource)
        fn, create_fn = _patch_fns(rt, patch_type, copy.deepcopy(patch), namespace, name)
        obj, _ = self._store.patch(rt, namespace, name, fn, create_fn=create_fn)
        return copy.deepcopy(obj)

    def delete(self, resource: str, namespace: str | None, name: str, *,
               resource_version: str | None = None) -> JsonDict | None:
        """Delete (a namespace: with its contents). Returns the deleted object, None if absent."""
        rt = resolve_resource(resource)
        pre = {"resourceVersion": resource_version} if resource_version else None
        try:
            return copy.deepcopy(self._store.delete(rt, namespace, name, pre))
        except ApiError as e:
            if e.code == 404:
                return None
            raise

    # ------------------------------------------------------------------ discovery documents

    def _discovery(self, parts: builtins.list[str]) -> JsonDict | str | None:
        host = self.url.split("//", 1)[-1]
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}
        if parts == ["apis"]:
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group_doc(g) for g in GROUPS]}
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in GROUPS:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group_doc(parts[1])}
        is_gv = len(parts) == 3 and parts[0] == "apis" and GROUPS.get(parts[1]) == parts[2]
        if parts == ["api", "v1"] or is_gv:
            group = "" if parts[0] == "api" else parts[1]
            gv = "v1" if not group else f"{group}/{parts[2]}"
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": [_resource_doc(r) for r in RESOURCES if r.group == group]}
        if parts == ["version"]:
            return dict(VERSION_INFO)
        if len(parts) == 1 and parts[0] in ("healthz", "livez", "readyz"):
            return "ok"
        return None


def _group_doc(group: str) -> JsonDict:
    gv = {"groupVersion": f"{group}/{GROUPS[group]}", "version": GROUPS[group]}
    return {"name": group, "versions": [gv], "preferredVersion": gv}


def _resource_doc(r: ResourceType) -> JsonDict:
    verbs = [v for v in VERBS if not (r.kind == "Namespace" and v == "deletecollection")]
    doc: JsonDict = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                     "kind": r.kind, "verbs": verbs}
    if r.short_names:
        doc["shortNames"] = list(r.short_names)
    return doc


def _kind_of(obj: JsonDict) -> ResourceType:
    try:
        return BY_API_KIND[(obj.get("apiVersion", ""), obj.get("kind", ""))]
    except KeyError:
        raise bad_request(f"unsupported apiVersion/kind: {obj.get('apiVersion')}/{obj.get('kind')}") from None


def _patch_fns(rt: ResourceType, patch_type: str, patch: Any, namespace: str | None,
               name: str) -> tuple[Any, Any]:
    def guard(fn: Any) -> Any:
        def run(cur: JsonDict) -> Any:
            try:
                return fn(cur)
            except PatchError as e:
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our "
                               f"request: {e}") from None
        return run

    if patch_type == "json":
        return guard(lambda cur: json_patch(cur, patch)), None
    if not isinstance(patch, dict):
        raise bad_request(f"a {patch_type} patch must be a JSON object")
    if patch_type == "merge":
        return guard(lambda cur: merge_patch(cur, patch)), None
    if patch_type == "strategic":
        return guard(lambda cur: strategic_merge(rt.kind, cur, patch)), None
    if patch_type == "apply":
        meta = patch.get("metadata") or {}
        if meta.get("name", name) != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the "
                              f"URL ({name})")
        if patch.get("kind") != rt.kind or patch.get("apiVersion") != rt.api_version:
            raise bad_request(f"apply patches must set apiVersion {rt.api_version!r} and kind {rt.kind!r}")
        applied = {k: v for k, v in patch.items() if k != "status"}
        applied["metadata"] = {k: v for k, v in meta.items() if k not in ("resourceVersion", "managedFields")}
        if "resourceVersion" in meta:
            applied["metadata"]["resourceVersion"] = meta["resourceVersion"]

        def create() -> JsonDict:
            obj = copy.deepcopy(applied)
            obj["metadata"] = {**obj["metadata"], "name": name}
            obj["metadata"].pop("resourceVersion", None)
            if namespace and rt.namespaced:
                obj["metadata"]["namespace"] = namespace
            return obj

        return guard(lambda cur: strategic_merge(rt.kind, cur, applied)), create
    raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {patch_type!r}")


def _age(ts: str | None) -> str:
    if not ts:
        return "<unknown>"
    secs = max(0, int(time.time() - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


_COLUMNS: dict[str, tuple[tuple[str, Any], ...]] = {
    "Namespace": (("Status", lambda o: o.get("status", {}).get("phase", "")),),
    "Secret": (("Type", lambda o: o.get("type", "")), ("Data", lambda o: len(o.get("data") or {}))),
    "ConfigMap": (("Data", lambda o: len(o.get("data") or {})),),
    "ServiceAccount": (("Secrets", lambda o: len(o.get("secrets") or [])),),
    "Lease": (("Holder", lambda o: (o.get("spec") or {}).get("holderIdentity", "")),),
    "Event": (("Reason", lambda o: o.get("reason", "")),),
}


def as_table(rt: ResourceType, out: JsonDict) -> JsonDict:
    """A ``meta.k8s.io/v1`` Table (what ``kubectl get`` asks for) from an object or a list."""
    items = out.get("items") if out.get("kind", "").endswith("List") else [out]
    extra = _COLUMNS.get(rt.kind, ())
    columns = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}]
    columns += [{"name": n, "type": "string", "format": "", "description": "", "priority": 0} for n, _ in extra]
    columns.append({"name": "Age", "type": "string", "format": "", "description": "", "priority": 0})
    rows = []
    for o in items or []:
        meta = o.get("metadata", {})
        cells = [meta.get("name", ""), *[fn(o) for _, fn in extra], _age(meta.get("creationTimestamp"))]
        rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                "metadata": meta}})
    rv = out.get("metadata", {}).get("resourceVersion", "")
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv},
            "columnDefinitions": columns, "rows": rows}


# ---------------------------------------------------------------------- HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "fake-kube-apiserver"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.api._conn_lock:
            self.server.api._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.api._conn_lock:
                self.server.api._conns.discard(self.connection)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -------------------------------------------------------------- plumbing

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        if isinstance(body, str):
            data, ctype = body.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(body, separators=(",", ":")).encode(), "application/json"
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _route(self, parts: builtins.list[str]) -> _Route | None:
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None
        if rest[0] == "namespaces" and len(rest) >= 3 and (group, version, rest[2]) in BY_PATH:
            rt = BY_PATH[(group, version, rest[2])]
            if not rt.namespaced or len(rest) > 5:
                return None
            return _Route(rt, rest[1], rest[3] if len(rest) > 3 else None, rest[4] if len(rest) > 4 else "")
        rt_or_none = BY_PATH.get((group, version, rest[0]))
        if rt_or_none is None or len(rest) > 3:
            return None
        return _Route(rt_or_none, None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else "")

    # -------------------------------------------------------------- dispatch

    def _handle(self, method: str) -> None:
        api = self.server.api
        t0 = time.monotonic()
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        parts = [p for p in split.path.split("/") if p]
        body = self._body()
        user = "?"
        verb, rt, ns, name = "discovery", None, None, None
        fsel_s, lsel_s = first(query.get("fieldSelector")), first(query.get("labelSelector"))
        code, out, headers = 500, None, None
        try:
            user, groups = api._identify(self.headers.get("Authorization"))
            route = self._route(parts)
            if route is None:
                doc = api._discovery(parts) if method == "GET" else None
                if doc is None:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
                code, out = 200, doc
            else:
                rt, ns, name = route.rt, route.namespace, route.name
                verb = self._verb(method, route, query)
                fault = api._take_fault(verb, rt, ns, name)
                if fault is not None:
                    if fault.latency > 0:
                        time.sleep(fault.latency)
                    if fault.code is not None:
                        raise injected_error(fault.code, rt, name, fault.retry_after)
                self._authorize(user, groups, verb, route, fsel_s, t0)
                if verb == "watch":
                    self._watch(route, query, user, t0, lsel_s, fsel_s)
                    return
                code, out = self._resource(method, verb, route, query, body, user, groups, t0, fsel_s)
                if verb in ("get", "list") and "as=Table" in (self.headers.get("Accept") or ""):
                    out = as_table(rt, out)
        except ApiError as e:
            code, out, headers = e.code, e.status(), e.headers
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        except Exception as e:  # a bug in the fake: answer 500 instead of hanging the client
            log.exception("fake API server: %s %s failed", method, split.path)
            code, out = 500, status_body(500, "InternalError", f"fake API server error: {type(e).__name__}")
        # log before answering, so a client that got its answer always finds its request in the log
        api.requests.append(RequestRecord(t0, verb, rt.plural if rt else "", ns, name, code, user, fsel_s,
                                          lsel_s, time.monotonic() - t0, rt.group if rt else ""))
        try:
            self._send(code, out, headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    @staticmethod
    def _verb(method: str, route: _Route, query: dict[str, builtins.list[str]]) -> str:
        if route.subresource:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.name is None:
            verb = {"GET": "list", "POST": "create", "DELETE": "deletecollection"}.get(method, "")
            if verb == "list" and first(query.get("watch")) in ("true", "1"):
                verb = "watch"
        else:
            verb = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method, "")
        if not verb or (verb == "create" and route.rt.namespaced and route.namespace is None):
            raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the "
                           f"requested resource ({method})")
        return verb

    def _authorize(self, user: str, groups: tuple[str, ...], verb: str, route: _Route, fsel_s: str | None,
                   t0: float, override_verb: str | None = None) -> None:
        api = self.server.api
        rbac = api._rbac
        if rbac is None or "system:masters" in groups:
            return
        rt = route.rt
        v = override_verb or verb
        name = route.name or ""
        if v in ("list", "watch") and fsel_s:
            try:
                name = exact_name(parse_field_selector(fsel_s, rt)) or ""
            except ApiError:
                name = ""
        namespace = route.namespace or ""
        if rt.kind == "Namespace" and route.name:
            namespace = route.name  # RequestInfo: /api/v1/namespaces/{name} carries namespace={name}
        attrs = Attributes(user, groups, v, rt.group, rt.plural, namespace, name)
        if rbac.authorize(attrs):
            return
        msg = forbidden_message(attrs, rt.key)
        rec = RequestRecord(t0, v, rt.plural, route.namespace, name or None, 403, user, fsel_s,
                            None, time.monotonic() - t0, rt.group)
        api.denied.append(rec)
        details: JsonDict = {"name": name, "kind": rt.plural} if name else {"kind": rt.plural}
        if rt.group:
            details["group"] = rt.group
        raise ApiError(403, "Forbidden", msg, details)

    def _resource(self, method: str, verb: str, route: _Route, query: dict[str, builtins.list[str]],
                  body: bytes, user: str, groups: tuple[str, ...], t0: float,
                  fsel_s: str | None) -> tuple[int, Any]:
        store = self.server.api._store
        rt, ns, name = route.rt, route.namespace, route.name
        dry_run = bool(query.get("dryRun"))
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if verb == "get":
            assert name is not None
            return 200, store.get(rt, ns or "", name)
        if verb == "list":
            return 200, self._list(route, query)
        if verb == "create":
            obj = load_body(body, ctype)
            return 201, store.create(rt, ns, obj, dry_run=dry_run)
        if verb == "update":
            obj = load_body(body, ctype)
            if isinstance(obj, dict) and rt.namespaced and isinstance(obj.get("metadata"), dict):
                obj["metadata"].setdefault("name", name)
            return 200, store.update(rt, ns, name, obj, dry_run=dry_run)
        if verb == "patch":
            assert name is not None
            ptype = PATCH_TYPES.get(ctype)
            if ptype is None:
                raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                               f"format - accepted media types include: {', '.join(PATCH_TYPES)}")
            if ptype == "apply" and not first(query.get("fieldManager")):
                raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                               "Required value: is required for apply patch")
            patch = load_body(body, ctype, yaml_ok=ptype == "apply")
            fn, create_fn = _patch_fns(rt, ptype, patch, ns, name)
            if create_fn is not None and store.get_or_none(rt, ns or "", name) is None:
                # the real API server also authorizes `create` (with the name) when apply creates
                self._authorize(user, groups, verb, route, fsel_s, t0, override_verb="create")
            obj, created = store.patch(rt, ns, name, fn, create_fn=create_fn, dry_run=dry_run)
            return (201 if created else 200), obj
        if verb == "delete":
            assert name is not None
            opts = load_body(body, ctype) or {}
            pre = opts.get("preconditions") if isinstance(opts, dict) else None
            dry = dry_run or bool(isinstance(opts, dict) and opts.get("dryRun"))
            obj = store.delete(rt, ns, name, pre, dry_run=dry)
            if rt.kind == "Namespace":
                return 200, obj
            details: JsonDict = {"name": name, "kind": rt.plural, "uid": obj["metadata"].get("uid")}
            if rt.group:
                details["group"] = rt.group
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                         "details": details}
        if verb == "deletecollection":
            items, _ = store.find(rt, ns, parse_label_selector(first(query.get("labelSelector"))),
                                  parse_field_selector(fsel_s, rt))
            deleted = []
            for obj in items:
                meta = obj["metadata"]
                try:
                    deleted.append(store.delete(rt, meta.get("namespace"), meta["name"], dry_run=dry_run))
                except ApiError as e:
                    if e.code != 404:
                        raise
            return 200, {"kind": rt.list_kind, "apiVersion": rt.api_version,
                         "metadata": {"resourceVersion": str(store.rv)}, "items": deleted}
        raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method ({method})")

    def _list(self, route: _Route, query: dict[str, builtins.list[str]]) -> JsonDict:
        store = self.server.api._store
        rt = route.rt
        rv_s = first(query.get("resourceVersion"))
        if rv_s not in (None, "", "0"):
            try:
                rv_i = int(rv_s or 0)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv_s}") from None
            if rv_i > store.rv:
                raise ApiError(504, "Timeout", f"Too large resource version: {rv_i}, current: {store.rv}",
                               {"causes": [{"reason": "ResourceVersionTooLarge",
                                            "message": "Too large resource version"}],
                                "retryAfterSeconds": 1}, {"Retry-After": "1"})
        items, rv = store.find(rt, route.namespace, parse_label_selector(first(query.get("labelSelector"))),
                               parse_field_selector(first(query.get("fieldSelector")), rt))
        meta: JsonDict = {"resourceVersion": str(rv)}
        limit_s, cont = first(query.get("limit")), first(query.get("continue"))
        if cont:
            try:
                token = json.loads(bytes.fromhex(cont))
                start_key = (token["ns"], token["name"])
                meta["resourceVersion"] = str(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid") from None
            items = [o for o in items
                     if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > start_key]
        if limit_s and int(limit_s) > 0 and len(items) > int(limit_s):
            limit = int(limit_s)
            last = items[limit - 1]["metadata"]
            token_doc = {"rv": int(meta["resourceVersion"]), "ns": last.get("namespace", ""),
                         "name": last["name"]}
            meta["continue"] = json.dumps(token_doc).encode().hex()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        strip = ("apiVersion", "kind")
        return {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": meta,
                "items": [{k: v for k, v in o.items() if k not in strip} for o in items]}

    def _watch(self, route: _Route, query: dict[str, builtins.list[str]], user: str, t0: float,
               lsel_s: str | None, fsel_s: str | None) -> None:
        api = self.server.api
        store = api._store
        rt = route.rt
        w = store.open_watch(rt, route.namespace, parse_label_selector(lsel_s),
                             parse_field_selector(fsel_s, rt), first(query.get("resourceVersion")),
                             first(query.get("allowWatchBookmarks")) in ("true", "1"), user)
        timeout_s = first(query.get("timeoutSeconds"))
        timeout = float(timeout_s) if timeout_s else api.default_watch_timeout
        api.requests.append(RequestRecord(t0, "watch", rt.plural, route.namespace, None, 200, user, fsel_s,
                                          lsel_s, time.monotonic() - t0, rt.group))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        try:
            abrupt = self._stream(w, time.monotonic() + timeout, api.bookmark_interval)
        except OSError:
            abrupt = True
        finally:
            store.close_watch(w)  # before the last chunk: a client seeing the end finds no open watch
        if not abrupt:
            try:
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                abrupt = True
        if abrupt:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _stream(self, w: Watcher, deadline: float, interval: float) -> bool:
        """Write events until the deadline or a CLOSE/CUT; True when the end must be abrupt."""
        store = self.server.api._store
        next_bm = time.monotonic() + interval if w.bookmarks and interval > 0 else math.inf
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            item = w.pop(min(deadline, next_bm) - now)
            if item is None:
                if time.monotonic() >= next_bm:
                    store.bookmark(w)
                    next_bm = time.monotonic() + interval
                continue
            if item is CUT:
                return True
            if item is CLOSE:
                break
            data = json.dumps(item, separators=(",", ":")).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        return False


# ---------------------------------------------------------------------- CLI


def main(argv: builtins.list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m acr_helper.kube.fakeserver",
                                     description="Run the fake Kubernetes API server on loopback.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the server here")
    parser.add_argument("--history-limit", type=int, default=1000)
    parser.add_argument("--bookmark-interval", type=float, default=10.0)
    parser.add_argument("--auto-create-namespaces", action="store_true")
    parser.add_argument("--rbac", action="append", default=[], metavar="YAML",
                        help="enforce RBAC from these manifest files (repeatable)")
    args = parser.parse_args(argv)
    api = FakeKubeAPI(history_limit=args.history_limit, bookmark_interval=args.bookmark_interval,
                      auto_create_namespaces=args.auto_create_namespaces)
    if args.rbac:
        import yaml

        docs = [d for path in args.rbac for d in yaml.safe_load_all(Path(path).read_text()) if d]
        api.enable_rbac(docs)
    api.start(args.host, args.port)
    print(f"fake Kubernetes API server at {api.url}", flush=True)
    if args.kubeconfig:
        print(f"kubeconfig: {api.write_kubeconfig(args.kubeconfig)}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
