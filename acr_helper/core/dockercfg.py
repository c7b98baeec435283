"""Deterministic `.dockerconfigjson` rendering and its content digest. Pure.

The document is `{"auths": {domain: {"auth", "password", "username"}}}` with sorted keys and
compact separators, so the same tokens always give the same bytes (and the same digest), which
is what lets a converged cluster produce an empty plan.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from acr_helper.core.model import RegistryToken, Sensitive, sha256_hex

_TS = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class RenderResult:
    """A rendered `.dockerconfigjson` plus what the renderer had to say about its input."""

    content: Sensitive  # the JSON document (contains passwords)
    digest: str  # sha256 hex of the document's UTF-8 bytes
    #: registry -> the domains it contributed, in input order of registries
    contributions: tuple[tuple[str, tuple[str, ...]], ...]
    warnings: tuple[str, ...] = ()

    @property
    def registries(self) -> tuple[str, ...]:
        """The registries that contributed at least one domain, in input order."""
        return tuple(reg for reg, domains in self.contributions if domains)

    @property
    def empty(self) -> bool:
        return not self.registries


def _auth_entry(token: RegistryToken) -> dict[str, str]:
    password = token.password.reveal()
    auth = base64.b64encode(f"{token.username}:{password}".encode()).decode("ascii")
    return {"auth": auth, "password": password, "username": token.username}


def _serialize(auths: dict[str, dict[str, str]]) -> str:
    return json.dumps({"auths": auths}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def render(tokens: Iterable[RegistryToken]) -> RenderResult:
    """Render `tokens` (in priority order) into one `.dockerconfigjson` document.

    Every domain of every token gets an entry. When two tokens claim the same domain, the
    earlier token (the earlier registry in configuration order) wins and a warning names both.
    The output does not depend on the order of domains within a token, nor on the order of
    tokens except for that tie-break.
    """
    auths: dict[str, dict[str, str]] = {}
    owner: dict[str, str] = {}
    contributions: list[tuple[str, tuple[str, ...]]] = []
    warnings: list[str] = []
    for token in tokens:
        entry = _auth_entry(token)
        mine: list[str] = []
        for domain in sorted(set(token.domains)):
            if not domain:
                continue
            if domain in owner:
                if owner[domain] != token.registry:
                    warnings.append(
                        f"domain {domain} is claimed by registries {owner[domain]} and {token.registry}; "
                        f"using {owner[domain]} (the earlier one)"
                    )
                continue
            owner[domain] = token.registry
            auths[domain] = entry
            mine.append(domain)
        contributions.append((token.registry, tuple(mine)))
    content = _serialize(auths)
    return RenderResult(
        content=Sensitive(content),
        digest=sha256_hex(content.encode("utf-8")),
        contributions=tuple(contributions),
        warnings=tuple(warnings),
    )


def render_dockerconfigjson(tokens: Iterable[RegistryToken]) -> Sensitive:
    """The rendered document only (see `render` for the digest and warnings)."""
    return render(tokens).content


def content_digest(content: Sensitive) -> str:
    """sha256 hex of the document's UTF-8 bytes (equal to the digest of the Secret's decoded data)."""
    return sha256_hex(content.reveal().encode("utf-8"))


def _ts(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(_TS)


def token_index(tokens: Iterable[RegistryToken], result: RenderResult) -> str:
    """The TOKENS_ANNOTATION value: per contributing registry, its domains, expiry and issue time."""
    by_key = {t.registry: t for t in tokens}
    index: dict[str, dict[str, object]] = {}
    for reg, domains in result.contributions:
        if not domains or reg not in by_key:
            continue
        tok = by_key[reg]
        entry: dict[str, object] = {"domains": list(domains), "expires": _ts(tok.expires_at),
                                    "obtained": _ts(tok.obtained_at)}
        if tok.credential_id:
            entry["identity"] = tok.credential_id
        index[reg] = entry
    return json.dumps(index, sort_keys=True, separators=(",", ":"))


def adopt(dockerconfigjson: str, tokens_annotation: str, *, source: str = "adopted") -> dict[str, RegistryToken]:
    """The tokens an existing Secret holds, per registry (the inverse of `render` + `token_index`).

    Only registries whose every domain carries one and the same credential are returned; anything
    malformed is skipped (the caller then simply fetches a fresh token). Expired tokens are
    returned too: the caller decides what is still valid at its `now`.
    """
    try:
        auths = json.loads(dockerconfigjson).get("auths", {})
        index = json.loads(tokens_annotation)
    except (ValueError, AttributeError, RecursionError):
        return {}
    if not isinstance(auths, Mapping) or not isinstance(index, Mapping):
        return {}
    out: dict[str, RegistryToken] = {}
    for registry, meta in index.items():
        try:
            domains = tuple(sorted(str(d) for d in meta["domains"]))
            expires = datetime.strptime(meta["expires"], _TS).replace(tzinfo=UTC)
            obtained = datetime.strptime(meta["obtained"], _TS).replace(tzinfo=UTC)
            creds = {(auths[d]["username"], auths[d]["password"]) for d in domains}
            identity = str(meta.get("identity", ""))
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if len(creds) != 1 or not domains:
            continue
        username, password = creds.pop()
        if not username or not password:
            continue
        out[str(registry)] = RegistryToken(
            registry=str(registry),
            username=str(username),
            password=Sensitive(str(password)),
            expires_at=expires,
            obtained_at=obtained,
            domains=domains,
            source=source,
            credential_id=identity,
        )
    return out
