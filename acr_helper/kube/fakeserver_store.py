"""The object store of the fake Kubernetes API server: indexes, resourceVersions, history, watchers.

One ``threading.RLock`` guards everything. Stored object dicts are never mutated after they are
committed (every write builds a new dict), so readers may serialise them outside the lock.
"""

from __future__ import annotations

import builtins
import copy
import secrets as _random
import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from acr_helper.kube.fakeserver_util import (
    BY_KEY,
    MODIFIED_MSG,
    RESOURCES,
    ApiError,
    JsonDict,
    Requirement,
    ResourceType,
    already_exists,
    bad_request,
    conflict,
    exact_name,
    exact_namespace,
    fields_match,
    invalid,
    labels_match,
    normalize_secret,
    not_found,
    status_body,
    validate_name,
)

NAMESPACES = BY_KEY["namespaces"]


class Event(NamedTuple):
    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    obj: JsonDict
    prev: JsonDict | None


CLOSE = object()  # end the stream cleanly (terminating chunk)
CUT = object()  # close the socket abruptly


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_rv(obj: JsonDict, rv: int) -> JsonDict:
    out = dict(obj)
    out["metadata"] = {**obj.get("metadata", {}), "resourceVersion": str(rv)}
    return out


@dataclass(eq=False)
class Watcher:
    """One open watch stream: a filter and a FIFO of pending items."""

    rt: ResourceType
    namespace: str | None
    label_reqs: tuple[Requirement, ...]
    field_reqs: tuple[Requirement, ...]
    bookmarks: bool
    user: str = ""
    items: deque[Any] = field(default_factory=deque)
    cond: threading.Condition = field(default_factory=threading.Condition)
    done: bool = False

    def matches(self, obj: JsonDict) -> bool:
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.label_reqs and not labels_match(self.label_reqs, meta.get("labels")):
            return False
        return not self.field_reqs or fields_match(self.field_reqs, obj)

    def offer(self, ev: Event) -> None:
        """Filter an event like the watch cache does (an object leaving the filter is DELETED)."""
        cur_ok = ev.type != "DELETED" and self.matches(ev.obj)
        old_ok = ev.prev is not None and self.matches(ev.prev)
        if cur_ok and old_ok:
            self.push({"type": "MODIFIED", "object": ev.obj})
        elif cur_ok:
            self.push({"type": "ADDED", "object": ev.obj})
        elif old_ok:
            assert ev.prev is not None
            self.push({"type": "DELETED", "object": _with_rv(ev.prev, ev.rv)})

    def push(self, item: Any) -> None:
        with self.cond:
            if self.done:
                return
            self.items.append(item)
            if item is CLOSE or item is CUT:
                self.done = True
            self.cond.notify()

    def pop(self, timeout: float) -> Any:
        """The next item, or None after ``timeout`` seconds without one."""
        with self.cond:
            if not self.items:
                self.cond.wait(max(0.0, timeout))
            return self.items.popleft() if self.items else None


