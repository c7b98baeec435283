"""RBAC authorization for the fake Kubernetes API server, modelled on the real RBAC authorizer.

Rules come from Role / ClusterRole / RoleBinding / ClusterRoleBinding documents as parsed from YAML
(plain dicts). Implemented like ``k8s.io/kubernetes/plugin/pkg/auth/authorizer/rbac``: a
ClusterRoleBinding grants its ClusterRole everywhere; a RoleBinding grants its Role or ClusterRole
only inside the binding's namespace; ``resourceNames`` match only requests that carry a name (for
list/watch the name comes from ``fieldSelector=metadata.name=<name>``; a POST create never has one).
Not implemented: aggregated ClusterRoles (``aggregationRule``), ``nonResourceURLs`` (discovery is
always allowed), escalation checks on RBAC writes (RBAC objects are not served at all).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Attributes:
    """What the real API server's RequestInfo + user info would carry to the authorizer."""

    user: str
    groups: tuple[str, ...]
    verb: str
    api_group: str
    resource: str
    namespace: str  # "" = cluster scope
    name: str  # "" = no name
    subresource: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    verbs: frozenset[str]
    api_groups: frozenset[str]
    resources: frozenset[str]
    resource_names: frozenset[str]

    def allows(self, a: Attributes) -> bool:
        if "*" not in self.verbs and a.verb not in self.verbs:
            return False
        if "*" not in self.api_groups and a.api_group not in self.api_groups:
            return False
        combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        if not ("*" in self.resources or combined in self.resources
                or (a.subresource and (f"*/{a.subresource}" in self.resources
                                       or f"{a.resource}/*" in self.resources))):
            return False
        if self.resource_names:
            return bool(a.name) and a.name in self.resource_names
        return True


def _rules(doc: JsonDict) -> tuple[Rule, ...]:
    out = []
    for r in doc.get("rules") or ():
        if r.get("nonResourceURLs"):
            continue
        out.append(Rule(frozenset(r.get("verbs") or ()), frozenset(r.get("apiGroups") or ()),
                        frozenset(r.get("resources") or ()), frozenset(r.get("resourceNames") or ())))
    return tuple(out)


def _subject_applies(subject: JsonDict, user: str, groups: tuple[str, ...], binding_ns: str) -> bool:
    kind = subject.get("kind")
    if kind == "User":
        return subject.get("name") == user
    if kind == "Group":
        return subject.get("name") in groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user == f"system:serviceaccount:{ns}:{subject.get('name')}"
    return False


class RbacAuthorizer:
    """Holds loaded RBAC objects; ``authorize`` answers like the RBAC authorizer (allow or no opinion)."""

    def __init__(self) -> None:
        self.cluster_roles: dict[str, tuple[Rule, ...]] = {}
        self.roles: dict[tuple[str, str], tuple[Rule, ...]] = {}
        self.cluster_bindings: list[JsonDict] = []
        self.bindings: list[JsonDict] = []

    def load(self, documents: Iterable[Any]) -> int:
        """Load RBAC documents (others, e.g. Deployments from the same manifest, are ignored)."""
        count = 0
        for doc in documents:
            if not isinstance(doc, dict):
                continue
            if doc.get("kind") == "List":
                count += self.load(doc.get("items") or ())
                continue
            if not str(doc.get("apiVersion", "")).startswith("rbac.authorization.k8s.io/"):
                continue
            meta = doc.get("metadata") or {}
            kind = doc.get("kind")
            if kind == "ClusterRole":
                self.cluster_roles[meta["name"]] = _rules(doc)
            elif kind == "Role":
                self.roles[(meta.get("namespace") or "default", meta["name"])] = _rules(doc)
            elif kind == "ClusterRoleBinding":
                self.cluster_bindings.append(doc)
            elif kind == "RoleBinding":
                self.bindings.append(doc)
            else:
                continue
            count += 1
        return count

    def authorize(self, a: Attributes) -> bool:
        for b in self.cluster_bindings:
            ref = b.get("roleRef") or {}
            if ref.get("kind") != "ClusterRole":
                continue
            if any(_subject_applies(s, a.user, a.groups, "") for s in b.get("subjects") or ()):
                if any(rule.allows(a) for rule in self.cluster_roles.get(ref.get("name", ""), ())):
                    return True
        if not a.namespace:
            return False
        for b in self.bindings:
            bns = (b.get("metadata") or {}).get("namespace") or "default"
            if bns != a.namespace:
                continue
            if not any(_subject_applies(s, a.user, a.groups, bns) for s in b.get("subjects") or ()):
                continue
            ref = b.get("roleRef") or {}
            if ref.get("kind") == "ClusterRole":
                rules = self.cluster_roles.get(ref.get("name", ""), ())
            elif ref.get("kind") == "Role":
                rules = self.roles.get((bns, ref.get("name", "")), ())
            else:
                rules = ()
            if any(rule.allows(a) for rule in rules):
                return True
        return False


def forbidden_message(a: Attributes, qualified_resource: str) -> str:
    """The exact message shape of the real API server's 403 for a resource request."""
    resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
    if a.namespace:
        why = (f'User "{a.user}" cannot {a.verb} resource "{resource}" in API group "{a.api_group}" '
               f'in the namespace "{a.namespace}"')
    else:
        why = (f'User "{a.user}" cannot {a.verb} resource "{resource}" in API group "{a.api_group}" '
               "at the cluster scope")
    if a.name:
        return f'{qualified_resource} "{a.name}" is forbidden: {why}'
    return f"{qualified_resource} is forbidden: {why}"
