"""Server-side verification of the two Alibaba Cloud request signatures the SDKs produce.

Stdlib only. Used by :mod:`acr_helper.tokens.emulator`; also handy in unit tests (a test can sign a
request the way an SDK does and check the emulator's verdict).

* ACS3-HMAC-SHA256 ("v3"): what ``alibabacloud_tea_openapi`` sends for cr 2018-12-01, cr 2016-06-07
  (``GET /tokens``) and sts 2015-04-01 AssumeRole (alibaba-api.md §3.1).
* RPC v1 HMAC-SHA1: what ``alibabacloud_credentials`` sends for AssumeRole (GET, all in the query) and
  what ``OpenApiClient.do_rpcrequest`` sends with an AK (alibaba-api.md §3.2). The credentials library
  encodes with ``quote_plus`` (space -> ``+``) while tea-openapi uses ``quote(safe='~')`` (space ->
  ``%20``); both spellings are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_AUTH_RE = re.compile(
    r"^(?P<algo>\S+)\s+Credential=(?P<ak>[^,]*),\s*SignedHeaders=(?P<signed>[^,]*),\s*Signature=(?P<sig>\S*)$"
)


@dataclass(frozen=True)
class Acs3Authorization:
    """The parsed ``Authorization`` header of a v3 request (the signature itself is not secret)."""

    algorithm: str
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_acs3_authorization(value: str) -> Acs3Authorization | None:
    """Parse ``ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=a;b,Signature=hex``; None if malformed."""
    m = _AUTH_RE.match(value.strip())
    if m is None:
        return None
    signed = tuple(h.strip().lower() for h in m.group("signed").split(";") if h.strip())
    return Acs3Authorization(m.group("algo"), m.group("ak"), signed, m.group("sig"))


def acs3_canonical_query(query: Mapping[str, str]) -> str:
    """``k=quote(v, safe='~')`` joined by ``&`` in key order (values are the *decoded* ones)."""
    return "&".join(f"{k}={quote(query[k], safe='~')}" for k in sorted(query))


def acs3_string_to_sign(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    signed_headers: tuple[str, ...],
    content_sha256: str,
) -> str:
    """Build the v3 string to sign; ``headers`` maps lower-case names to (joined) values."""
    canonical_headers = "".join(f"{h}:{headers.get(h, '').strip()}\n" for h in signed_headers)
    canonical_request = (
        f"{method.upper()}\n{path or '/'}\n{acs3_canonical_query(query)}\n{canonical_headers}\n"
        f"{';'.join(signed_headers)}\n{content_sha256}"
    )
    return f"{ACS3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"


def acs3_signature(secret: str, string_to_sign: str) -> str:
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def sign_acs3(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    access_key_id: str,
    secret: str,
    body: bytes = b"",
) -> dict[str, str]:
    """Client-side helper (tests, manual runs): return ``headers`` plus a valid v3 ``authorization``.

    Every ``x-acs-*`` header, ``host`` and ``content-type`` present are signed, like the SDK.
    """
    out = {k.lower(): v for k, v in headers.items()}
    out["x-acs-content-sha256"] = hashlib.sha256(body).hexdigest()
    signed = tuple(sorted(h for h in out if h.startswith("x-acs-") or h in {"host", "content-type"}))
    sts = acs3_string_to_sign(method, path, query, out, signed, out["x-acs-content-sha256"])
    out["authorization"] = (
        f"{ACS3_ALGORITHM} Credential={access_key_id},SignedHeaders={';'.join(signed)},"
        f"Signature={acs3_signature(secret, sts)}"
    )
    return out


def rpc_v1_signatures(method: str, params: Mapping[str, str], secret: str) -> tuple[str, ...]:
    """The RPC v1 HMAC-SHA1 signatures ``params`` (without ``Signature``) may carry.

    Two spellings: tea-openapi's ``quote(safe='~')`` and the credentials library's ``quote_plus``.
    """
    keys = sorted(k for k in params if k != "Signature")
    variants = (
        "&".join(f"{quote(k, safe='~')}={quote(params[k], safe='~')}" for k in keys),
        "&".join(f"{quote_plus(k)}={quote_plus(params[k])}" for k in keys),
    )
    out: list[str] = []
    for canonical in variants:
        string_to_sign = f"{method.upper()}&%2F&{quote_plus(canonical, safe='~')}"
        digest = hmac.new(
            (secret + "&").encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1
        ).digest()
        sig = base64.b64encode(digest).decode("ascii")
        if sig not in out:
            out.append(sig)
    return tuple(out)


def rpc_v1_signature(method: str, params: Mapping[str, str], secret: str) -> str:
    """Client-side helper: the tea-openapi spelling of the RPC v1 signature."""
    return rpc_v1_signatures(method, params, secret)[0]


def constant_time_in(candidate: str, accepted: tuple[str, ...]) -> bool:
    ok = False
    for a in accepted:
        ok |= hmac.compare_digest(candidate.encode("utf-8"), a.encode("utf-8"))
    return ok
