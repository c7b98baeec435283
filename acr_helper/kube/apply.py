"""Executes a Plan. Makes no decisions beyond the safety checks that need the live object.

Secrets
* create: POST. 409 AlreadyExists -> read it: ours -> update it (if the content differs); not
  ours -> fail with a conflict message (never overwrite someone else's Secret).
* update: a JSON merge patch of our fields with the plan's resourceVersion as precondition (so
  labels/annotations/data keys others added survive). 409 -> re-read: still ours -> PUT on the
  fresh object and resourceVersion; gone -> create; not ours -> fail.
* delete: read the live object; delete only if it still carries our label, with
  preconditions uid + resourceVersion of what we checked (never on the plan's word alone).
  404 = done.
ServiceAccounts (imagePullSecrets is an atomic list: never merged by the server)
* With the snapshot the plan came from (`apply(..., view=...)`): one merge patch of the whole
  list, recomputed with merge_pull_secrets from the viewed list, under the viewed resourceVersion
  as precondition. Otherwise, or on 409:
* GET, recompute with merge_pull_secrets (every entry we do not own stays, in order), skip the
  write if nothing changes, PUT with the resourceVersion precondition; 409 -> again on fresh
  state (up to 5 attempts, small jittered sleeps).

Failures (403, 404, terminating namespaces, transport errors) become results, never exceptions.
Messages carry the API's Status message only; no Secret content ever.
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from acr_helper.core.model import (
    DOCKERCONFIGJSON_KEY,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    Action,
    ClusterView,
    DesiredSecret,
    Plan,
    ServiceAccountInfo,
    sha256_hex,
)
from acr_helper.kube.client import TRANSPORT_ERRORS, KubeClients, error_message, status_of
from acr_helper.kube.convert import pull_secret_names
from acr_helper.settings import KubeSettings

log = logging.getLogger(__name__)

SA_ATTEMPTS = 5
SECRET_ATTEMPTS = 3


@dataclass(frozen=True)
class ApplyResult:
    action: Action
    ok: bool
    code: int
    message: str
    skipped: bool = False


def _merge_pull_secrets(existing: tuple[str, ...], add: str | None, remove: str | None) -> tuple[str, ...]:
    try:
        from acr_helper.core.diff import merge_pull_secrets
    except ImportError:  # pragma: no cover - fallback with the same semantics
        out = [n for n in existing if remove is None or n != remove]
        if add is not None and add not in out:
            out.append(add)
        return tuple(out)
    return merge_pull_secrets(existing, add, remove)


def _owned(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return isinstance(labels, Mapping) and labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


def _live_digest(obj: Mapping[str, Any]) -> str:
    value = (obj.get("data") or {}).get(DOCKERCONFIGJSON_KEY)
    if not isinstance(value, str):
        return ""
    try:
        return sha256_hex(base64.b64decode(value))
    except ValueError:
        return ""


def _content_matches(live: Mapping[str, Any], desired: DesiredSecret) -> bool:
    meta = live.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return (
        _live_digest(live) == desired.digest
        and live.get("type") == desired.type
        and all(labels.get(k) == v for k, v in desired.labels.items())
        and all(annotations.get(k) == v for k, v in desired.annotations.items())
    )


class _Failed(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Applier:
    def __init__(
        self,
        clients: KubeClients,
        settings: KubeSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._clients = clients
        self._settings = settings
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not crypto
        self._view: ClusterView | None = None  # the snapshot of the plan being applied

    # -- entry point ---------------------------------------------------------------------------

    def apply(
        self,
        plan: Plan,
        *,
        should_continue: Callable[[], bool] = lambda: True,
        view: ClusterView | None = None,
    ) -> list[ApplyResult]:
        """Execute the actions in order. With `view` (the snapshot the plan was made from),
        ServiceAccount edits start with one optimistic write on the viewed resourceVersion instead
        of GET + PUT; any conflict falls back to read-modify-update on fresh state."""
        self._view = view
        actions = plan.actions
        workers = max(1, self._settings.apply_workers)
        if workers == 1 or len(actions) < 2 * workers:
            lanes = [list(enumerate(actions))]
        else:
            # one lane per worker; all of a namespace's actions stay in one lane, in plan order
            # (its Secret is written before its ServiceAccounts are pointed at it)
            lanes = [[] for _ in range(workers)]
            for i, action in enumerate(actions):
                lanes[zlib.crc32(action.namespace.encode()) % workers].append((i, action))
        results: list[ApplyResult | None] = [None] * len(actions)
        stopped = threading.Event()

        def run(lane: list[tuple[int, Action]]) -> None:
            secret_failed: set[str] = set()  # namespaces whose Secret write failed (lane-local)
            for i, action in lane:
                if not stopped.is_set() and not should_continue():
                    stopped.set()
                if stopped.is_set():
                    results[i] = ApplyResult(action, False, 0, "not attempted: stopping", skipped=True)
                    continue
                if action.kind == "ServiceAccount" and action.action == "add" and action.namespace in secret_failed:
                    # never point a ServiceAccount at a Secret we could not write (or that is someone else's)
                    results[i] = ApplyResult(action, False, 0, "not attempted: the namespace's pull Secret "
                                             "could not be written", skipped=True)
                    continue
                seen = view.service_accounts.get((action.namespace, action.name)) if view is not None else None
                result = self.apply_one(action, seen_sa=seen)
                if action.kind == "Secret" and action.action in ("create", "update") and not result.ok:
                    secret_failed.add(action.namespace)
                results[i] = result

        lanes = [lane for lane in lanes if lane]
        if len(lanes) <= 1:
            for lane in lanes:
                run(lane)
        else:
            with ThreadPoolExecutor(max_workers=len(lanes), thread_name_prefix="apply") as pool:
                for future in [pool.submit(run, lane) for lane in lanes]:
                    future.result()
        return [r for r in results if r is not None]

    def apply_one(self, action: Action, *, seen_sa: ServiceAccountInfo | None = None) -> ApplyResult:
        try:
            if action.kind == "Secret":
                if action.action == "create":
                    code, msg = self._create_secret(action)
                elif action.action == "update":
                    code, msg = self._update_secret(action)
                elif action.action == "delete":
                    code, msg = self._delete_secret(action)
                else:
                    raise _Failed(0, f"unsupported action {action.action} on a Secret")
            elif action.kind == "ServiceAccount":
                if action.action in ("add", "remove"):
                    code, msg = self._edit_service_account(action, seen_sa)
                else:
                    raise _Failed(0, f"unsupported action {action.action} on a ServiceAccount")
            else:
                raise _Failed(0, f"unsupported kind {action.kind}")
        except _Failed as exc:
            return ApplyResult(action, False, exc.code, self._scrub(action, exc.message))
        except ApiException as exc:
            return ApplyResult(action, False, status_of(exc), self._scrub(action, error_message(exc)))
        except TRANSPORT_ERRORS as exc:
            return ApplyResult(action, False, 0, f"transport error: {type(exc).__name__}")
        except Exception as exc:  # report, never raise into the loop
            log.exception("unexpected failure applying %s", action.describe())
            return ApplyResult(action, False, 0, f"internal error: {type(exc).__name__}")
        return ApplyResult(action, True, code, msg)

    @staticmethod
    def _scrub(action: Action, message: str) -> str:
        """Belt and braces: an error message must never carry Secret content."""
        if action.secret is not None:
            plain = action.secret.dockerconfigjson.reveal()
            b64 = base64.b64encode(plain.encode()).decode()
            for needle in (plain, b64):
                if needle and needle in message:
                    message = message.replace(needle, "<redacted>")
        return message

    # -- raw calls -----------------------------------------------------------------------------

    def _req(self, method: str, path: str, body: Any = None, query: Any = None) -> Any:
        return self._clients.request(method, path, body=body, query=query)

    @staticmethod
    def _secret_path(namespace: str, name: str = "") -> str:
        base = f"/api/v1/namespaces/{namespace}/secrets"
        return f"{base}/{name}" if name else base

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            return self._req("GET", path)  # type: ignore[no-any-return]
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    # -- Secrets -------------------------------------------------------------------------------

    @staticmethod
    def _secret_body(desired: DesiredSecret, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The object to write: `base` (the live object, if any) with our fields set."""
        payload = base64.b64encode(desired.dockerconfigjson.reveal().encode("utf-8")).decode("ascii")
        if base is None:
            return {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": desired.name,
                    "namespace": desired.namespace,
                    "labels": dict(desired.labels),
                    "annotations": dict(desired.annotations),
                },
                "type": desired.type,
                "data": {DOCKERCONFIGJSON_KEY: payload},
            }
        obj = dict(base)
        meta = dict(obj.get("metadata") or {})
        meta.pop("managedFields", None)
        meta["labels"] = {**(meta.get("labels") or {}), **desired.labels}
        meta["annotations"] = {**(meta.get("annotations") or {}), **desired.annotations}
        obj["metadata"] = meta
        obj["apiVersion"], obj["kind"] = "v1", "Secret"
        obj["type"] = desired.type
        obj["data"] = {**(obj.get("data") or {}), DOCKERCONFIGJSON_KEY: payload}
        obj.pop("stringData", None)
        return obj

    def _desired(self, action: Action) -> DesiredSecret:
        if action.secret is None:
            raise _Failed(0, f"{action.action} Secret without content (a plan bug)")
        return action.secret

    def _create_secret(self, action: Action) -> tuple[int, str]:
        desired = self._desired(action)
        try:
            self._req("POST", self._secret_path(action.namespace), self._secret_body(desired))
            return 201, "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        # AlreadyExists: someone (a previous run, the add-on, a user) has a Secret with our name
        return self._update_live(action, desired, created_race=True)

    def _update_secret(self, action: Action) -> tuple[int, str]:
        desired = self._desired(action)
        seen = self._view.secrets.get(action.namespace) if self._view is not None else None
        if action.resource_version and (seen is None or seen.type == desired.type):
            # one request: a JSON merge patch of our fields only (others' labels, annotations and
            # data keys survive) with the plan's resourceVersion as precondition (409 on change)
            payload = base64.b64encode(desired.dockerconfigjson.reveal().encode("utf-8")).decode("ascii")
            patch = {
                "metadata": {
                    "resourceVersion": action.resource_version,
                    "labels": dict(desired.labels),
                    "annotations": dict(desired.annotations),
                },
                "data": {DOCKERCONFIGJSON_KEY: payload},
            }
            try:
                self._clients.request(
                    "PATCH",
                    self._secret_path(action.namespace, action.name),
                    body=patch,
                    content_type="application/merge-patch+json",
                )
                return 200, "updated"
            except ApiException as exc:
                if exc.status not in (409, 404):
                    raise
        return self._update_live(action, desired, created_race=False)

    def _update_live(self, action: Action, desired: DesiredSecret, *, created_race: bool) -> tuple[int, str]:
        """Read-check-write on fresh state: update only a Secret that is ours."""
        path = self._secret_path(action.namespace, action.name)
        for attempt in range(SECRET_ATTEMPTS):
            live = self._get(path)
            if live is None:
                try:
                    self._req("POST", self._secret_path(action.namespace), self._secret_body(desired))
                    return 201, "created"
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    continue
            if not _owned(live):
                raise _Failed(
                    409,
                    f"Secret {action.namespace}/{action.name} exists and is not managed by "
                    f"{MANAGED_BY_VALUE} (no {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} label): left alone",
                )
            if _content_matches(live, desired):
                return 200, "already up to date"
            if live.get("type") != desired.type:
                # a Secret's type is immutable: replace our own Secret (delete under uid and
                # resourceVersion preconditions, then create), never someone else's
                meta = live.get("metadata") or {}
                try:
                    self._req("DELETE", path, {
                        "apiVersion": "v1", "kind": "DeleteOptions",
                        "preconditions": {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
                    })
                except ApiException as exc:
                    if exc.status not in (409, 404):
                        raise
                    self._backoff(attempt)
                    continue
                continue  # the next round creates it with the right type
            try:
                self._req("PUT", path, self._secret_body(desired, live))
                return 200, "updated" if not created_race else "updated (it already existed)"
            except ApiException as exc:
                if exc.status not in (409, 404):
                    raise
            self._backoff(attempt)
        raise _Failed(409, f"Secret {action.namespace}/{action.name}: still conflicting after "
                           f"{SECRET_ATTEMPTS} attempts")

    def _delete_secret(self, action: Action) -> tuple[int, str]:
        path = self._secret_path(action.namespace, action.name)
        for attempt in range(SECRET_ATTEMPTS):
            live = self._get(path)
            if live is None:
                return 404, "already gone"
            if not _owned(live):
                raise _Failed(
                    409,
                    f"Secret {action.namespace}/{action.name} no longer carries our label: not deleted",
                )
            meta = live.get("metadata") or {}
            body = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "preconditions": {"uid": meta.get("uid"), "resourceVersion": meta.get("resourceVersion")},
            }
            try:
                self._req("DELETE", path, body)
                return 200, "deleted"
            except ApiException as exc:
                if exc.status == 404:
                    return 404, "already gone"
                if exc.status != 409:
                    raise
            self._backoff(attempt)
        raise _Failed(409, f"Secret {action.namespace}/{action.name}: delete preconditions kept failing")

    # -- ServiceAccounts ---------------------------------------------------------------------

    def _edit_service_account(self, action: Action, seen: ServiceAccountInfo | None = None) -> tuple[int, str]:
        entry = action.pull_secret or self._settings.secret_name
        add = entry if action.action == "add" else None
        remove = entry if action.action == "remove" else None
        path = f"/api/v1/namespaces/{action.namespace}/serviceaccounts/{action.name}"
        if seen is not None and seen.resource_version:
            merged = _merge_pull_secrets(seen.image_pull_secrets, add, remove)
            if merged == seen.image_pull_secrets:
                return 200, "no change needed"
            # one optimistic write: the whole (atomic) list, only if the object is still the
            # version we saw (resourceVersion precondition); any change meanwhile -> 409 -> GET+PUT
            patch = {"metadata": {"resourceVersion": seen.resource_version},
                     "imagePullSecrets": [{"name": n} for n in merged]}
            try:
                self._clients.request("PATCH", path, body=patch, content_type="application/merge-patch+json")
                return 200, "added" if add else "removed"
            except ApiException as exc:
                if exc.status not in (409, 404):
                    raise
                if exc.status == 404 and remove:
                    return 404, "ServiceAccount gone"
        for attempt in range(SA_ATTEMPTS):
            live = self._get(path)
            if live is None:
                if action.action == "remove":
                    return 404, "ServiceAccount gone"
                raise _Failed(404, f"ServiceAccount {action.namespace}/{action.name} not found")
            entries = list(live.get("imagePullSecrets") or [])
            names = pull_secret_names(entries)
            merged = _merge_pull_secrets(names, add, remove)
            if merged == names:
                return 200, "no change needed"
            live["imagePullSecrets"] = _rebuild_entries(entries, merged)
            live.setdefault("apiVersion", "v1")
            live.setdefault("kind", "ServiceAccount")
            (live.get("metadata") or {}).pop("managedFields", None)
            try:
                self._req("PUT", path, live)  # carries metadata.resourceVersion: a precondition
                return 200, "added" if add else "removed"
            except ApiException as exc:
                if exc.status != 409:
                    raise
            log.debug("ServiceAccount %s/%s changed under us; retrying on fresh state",
                      action.namespace, action.name)
            self._backoff(attempt)
        raise _Failed(409, f"ServiceAccount {action.namespace}/{action.name}: still conflicting after "
                           f"{SA_ATTEMPTS} attempts")

    def _backoff(self, attempt: int) -> None:
        self._sleep(min(0.5, 0.02 * (2**attempt)) * (0.5 + self._rng.random()))


def _rebuild_entries(entries: list[Any], merged: tuple[str, ...]) -> list[Any]:
    """The new imagePullSecrets list: every original entry object kept as it was (including
    entries without a name), in order, minus the removed ones; new names appended."""
    remaining = list(merged)
    out: list[Any] = []
    for e in entries:
        name = e.get("name") if isinstance(e, Mapping) else None
        if not name:
            out.append(e)  # not a name entry: not ours to judge
            continue
        if remaining and remaining[0] == name:
            out.append(e)
            remaining.pop(0)
        elif name in remaining:
            # keep relative order robustly even if merged reordered (it never does)
            out.append(e)
            remaining.remove(name)
    out.extend({"name": n} for n in remaining)
    return out
