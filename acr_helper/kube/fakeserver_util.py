"""Pure helpers of the fake Kubernetes API server: resource table, Status bodies, selectors, patches.

Stdlib only. See ``docs/fake-api-server.md`` for where these differ from a real API server.
"""

from __future__ import annotations

import base64
import copy
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]


# --------------------------------------------------------------------------- resources


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One served resource (group/version/plural)."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Store key and qualified resource name (``secrets``, ``leases.coordination.k8s.io``)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]

RESOURCES: tuple[ResourceType, ...] = (
    ResourceType("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",)),
    ResourceType("", "v1", "configmaps", "configmap", "ConfigMap", True, ("cm",)),
    ResourceType("", "v1", "secrets", "secret", "Secret", True),
    ResourceType("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", True, ("sa",)),
    ResourceType("", "v1", "events", "event", "Event", True, ("ev",)),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    ResourceType("events.k8s.io", "v1", "events", "event", "Event", True, ("ev",)),
)

BY_PATH: dict[tuple[str, str, str], ResourceType] = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KEY: dict[str, ResourceType] = {r.key: r for r in RESOURCES}
BY_API_KIND: dict[tuple[str, str], ResourceType] = {(r.api_version, r.kind): r for r in RESOURCES}
GROUPS: dict[str, str] = {r.group: r.version for r in RESOURCES if r.group}


