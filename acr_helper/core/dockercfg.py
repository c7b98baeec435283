"""Deterministic `.dockerconfigjson` rendering and its content digest. Pure.

The document is `{"auths": {domain: {"auth", "password", "username"}}}` with sorted keys and
compact separators, so the same tokens always give the same bytes (and the same digest), which
is what lets a converged cluster produce an empty plan.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass

from acr_helper.core.model import RegistryToken, Sensitive, sha256_hex


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
