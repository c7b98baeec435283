"""Adopting the tokens an existing Secret holds: render -> adopt -> render is the identity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from acr_helper.core.dockercfg import adopt, render, token_index
from acr_helper.core.model import RegistryToken, Sensitive

NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)

domain = st.from_regex(r"[a-z]{1,8}\.example\.com", fullmatch=True)
registry = st.sampled_from(["cri-a", "cri-b", "personal/cn-hangzhou", "cri-c@cn-beijing"])


@st.composite
def tokens(draw):
    keys = draw(st.lists(registry, min_size=1, max_size=4, unique=True))
    out = []
    for i, key in enumerate(keys):
        out.append(RegistryToken(
            registry=key,
            username=draw(st.sampled_from(["cr_temp_user", "temp_user_cr", "u"])),
            password=Sensitive(draw(st.text(alphabet="abcdefXYZ0123456789:+/=", min_size=1, max_size=30))),
            expires_at=NOW + timedelta(minutes=draw(st.integers(1, 600))),
            obtained_at=NOW - timedelta(minutes=i),
            domains=tuple(draw(st.lists(domain, min_size=1, max_size=4))),
        ))
    return out


@settings(max_examples=300, derandomize=True)
@given(tokens())
def test_render_adopt_render_is_identity(toks):
    first = render(toks)
    index = token_index(toks, first)
    adopted = adopt(first.content.reveal(), index)
    assert set(adopted) == set(first.registries)
    ordered = [adopted[t.registry] for t in toks if t.registry in adopted]
    again = render(ordered)
    assert again.digest == first.digest
    assert token_index(ordered, again) == index


def test_malformed_input_adopts_nothing():
    assert adopt("not json", "{}") == {}
    assert adopt('{"auths": {}}', "not json") == {}
    assert adopt('{"auths": {}}', '{"cri-a": {"domains": ["x.example.com"]}}') == {}


def test_a_registry_whose_domains_disagree_is_not_adopted():
    doc = ('{"auths":{"a.example.com":{"auth":"","password":"p1","username":"u"},'
           '"b.example.com":{"auth":"","password":"p2","username":"u"}}}')
    index = ('{"cri-a":{"domains":["a.example.com","b.example.com"],'
             '"expires":"2026-11-28T23:00:00Z","obtained":"2026-11-28T22:00:00Z"}}')
    assert adopt(doc, index) == {}


def test_adopted_token_repr_hides_the_password():
    doc = '{"auths":{"a.example.com":{"auth":"","password":"fake-pass-not-real","username":"u"}}}'
    index = '{"cri-a":{"domains":["a.example.com"],"expires":"2026-11-28T23:00:00Z","obtained":"2026-11-28T22:00:00Z"}}'
    tok = adopt(doc, index)["cri-a"]
    assert tok.password.reveal() == "fake-pass-not-real"
    assert "fake-pass-not-real" not in repr(tok)