def resolve_resource(name: str) -> ResourceType:
    """Find a resource by key (``secrets``, ``events.events.k8s.io``), ``group/plural`` or Kind."""
    if name in BY_KEY:
        return BY_KEY[name]
    if "/" in name:
        group, _, plural = name.rpartition("/")
        for r in RESOURCES:
            if r.group == group and r.plural == plural:
                return r
    for r in RESOURCES:
        if name in (r.kind, r.singular) or name in r.short_names:
            return r
    raise KeyError(f"unknown resource {name!r}")


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An API error carrying a Kubernetes ``Status`` body. ``str()`` is the message only."""

    def __init__(self, code: int, reason: str, message: str, details: JsonDict | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> JsonDict:
        return status_body(self.code, self.reason, self.message, self.details)


def status_body(code: int, reason: str, message: str, details: JsonDict | None = None) -> JsonDict:
    body: JsonDict = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code}
    if details is not None:
        body["details"] = details
    return body


def _details(rt: ResourceType, name: str) -> JsonDict:
    d: JsonDict = {"name": name, "kind": rt.plural}
    if rt.group:
        d["group"] = rt.group
    return d


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rt.key} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{rt.key} "{name}" already exists', _details(rt, name))


def conflict(rt: ResourceType, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rt.key} "{name}": {why}',
                    _details(rt, name))


MODIFIED_MSG = "the object has been modified; please apply your changes to the latest version and try again"


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(rt: ResourceType, name: str, field: str, message: str) -> ApiError:
    details = _details(rt, name)
    details["kind"] = rt.kind
    details["causes"] = [{"reason": "FieldValueInvalid", "message": message, "field": field}]
    return ApiError(422, "Invalid", f'{rt.kind} "{name}" is invalid: {field}: {message}', details)


REASONS: dict[int, str] = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
    409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


def injected_error(code: int, rt: ResourceType | None, name: str | None,
                   retry_after: float | None) -> ApiError:
    reason = REASONS.get(code, "Unknown")
    what = rt.key if rt else "request"
    message = f"injected fault: {code} {reason} for {what}" + (f' "{name}"' if name else "")
    headers: dict[str, str] = {}
    details: JsonDict | None = None
    if retry_after is not None:
        headers["Retry-After"] = str(max(0, round(retry_after)))
        details = {"retryAfterSeconds": max(0, round(retry_after))}
    if rt is not None:
        details = {**(details or {}), **_details(rt, name or "")}
    return ApiError(code, reason, message, details, headers)


# --------------------------------------------------------------------------- names

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def validate_name(rt: ResourceType, name: str) -> None:
    if rt.kind == "Namespace":
        if len(name) > 63 or not _LABEL.match(name):
            raise invalid(rt, name, "metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 label '
                          "must consist of lower case alphanumeric characters or '-', and must start "
                          "and end with an alphanumeric character")
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        raise invalid(rt, name, "metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                      "must consist of lower case alphanumeric characters, '-' or '.', and must start and "
                      "end with an alphanumeric character")


# --------------------------------------------------------------------------- selectors


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: tuple[str, ...] = ()


def _split_top(s: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


_SET_RE = re.compile(r"^([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)$")
_EQ_RE = re.compile(r"^([^\s!=(),]+)\s*(==|!=|=)\s*([^\s!=(),]*)$")
_KEY_RE = re.compile(r"^(!?)\s*([^\s!=(),]+)$")


def parse_label_selector(s: str | None) -> tuple[Requirement, ...]:
    """Parse a label selector (``a=b,c!=d,e in (f,g),h notin (i),j,!k``); raise 400 on bad syntax."""
    if not s:
        return ()
    reqs = []
    for term in _split_top(s):
        m = _SET_RE.match(term)
        if m:
            vals = tuple(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(m.group(1), m.group(2), vals))
            continue
        m = _EQ_RE.match(term)
        if m:
            op = "=" if m.group(2) in ("=", "==") else "!="
            reqs.append(Requirement(m.group(1), op, (m.group(3),)))
            continue
        m = _KEY_RE.match(term)
        if m:
            reqs.append(Requirement(m.group(2), "!exists" if m.group(1) else "exists"))
            continue
        raise bad_request(f"unable to parse requirement: {term!r}")
    return tuple(reqs)


def labels_match(reqs: tuple[Requirement, ...], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for r in reqs:
        present = r.key in labels
        value = labels.get(r.key)
        if r.op == "=":
            ok = present and value == r.values[0]
        elif r.op == "!=":
            ok = not present or value != r.values[0]
        elif r.op == "in":
            ok = present and value in r.values
        elif r.op == "notin":
            ok = not present or value not in r.values
        elif r.op == "exists":
            ok = present
        else:
            ok = not present
        if not ok:
            return False
    return True


FIELDS: dict[str, tuple[str, ...]] = {
    "Secret": ("type",),
    "Namespace": ("status.phase",),
    "Event": ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
              "regarding.kind", "regarding.name", "regarding.namespace", "regarding.uid"),
}


def parse_field_selector(s: str | None, rt: ResourceType) -> tuple[Requirement, ...]:
    """Parse a field selector (``metadata.name=x,metadata.namespace!=y``); 400 on unsupported fields."""
    if not s:
        return ()
    reqs = []
    allowed = ("metadata.name", "metadata.namespace", *FIELDS.get(rt.kind, ()))
    for term in _split_top(s):
        m = _EQ_RE.match(term)
        if not m:
            raise bad_request(f"invalid selector: '{s}'; can't understand '{term}'")
        if m.group(1) not in allowed:
            raise bad_request(f'field label not supported: {m.group(1)}')
        op = "=" if m.group(2) in ("=", "==") else "!="
        reqs.append(Requirement(m.group(1), op, (m.group(3),)))
    return tuple(reqs)


def field_value(obj: JsonDict, path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if path == "source" and isinstance(cur, dict):
        cur = cur.get("component")
    return "" if cur is None else str(cur)


def fields_match(reqs: tuple[Requirement, ...], obj: JsonDict) -> bool:
    for r in reqs:
        v = field_value(obj, r.key)
        if (v == r.values[0]) != (r.op == "="):
            return False
    return True


def exact_name(reqs: tuple[Requirement, ...]) -> str | None:
    """``metadata.name`` required by an ``=`` requirement (RequiresExactMatch in apimachinery)."""
    for r in reqs:
        if r.key == "metadata.name" and r.op == "=":
            return r.values[0]
    return None


def exact_namespace(reqs: tuple[Requirement, ...]) -> str | None:
    for r in reqs:
        if r.key == "metadata.namespace" and r.op == "=":
            return r.values[0]
    return None


# --------------------------------------------------------------------------- patches


class PatchError(Exception):
    pass


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch; returns a new value, inputs untouched."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _resolve(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for t in tokens:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"path not found: /{'/'.join(tokens)}")
            cur = cur[t]
        elif isinstance(cur, list):
            try:
                cur = cur[int(t)]
            except (ValueError, IndexError):
                raise PatchError(f"path not found: /{'/'.join(tokens)}") from None
        else:
            raise PatchError(f"path not found: /{'/'.join(tokens)}")
    return cur


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, test, move, copy); returns a new document."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid operation {op!r}")
        kind, tokens = op["op"], _pointer(op["path"])
        if kind == "test":
            if _resolve(doc, tokens) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed")
            continue
        if kind in ("move", "copy"):
            from_tokens = _pointer(op.get("from", ""))
            value = copy.deepcopy(_resolve(doc, from_tokens))
            if kind == "move":
                doc = _remove(doc, from_tokens)
            doc = _add(doc, tokens, value)
        elif kind == "add":
            doc = _add(doc, tokens, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, tokens)
        elif kind == "replace":
            _resolve(doc, tokens)
            if not tokens:
                doc = copy.deepcopy(op.get("value"))
            else:
                parent = _resolve(doc, tokens[:-1])
                if isinstance(parent, list):
                    parent[int(tokens[-1])] = copy.deepcopy(op.get("value"))
                else:
                    parent[tokens[-1]] = copy.deepcopy(op.get("value"))
        else:
            raise PatchError(f"unknown operation {kind!r}")
    return doc


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                idx = int(last)
            except ValueError:
                raise PatchError(f"invalid index {last!r}") from None
            if idx < 0 or idx > len(parent):
                raise PatchError(f"index {idx} out of range")
            parent.insert(idx, value)
    else:
        raise PatchError("cannot add to a scalar")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError("cannot remove the root")
    parent = _resolve(doc, tokens[:-1])
    _resolve(doc, tokens)
    if isinstance(parent, list):
        del parent[int(tokens[-1])]
    else:
        del parent[tokens[-1]]
    return doc


# Lists that merge under strategic merge patch / server-side apply, by (kind, path) -> merge key.
# Everything else is atomic (replaced), which is what the real schemas say for our kinds:
# notably ServiceAccount.imagePullSecrets is `+listType=atomic` with NO patchMergeKey (unlike
# PodSpec.imagePullSecrets), so a strategic-merge patch REPLACES it on a real server.
MERGE_KEYS: dict[str, dict[str, str]] = {
    "*": {"metadata.ownerReferences": "uid"},
    "ServiceAccount": {"secrets": "name"},
}
PRIMITIVE_MERGE: dict[str, set[str]] = {"*": {"metadata.finalizers"}}


def strategic_merge(kind: str, target: Any, patch: Any, path: str = "") -> Any:
    """Strategic merge patch for our kinds (see ``MERGE_KEYS``); returns a new value."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys") or k.startswith("$setElementOrder/"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            field = k.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(v, list):
                result[field] = [x for x in result[field] if x not in v]
            continue
        sub = f"{path}.{k}" if path else k
        if v is None:
            result.pop(k, None)
            continue
        merge_key = MERGE_KEYS.get(kind, {}).get(sub) or MERGE_KEYS["*"].get(sub)
        if isinstance(v, list) and merge_key:
            result[k] = _merge_keyed(kind, result.get(k), v, merge_key, sub)
        elif isinstance(v, list) and (sub in PRIMITIVE_MERGE.get(kind, set()) or sub in PRIMITIVE_MERGE["*"]):
            cur: list[Any] = list(result.get(k) or [])
            result[k] = cur + [x for x in v if x not in cur]
        elif isinstance(v, dict):
            merged = strategic_merge(kind, result.get(k), v, sub)
            if merged is None:
                result.pop(k, None)
            else:
                result[k] = merged
        else:
            result[k] = copy.deepcopy(v)
    return result


def _merge_keyed(kind: str, current: Any, patch: list[Any], key: str, path: str) -> list[Any]:
    out = [copy.deepcopy(x) for x in (current or [])]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            out.append(copy.deepcopy(item))
            continue
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
            continue
        if idx is None:
            out.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
        else:
            out[idx] = strategic_merge(kind, out[idx], item, path)
    return out


# --------------------------------------------------------------------------- object defaults


def normalize_secret(rt: ResourceType, obj: JsonDict) -> None:
    """Merge ``stringData`` into ``data`` (base64), check base64 and the dockerconfigjson type."""
    name = obj.get("metadata", {}).get("name", "")
    data = obj.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise bad_request("Secret.data must be an object")
    for k, v in data.items():
        if not isinstance(v, str):
            raise bad_request(f"Secret.data[{k}]: expected a base64 string")
        try:
            base64.b64decode(v, validate=True)
        except ValueError:
            raise bad_request(f"Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data "
                              f"in data[{k}]") from None
    string_data = obj.pop("stringData", None)
    if isinstance(string_data, dict):
        data = dict(data)
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
    if data:
        obj["data"] = data
    else:
        obj.pop("data", None)
    obj.setdefault("type", "Opaque")
    if obj["type"] == "kubernetes.io/dockerconfigjson":
        raw = (obj.get("data") or {}).get(".dockerconfigjson")
        if raw is None:
            raise invalid(rt, name, "data[.dockerconfigjson]", "Required value")
        try:
            json.loads(base64.b64decode(raw))
        except ValueError:
            raise invalid(rt, name, "data[.dockerconfigjson]",
                          'Invalid value: "<secret contents redacted>": not valid JSON') from None


def load_body(raw: bytes, content_type: str, yaml_ok: bool = False) -> Any:
    if raw and ("protobuf" in content_type or "cbor" in content_type):
        raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                       f"accepted media types include: application/json, application/yaml ({content_type})")
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        if yaml_ok:
            import yaml  # PyYAML is a project dependency; only needed for YAML apply bodies

            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError:
                raise bad_request(f"the body of the request was not valid YAML ({content_type})") from None
        raise bad_request(f"the body of the request was in an unknown format ({content_type})") from None


def first(values: Iterable[str] | None) -> str | None:
    for v in values or ():
        return v
    return None


Matcher = Callable[[JsonDict], bool]