class Store:
    def __init__(self, *, history_limit: int, auto_create_namespaces: bool,
                 terminating_namespaces: bool = False, namespace_deletion_delay: float = 0.5) -> None:
        self.lock = threading.RLock()
        self.rv = 0
        self.history_limit = max(1, history_limit)
        self.auto_create_namespaces = auto_create_namespaces
        self.terminating_namespaces = terminating_namespaces
        self.namespace_deletion_delay = namespace_deletion_delay
        self.objs: dict[str, dict[str, dict[str, JsonDict]]] = {r.key: {} for r in RESOURCES}
        self.by_name: dict[str, dict[str, dict[str, JsonDict]]] = {r.key: {} for r in RESOURCES}
        self.history: dict[str, deque[Event]] = {r.key: deque() for r in RESOURCES}
        self.floor: dict[str, int] = {r.key: 0 for r in RESOURCES}
        self.watchers: dict[str, set[Watcher]] = {r.key: set() for r in RESOURCES}
        self.timers: builtins.list[threading.Timer] = []
        self.stopped = False
        self.default_service_accounts = False

    # ------------------------------------------------------------------ internals

    def _lookup(self, rt: ResourceType, namespace: str, name: str) -> JsonDict | None:
        return self.objs[rt.key].get(namespace, {}).get(name)

    def _commit(self, rt: ResourceType, etype: str, obj: JsonDict | None, prev: JsonDict | None) -> JsonDict:
        self.rv += 1
        rv = self.rv
        key = rt.key
        if etype == "DELETED":
            assert prev is not None
            meta = prev["metadata"]
            ns, name = meta.get("namespace", ""), meta["name"]
            obj = _with_rv(prev, rv)
            byns = self.objs[key].get(ns)
            if byns is not None:
                byns.pop(name, None)
                if not byns:
                    del self.objs[key][ns]
            byname = self.by_name[key].get(name)
            if byname is not None:
                byname.pop(ns, None)
                if not byname:
                    del self.by_name[key][name]
        else:
            assert obj is not None
            meta = obj["metadata"]
            meta["resourceVersion"] = str(rv)
            ns, name = meta.get("namespace", ""), meta["name"]
            self.objs[key].setdefault(ns, {})[name] = obj
            self.by_name[key].setdefault(name, {})[ns] = obj
        ev = Event(rv, etype, obj, prev)
        hist = self.history[key]
        if len(hist) >= self.history_limit:
            self.floor[key] = hist.popleft().rv
        hist.append(ev)
        for w in self.watchers[key]:
            w.offer(ev)
        return obj

    def _ensure_namespace(self, rt: ResourceType, namespace: str, name: str) -> None:
        ns = self._lookup(NAMESPACES, "", namespace)
        if ns is None:
            if not self.auto_create_namespaces:
                raise not_found(NAMESPACES, namespace)
            self._create_locked(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": namespace}})
            return
        if ns.get("status", {}).get("phase") == "Terminating":
            details: JsonDict = {"name": name, "kind": rt.plural,
                                 "causes": [{"reason": "NamespaceTerminating", "field": "metadata.namespace",
                                             "message": f"namespace {namespace} is being terminated"}]}
            if rt.group:
                details["group"] = rt.group
            raise ApiError(403, "Forbidden", f'{rt.key} "{name}" is forbidden: unable to create new content '
                           f"in namespace {namespace} because it is being terminated", details)

    def _prepare_new(self, rt: ResourceType, namespace: str | None, obj: Any) -> JsonDict:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request must be a JSON object")
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if obj.get("kind") not in (None, rt.kind) or obj.get("apiVersion") not in (None, rt.api_version):
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) or kind "
                              f"({obj.get('kind')}) does not match the expected {rt.api_version}, {rt.kind}")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent "
                                  "on the request")
            ns = namespace or body_ns or ""
            if not ns:
                raise bad_request("a namespace is required for a namespaced resource")
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        if rt.kind == "Secret":
            normalize_secret(rt, obj)
        return obj

    def _create_locked(self, rt: ResourceType, obj: JsonDict) -> JsonDict:
        meta = obj["metadata"]
        if not meta.get("name"):
            gen = meta.get("generateName")
            if not gen:
                raise invalid(rt, "", "metadata.name", "Required value: name or generateName is required")
            alphabet = "bcdfghjklmnpqrstvwxz2456789"
            meta["name"] = gen + "".join(_random.choice(alphabet) for _ in range(5))
        name = meta["name"]
        validate_name(rt, name)
        if meta.get("resourceVersion"):
            raise ApiError(500, "InternalError", "resourceVersion should not be set on objects to be created")
        ns = meta.get("namespace", "")
        if rt.namespaced:
            self._ensure_namespace(rt, ns, name)
        if self._lookup(rt, ns, name) is not None:
            raise already_exists(rt, name)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        if rt.kind == "Namespace":
            meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": name}
            obj["spec"] = {"finalizers": ["kubernetes"], **(obj.get("spec") or {})}
            obj["status"] = {"phase": "Active"}
            out = self._commit(rt, "ADDED", obj, None)
            if self.default_service_accounts:  # what kube-controller-manager does, but synchronously
                self._create_locked(BY_KEY["serviceaccounts"], {
                    "apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": name}})
            return out
        return self._commit(rt, "ADDED", obj, None)

    def _replace_locked(self, rt: ResourceType, cur: JsonDict, new: JsonDict) -> JsonDict:
        """Write ``new`` over ``cur`` (same key); optimistic concurrency on metadata.resourceVersion."""
        cmeta, nmeta = cur["metadata"], new["metadata"]
        name = cmeta["name"]
        given = nmeta.get("resourceVersion")
        if given and given != cmeta["resourceVersion"]:
            raise conflict(rt, name, MODIFIED_MSG)
        if nmeta.get("name", name) != name:
            raise bad_request(f"the name of the object ({nmeta.get('name')}) does not match the name on "
                              f"the URL ({name})")
        nmeta["name"] = name
        for k in ("uid", "creationTimestamp", "deletionTimestamp"):
            if k in cmeta:
                nmeta[k] = cmeta[k]
            else:
                nmeta.pop(k, None)
        if rt.kind == "Secret" and new.get("type") != cur.get("type"):
            raise invalid(rt, name, "type", f'Invalid value: "{new.get("type")}": field is immutable')
        if rt.kind == "Namespace":
            new["status"] = cur.get("status", {})
            nmeta["labels"] = {**(nmeta.get("labels") or {}), "kubernetes.io/metadata.name": name}
        strip = ("metadata", "status")
        changed = {k: v for k, v in new.items() if k not in strip} != {
            k: v for k, v in cur.items() if k not in strip}
        nmeta["generation"] = cmeta.get("generation", 1) + (1 if changed else 0)
        nmeta["resourceVersion"] = cmeta["resourceVersion"]
        if new == cur:  # a no-op write: like the real server, no new resourceVersion, no event
            return cur
        return self._commit(rt, "MODIFIED", new, cur)

    # ------------------------------------------------------------------ public operations

    def get_or_none(self, rt: ResourceType, namespace: str, name: str) -> JsonDict | None:
        with self.lock:
            return self._lookup(rt, namespace if rt.namespaced else "", name)

    def get(self, rt: ResourceType, namespace: str, name: str) -> JsonDict:
        with self.lock:
            obj = self._lookup(rt, namespace if rt.namespaced else "", name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def find(self, rt: ResourceType, namespace: str | None, label_reqs: tuple[Requirement, ...] = (),
             field_reqs: tuple[Requirement, ...] = ()) -> tuple[builtins.list[JsonDict], int]:
        """Matching objects sorted by (namespace, name), and the current resourceVersion."""
        key = rt.key
        with self.lock:
            rv = self.rv
            name = exact_name(field_reqs)
            if namespace is None:
                namespace = exact_namespace(field_reqs)
            if name is not None:
                byname = self.by_name[key].get(name, {})
                if namespace is not None:
                    one = byname.get(namespace if rt.namespaced else "")
                    cands = [one] if one is not None else []
                else:
                    cands = list(byname.values())
            elif namespace is not None:
                cands = list(self.objs[key].get(namespace if rt.namespaced else "", {}).values())
            else:
                cands = [o for byns in self.objs[key].values() for o in byns.values()]
        if label_reqs or field_reqs:
            cands = [o for o in cands
                     if labels_match(label_reqs, o["metadata"].get("labels")) and fields_match(field_reqs, o)]
        cands.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return cands, rv

    def create(self, rt: ResourceType, namespace: str | None, obj: Any, *, dry_run: bool = False) -> JsonDict:
        obj = self._prepare_new(rt, namespace, obj)
        with self.lock:
            if dry_run:
                return self._dry_run(lambda: self._create_locked(rt, obj))
            return self._create_locked(rt, obj)

    def update(self, rt: ResourceType, namespace: str | None, name: str | None, obj: Any, *,
               dry_run: bool = False) -> JsonDict:
        obj = self._prepare_new(rt, namespace, obj)
        name = name or obj["metadata"].get("name") or ""
        ns = obj["metadata"].get("namespace", "")
        with self.lock:
            cur = self._lookup(rt, ns, name)
            if cur is None:
                raise not_found(rt, name)
            if dry_run:
                return self._dry_run(lambda: self._replace_locked(rt, cur, obj))
            return self._replace_locked(rt, cur, obj)

    def patch(self, rt: ResourceType, namespace: str | None, name: str,
              fn: Callable[[JsonDict], Any], *, create_fn: Callable[[], Any] | None = None,
              dry_run: bool = False) -> tuple[JsonDict, bool]:
        """Apply ``fn`` to a deep copy of the current object and write the result.

        ``create_fn`` (server-side apply) builds the object when it does not exist.
        Returns (object, created).
        """
        ns = namespace if rt.namespaced and namespace else ""
        with self.lock:
            cur = self._lookup(rt, ns, name)
            if cur is None:
                if create_fn is None:
                    raise not_found(rt, name)
                obj = self._prepare_new(rt, namespace, create_fn())
                if dry_run:
                    return self._dry_run(lambda: self._create_locked(rt, obj)), True
                return self._create_locked(rt, obj), True
            new = fn(copy.deepcopy(cur))
            if not isinstance(new, dict) or not isinstance(new.get("metadata"), dict):
                raise ApiError(422, "Invalid",
                               f'{rt.kind} "{name}" is invalid: the patch produced an invalid object')
            if new["metadata"].get("namespace", ns) != ns or new["metadata"].get("name", name) != name:
                raise bad_request("a patch may not change the name or namespace of an object")
            new["metadata"]["namespace"] = ns
            if not rt.namespaced:
                new["metadata"].pop("namespace", None)
            new = self._prepare_new(rt, namespace, new)
            rv = new["metadata"].get("resourceVersion")
            if rv is not None and rv != cur["metadata"]["resourceVersion"]:
                raise conflict(rt, name, MODIFIED_MSG)
            if dry_run:
                return self._dry_run(lambda: self._replace_locked(rt, cur, new)), False
            return self._replace_locked(rt, cur, new), False

    def _dry_run(self, fn: Callable[[], JsonDict]) -> JsonDict:
        """Run a write and undo it (only used under the lock; watchers are detached meanwhile)."""
        saved_rv, saved_watchers = self.rv, self.watchers
        objs = {k: {ns: dict(v) for ns, v in d.items()} for k, d in self.objs.items()}
        by_name = {k: {n: dict(v) for n, v in d.items()} for k, d in self.by_name.items()}
        hist = {k: deque(v) for k, v in self.history.items()}
        floor = dict(self.floor)
        self.watchers = {r.key: set() for r in RESOURCES}
        try:
            return copy.deepcopy(fn())
        finally:
            self.rv, self.watchers = saved_rv, saved_watchers
            self.objs, self.by_name, self.history, self.floor = objs, by_name, hist, floor

    def delete(self, rt: ResourceType, namespace: str | None, name: str,
               preconditions: JsonDict | None = None, *, dry_run: bool = False) -> JsonDict:
        ns = namespace if rt.namespaced and namespace else ""
        with self.lock:
            cur = self._lookup(rt, ns, name)
            if cur is None:
                raise not_found(rt, name)
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != cur["metadata"].get("uid"):
                raise conflict(rt, name, f"Precondition failed: UID in precondition: {pre['uid']}, UID in "
                               f"object meta: {cur['metadata'].get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != cur["metadata"]["resourceVersion"]:
                raise conflict(rt, name, "the ResourceVersion in the precondition "
                               f"({pre['resourceVersion']}) does not match the ResourceVersion in record "
                               f"({cur['metadata']['resourceVersion']}). The object might have been modified")
            if dry_run:
                return cur
            if rt.kind == "Namespace":
                return self._delete_namespace_locked(cur)
            return self._commit(rt, "DELETED", None, cur)

    def _delete_namespace_locked(self, cur: JsonDict) -> JsonDict:
        name = cur["metadata"]["name"]
        if self.terminating_namespaces:
            if cur.get("status", {}).get("phase") == "Terminating":
                return cur
            new = copy.deepcopy(cur)
            new["metadata"]["deletionTimestamp"] = _now()
            new["status"] = {"phase": "Terminating"}
            out = self._commit(NAMESPACES, "MODIFIED", new, cur)
            timer = threading.Timer(self.namespace_deletion_delay, self._finish_namespace, (name,))
            timer.daemon = True
            self.timers.append(timer)
            timer.start()
            return out
        self._purge_namespace_locked(name)
        return self._commit(NAMESPACES, "DELETED", None, cur)

    def _purge_namespace_locked(self, ns: str) -> None:
        for rt in RESOURCES:
            if rt.namespaced:
                doomed = sorted(self.objs[rt.key].get(ns, {}).values(), key=lambda o: o["metadata"]["name"])
                for obj in doomed:
                    self._commit(rt, "DELETED", None, obj)

    def _finish_namespace(self, name: str) -> None:
        with self.lock:
            if self.stopped:
                return
            self._purge_namespace_locked(name)
            cur = self._lookup(NAMESPACES, "", name)
            if cur is not None:
                self._commit(NAMESPACES, "DELETED", None, cur)

    # ------------------------------------------------------------------ watch

    def open_watch(self, rt: ResourceType, namespace: str | None, label_reqs: tuple[Requirement, ...],
                   field_reqs: tuple[Requirement, ...], rv: str | None, bookmarks: bool,
                   user: str = "") -> Watcher:
        start: int | None = None
        if rv not in (None, "", "0"):
            try:
                start = int(rv or 0)
            except ValueError:
                raise bad_request(f"invalid resource version: {rv}") from None
        w = Watcher(rt, namespace if rt.namespaced else None, label_reqs, field_reqs, bookmarks, user)
        key = rt.key
        with self.lock:
            if self.stopped:
                w.push(CLOSE)
                return w
            if start is None:
                items, _ = self.find(rt, w.namespace, label_reqs, field_reqs)
                for obj in items:
                    w.push({"type": "ADDED", "object": obj})
            elif start < self.floor[key]:
                w.push({"type": "ERROR", "object": status_body(
                    410, "Expired", f"too old resource version: {start} ({self.floor[key] + 1})")})
                w.push(CLOSE)
                return w
            elif start > self.rv:
                body = status_body(504, "Timeout", f"Too large resource version: {start}, current: {self.rv}",
                                   {"causes": [{"reason": "ResourceVersionTooLarge",
                                                "message": "Too large resource version"}],
                                    "retryAfterSeconds": 1})
                w.push({"type": "ERROR", "object": body})
                w.push(CLOSE)
                return w
            else:
                pending: builtins.list[Event] = []
                for ev in reversed(self.history[key]):
                    if ev.rv <= start:
                        break
                    pending.append(ev)
                for ev in reversed(pending):
                    w.offer(ev)
            self.watchers[key].add(w)
        return w

    def close_watch(self, w: Watcher) -> None:
        with self.lock:
            self.watchers[w.rt.key].discard(w)

    def bookmark(self, w: Watcher) -> None:
        with self.lock:
            w.push({"type": "BOOKMARK", "object": {"kind": w.rt.kind, "apiVersion": w.rt.api_version,
                                                   "metadata": {"resourceVersion": str(self.rv)}}})

    def _selected(self, resource: str | None) -> builtins.list[Watcher]:
        keys = [k for k in self.watchers if resource is None or k == resource or k.split(".")[0] == resource]
        return [w for k in keys for w in self.watchers[k]]

    def send_bookmarks(self, resource: str | None = None) -> int:
        with self.lock:
            ws = [w for w in self._selected(resource) if w.bookmarks]
            for w in ws:
                self.bookmark(w)
        return len(ws)

    def end_watches(self, resource: str | None, item: Any, error_410: bool = False) -> int:
        with self.lock:
            ws = self._selected(resource)
            for w in ws:
                if error_410:
                    w.push({"type": "ERROR", "object": status_body(
                        410, "Expired", f"too old resource version: {self.rv} ({self.rv + 1})")})
                w.push(item)
                self.watchers[w.rt.key].discard(w)
        return len(ws)

    def compact(self) -> None:
        with self.lock:
            for key in self.history:
                self.history[key].clear()
                self.floor[key] = self.rv

    def stop(self) -> None:
        with self.lock:
            self.stopped = True
            for t in self.timers:
                t.cancel()
        self.end_watches(None, CLOSE)
