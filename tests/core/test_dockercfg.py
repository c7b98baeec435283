"""Rendering `.dockerconfigjson`: shape, determinism, domain tie-breaks, digest."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta

from acr_helper.core.dockercfg import content_digest, render, render_dockerconfigjson
from acr_helper.core.model import RegistryToken, Sensitive

NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)


def token(
    registry: str, *domains: str, user: str = "cr_temp_user", password: str = "fake-token-1"
) -> RegistryToken:
    return RegistryToken(
        registry=registry,
        username=user,
        password=Sensitive(password),
        expires_at=NOW + timedelta(hours=1),
        obtained_at=NOW,
        domains=tuple(domains),
    )


def test_renders_every_domain_with_username_password_and_base64_auth():
    doc = json.loads(render_dockerconfigjson([token("cri-a", "a.example.com", "a-vpc.example.com")]).reveal())
    assert set(doc) == {"auths"}
    assert set(doc["auths"]) == {"a.example.com", "a-vpc.example.com"}
    entry = doc["auths"]["a.example.com"]
    assert entry == {
        "username": "cr_temp_user",
        "password": "fake-token-1",
        "auth": base64.b64encode(b"cr_temp_user:fake-token-1").decode(),
    }


def test_output_is_compact_with_sorted_keys():
    text = render_dockerconfigjson(
        [token("r", "b.example.com", "a.example.com", user="u", password="p")]
    ).reveal()
    auth = base64.b64encode(b"u:p").decode()
    entry = f'{{"auth":"{auth}","password":"p","username":"u"}}'
    assert text == f'{{"auths":{{"a.example.com":{entry},"b.example.com":{entry}}}}}'


def test_same_tokens_in_any_domain_order_give_the_same_bytes():
    one = render([token("r", "x.example.com", "a.example.com", "m.example.com")])
    two = render([token("r", "m.example.com", "x.example.com", "a.example.com")])
    assert one.content.reveal() == two.content.reveal()
    assert one.digest == two.digest


def test_a_domain_claimed_twice_goes_to_the_earlier_registry_with_a_warning():
    first = token("cri-first", "shared.example.com", "first.example.com", password="fake-first")
    second = token("cri-second", "shared.example.com", "second.example.com", password="fake-second")
    result = render([first, second])
    doc = json.loads(result.content.reveal())
    assert doc["auths"]["shared.example.com"]["password"] == "fake-first"
    assert doc["auths"]["second.example.com"]["password"] == "fake-second"
    assert result.warnings == (
        "domain shared.example.com is claimed by registries cri-first and cri-second; "
        "using cri-first (the earlier one)",
    )
    assert result.contributions == (
        ("cri-first", ("first.example.com", "shared.example.com")),
        ("cri-second", ("second.example.com",)),
    )
    # the reverse order flips the winner
    doc = json.loads(render([second, first]).content.reveal())
    assert doc["auths"]["shared.example.com"]["password"] == "fake-second"


def test_a_registry_with_no_domains_contributes_nothing():
    result = render([token("cri-empty"), token("cri-a", "a.example.com")])
    assert result.registries == ("cri-a",)
    assert not result.empty
    assert render([token("cri-empty")]).empty
    assert render([]).content.reveal() == '{"auths":{}}'


def test_digest_is_sha256_of_the_utf8_document():
    content = render_dockerconfigjson([token("r", "a.example.com")])
    assert content_digest(content) == hashlib.sha256(content.reveal().encode()).hexdigest()
    assert render([token("r", "a.example.com")]).digest == content_digest(content)


def test_different_passwords_give_different_digests():
    assert (
        render([token("r", "a.example.com", password="p1")]).digest
        != render([token("r", "a.example.com", password="p2")]).digest
    )


def test_rendered_content_never_shows_in_repr():
    result = render([token("r", "a.example.com", password="fake-token-SHOULD-NOT-LEAK")])
    assert "SHOULD-NOT-LEAK" not in repr(result)
    assert "SHOULD-NOT-LEAK" not in str(result.content)
    b64 = base64.b64encode(b"cr_temp_user:fake-token-SHOULD-NOT-LEAK").decode()
    assert b64 not in repr(result)
