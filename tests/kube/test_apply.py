"""Applier against the fake API server: owned-only Secret writes, SA read-modify-update."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from acr_helper.core.model import (
    DIGEST_ANNOTATION,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    Action,
    DesiredSecret,
    Plan,
    Sensitive,
    frozen_map,
    sha256_hex,
)
from acr_helper.kube.apply import Applier
from acr_helper.kube.client import KubeClients
from acr_helper.settings import KubeSettings
from tests.kube import objects as o

PASSWORD = "fake-token-not-real-0123456789"


def desired(ns: str, password: str = PASSWORD) -> DesiredSecret:
    doc = json.dumps({"auths": {"r.example.com": {"username": "u", "password": password}}}, sort_keys=True)
    digest = sha256_hex(doc.encode())
    return DesiredSecret(
        namespace=ns,
        name=o.SECRET,
        dockerconfigjson=Sensitive(doc),
        digest=digest,
        labels=frozen_map({MANAGED_BY_LABEL: MANAGED_BY_VALUE}),
        annotations=frozen_map({DIGEST_ANNOTATION: digest}),
    )


def create(ns: str) -> Action:
    return Action("create", "Secret", ns, o.SECRET, "missing", secret=desired(ns))


def update(ns: str, rv: str, password: str = "fake-token-2") -> Action:
    return Action("update", "Secret", ns, o.SECRET, "content differs", secret=desired(ns, password),
                  resource_version=rv)


def delete(ns: str, rv: str = "") -> Action:
    return Action("delete", "Secret", ns, o.SECRET, "out of scope", resource_version=rv)


def sa_add(ns: str, name: str = "default") -> Action:
    return Action("add", "ServiceAccount", ns, name, "in scope", pull_secret=o.SECRET)


def sa_remove(ns: str, name: str = "default") -> Action:
    return Action("remove", "ServiceAccount", ns, name, "out of scope", pull_secret=o.SECRET)


def dockercfg(fake: Any, ns: str) -> str:
    s = fake.get("secrets", ns, o.SECRET)
    return base64.b64decode(s["data"][".dockerconfigjson"]).decode()


def pulls(fake: Any, ns: str, name: str = "default") -> list[str]:
    return [e["name"] for e in fake.get("serviceaccounts", ns, name).get("imagePullSecrets") or []]


def seen(log: list[tuple[str, str, int]], verb: str | None = None, resource: str | None = None,
         code: int | None = None) -> int:
    """Requests as the client saw them (synchronous, unlike the server's request log)."""
    return sum(1 for v, r, c in log if (verb is None or v == verb) and (resource is None or r == resource)
               and (code is None or c == code))


@pytest.fixture
def applier(clients: KubeClients, settings: KubeSettings) -> Applier:
    return Applier(clients, settings, sleep=lambda s: None)


@pytest.fixture
def ns_a(fake: Any) -> str:
    fake.create(o.namespace("a"))
    return "a"


def test_create_then_update_then_delete_a_secret(fake: Any, applier: Applier, ns_a: str) -> None:
    [r] = applier.apply(Plan((create(ns_a),)))
    assert r.ok and r.code == 201
    assert PASSWORD in dockercfg(fake, ns_a)
    live = fake.get("secrets", ns_a, o.SECRET)
    assert live["type"] == "kubernetes.io/dockerconfigjson"
    assert live["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE
    # someone adds their own label: our update keeps it (a merge patch of our fields only)
    live["metadata"]["labels"]["team"] = "x"
    fake.update(live)
    rv = fake.get("secrets", ns_a, o.SECRET)["metadata"]["resourceVersion"]
    [r] = applier.apply(Plan((update(ns_a, rv),)))
    assert r.ok, r.message
    live = fake.get("secrets", ns_a, o.SECRET)
    assert "fake-token-2" in dockercfg(fake, ns_a) and live["metadata"]["labels"]["team"] == "x"
    [r] = applier.apply(Plan((delete(ns_a, live["metadata"]["resourceVersion"]),)))
    assert r.ok
    assert fake.get("secrets", ns_a, o.SECRET) is None
    [r] = applier.apply(Plan((delete(ns_a),)))
    assert r.ok and r.code == 404  # already gone is fine


def test_update_with_a_stale_resource_version_retries_on_fresh_state(
    fake: Any, applier: Applier, ns_a: str, requests_seen: list[tuple[str, str, int]]
) -> None:
    fake.create(o.secret(ns_a))
    stale = fake.get("secrets", ns_a, o.SECRET)["metadata"]["resourceVersion"]
    s = fake.get("secrets", ns_a, o.SECRET)
    s["metadata"]["annotations"] = {"touched": "yes"}
    fake.update(s)  # the RV moves on
    [r] = applier.apply(Plan((update(ns_a, stale),)))
    assert r.ok, r.message
    assert "fake-token-2" in dockercfg(fake, ns_a)
    assert fake.get("secrets", ns_a, o.SECRET)["metadata"]["annotations"]["touched"] == "yes"
    assert seen(requests_seen, "patch", "secrets", 409) == 1


def test_a_foreign_secret_with_our_name_is_never_overwritten(fake: Any, applier: Applier, ns_a: str) -> None:
    fake.create(o.secret(ns_a, owned=False, data={".dockerconfigjson": '{"auths":{"mine":{}}}'}))
    [r] = applier.apply(Plan((create(ns_a),)))
    assert not r.ok and r.code == 409 and "not managed by" in r.message
    assert dockercfg(fake, ns_a) == '{"auths":{"mine":{}}}'
    rv = fake.get("secrets", ns_a, o.SECRET)["metadata"]["resourceVersion"]
    [r] = applier.apply(Plan((update(ns_a, "1"),)))  # a stale plan: fresh read shows it is not ours
    assert not r.ok
    [r] = applier.apply(Plan((delete(ns_a, rv),)))
    assert not r.ok and "label" in r.message
    assert dockercfg(fake, ns_a) == '{"auths":{"mine":{}}}'
    assert PASSWORD not in r.message


def test_create_when_our_secret_already_exists_updates_it(fake: Any, applier: Applier, ns_a: str) -> None:
    fake.create(o.secret(ns_a))
    [r] = applier.apply(Plan((create(ns_a),)))
    assert r.ok, r.message
    assert PASSWORD in dockercfg(fake, ns_a)
    [r] = applier.apply(Plan((create(ns_a),)))
    assert r.ok and r.message == "already up to date"


def test_errors_are_results_not_exceptions_and_never_carry_the_secret(
    fake: Any, applier: Applier, ns_a: str
) -> None:
    fake.inject(verb="create", resource="secrets", code=403, times=1)
    [r] = applier.apply(Plan((create(ns_a),)))
    assert not r.ok and r.code == 403 and PASSWORD not in r.message
    [r] = applier.apply(Plan((sa_add("missing-ns", "nobody"),)))
    assert not r.ok and r.code == 404
    [r] = applier.apply(Plan((sa_remove("missing-ns", "nobody"),)))
    assert r.ok  # nothing to remove from a ServiceAccount that is gone


def test_should_continue_false_skips_the_rest(fake: Any, applier: Applier, ns_a: str) -> None:
    fake.create(o.namespace("b"))
    calls = iter([True, False, False])
    results = applier.apply(Plan((create(ns_a), create("b"), sa_add(ns_a))),
                            should_continue=lambda: next(calls))
    assert [r.skipped for r in results] == [False, True, True]
    assert results[0].ok
    assert fake.get("secrets", "b", o.SECRET) is None


def test_sa_add_appends_ours_and_keeps_others_in_order(
    fake: Any, applier: Applier, ns_a: str, requests_seen: list[tuple[str, str, int]]
) -> None:
    fake.create(o.service_account(ns_a, "default", pull=("z-first", "a-second")))
    [r] = applier.apply(Plan((sa_add(ns_a),)))
    assert r.ok
    assert pulls(fake, ns_a) == ["z-first", "a-second", o.SECRET]
    updates = seen(requests_seen, "update", "serviceaccounts")
    assert updates == 1
    [r] = applier.apply(Plan((sa_add(ns_a),)))
    assert r.ok and seen(requests_seen, "update", "serviceaccounts") == updates  # no-op: no write
    [r] = applier.apply(Plan((sa_remove(ns_a),)))
    assert r.ok and pulls(fake, ns_a) == ["z-first", "a-second"]


class Interposed:
    """KubeClients whose first GET of a path is followed by another writer's update."""

    def __init__(self, clients: KubeClients, path_suffix: str, writer: Any, times: int = 1) -> None:
        self._c = clients
        self._suffix = path_suffix
        self._writer = writer
        self._times = times
        self.settings = clients.settings

    def request(self, method: str, path: str, **kw: Any) -> Any:
        out = self._c.request(method, path, **kw)
        if method == "GET" and path.endswith(self._suffix) and self._times > 0:
            self._times -= 1
            self._writer()
        return out


def test_sa_conflict_with_a_concurrent_writer_keeps_both_entries(
    fake: Any, clients: KubeClients, settings: KubeSettings, ns_a: str,
    requests_seen: list[tuple[str, str, int]],
) -> None:
    fake.create(o.service_account(ns_a, "default", pull=("theirs",)))
    n = [0]

    def other_writer() -> None:  # someone adds their entry between our GET and our PUT
        n[0] += 1
        sa = fake.get("serviceaccounts", ns_a, "default")
        sa["imagePullSecrets"] = [*sa.get("imagePullSecrets", []), {"name": f"other-{n[0]}"}]
        fake.update(sa)

    applier = Applier(Interposed(clients, "/serviceaccounts/default", other_writer, times=2),  # type: ignore[arg-type]
                      settings, sleep=lambda s: None)
    [r] = applier.apply(Plan((sa_add(ns_a),)))
    assert r.ok, r.message
    assert pulls(fake, ns_a) == ["theirs", "other-1", "other-2", o.SECRET]
    assert seen(requests_seen, "update", "serviceaccounts", 409) == 2


def test_sa_conflict_forever_gives_up_after_five_attempts(
    fake: Any, clients: KubeClients, settings: KubeSettings, ns_a: str,
    requests_seen: list[tuple[str, str, int]],
) -> None:
    fake.create(o.service_account(ns_a, "default"))

    def churn() -> None:
        sa = fake.get("serviceaccounts", ns_a, "default")
        sa.setdefault("metadata", {}).setdefault("annotations", {})["churn"] = str(
            int(sa["metadata"].get("annotations", {}).get("churn", "0")) + 1)
        fake.update(sa)

    applier = Applier(Interposed(clients, "/serviceaccounts/default", churn, times=100),  # type: ignore[arg-type]
                      settings, sleep=lambda s: None)
    [r] = applier.apply(Plan((sa_add(ns_a),)))
    assert not r.ok and r.code == 409
    assert seen(requests_seen, "update", "serviceaccounts", 409) == 5
    assert pulls(fake, ns_a) == []


def test_delete_precondition_protects_a_secret_relabelled_meanwhile(
    fake: Any, clients: KubeClients, settings: KubeSettings, ns_a: str
) -> None:
    fake.create(o.secret(ns_a))

    def take_over() -> None:  # between our GET and our DELETE, someone takes the Secret over
        s = fake.get("secrets", ns_a, o.SECRET)
        s["metadata"]["labels"] = {"team": "theirs"}
        fake.update(s)

    applier = Applier(Interposed(clients, f"/secrets/{o.SECRET}", take_over), settings,  # type: ignore[arg-type]
                      sleep=lambda s: None)
    [r] = applier.apply(Plan((delete(ns_a),)))
    assert not r.ok  # the precondition failed, the re-read shows it is not ours any more
    assert fake.get("secrets", ns_a, o.SECRET)["metadata"]["labels"] == {"team": "theirs"}


def test_a_failure_in_one_namespace_does_not_stop_the_others(
    fake: Any, applier: Applier, ns_a: str
) -> None:
    fake.inject(verb="create", resource="secrets", code=403, times=1)
    fake.create(o.namespace("b"))
    results = applier.apply(Plan((create(ns_a), create("b"))))
    assert [r.ok for r in results] == [False, True]


# ------------------------------------------------------------------ fast paths from the plan's view


def view_of(fake: Any, ns: str) -> Any:
    from acr_helper.core.model import ClusterView
    from acr_helper.kube import convert

    return ClusterView.build(
        service_accounts=[convert.service_account_info(s) for s in fake.list("serviceaccounts", ns)])


def test_sa_edit_with_the_plans_view_is_one_write(
    fake: Any, applier: Applier, ns_a: str, requests_seen: list[tuple[str, str, int]]
) -> None:
    fake.create(o.service_account(ns_a, "default", pull=("theirs",)))
    view = view_of(fake, ns_a)
    [r] = applier.apply(Plan((sa_add(ns_a),)), view=view)
    assert r.ok, r.message
    assert requests_seen == [("patch", "serviceaccounts", 200)]
    assert pulls(fake, ns_a) == ["theirs", o.SECRET]
    [r] = applier.apply(Plan((sa_remove(ns_a),)), view=view_of(fake, ns_a))
    assert r.ok and pulls(fake, ns_a) == ["theirs"]


def test_sa_edit_with_a_stale_view_falls_back_to_fresh_state(
    fake: Any, applier: Applier, ns_a: str, requests_seen: list[tuple[str, str, int]]
) -> None:
    fake.create(o.service_account(ns_a, "default", pull=("theirs",)))
    view = view_of(fake, ns_a)
    sa = fake.get("serviceaccounts", ns_a, "default")
    sa["imagePullSecrets"].append({"name": "added-meanwhile"})
    fake.update(sa)  # the view is now stale
    [r] = applier.apply(Plan((sa_add(ns_a),)), view=view)
    assert r.ok, r.message
    assert pulls(fake, ns_a) == ["theirs", "added-meanwhile", o.SECRET]  # nothing lost
    assert requests_seen == [("patch", "serviceaccounts", 409), ("get", "serviceaccounts", 200),
                             ("update", "serviceaccounts", 200)]


def test_delete_with_a_stale_resource_version_rechecks_ownership(fake: Any, applier: Applier, ns_a: str) -> None:
    fake.create(o.secret(ns_a))
    rv = fake.get("secrets", ns_a, o.SECRET)["metadata"]["resourceVersion"]
    s = fake.get("secrets", ns_a, o.SECRET)
    s["metadata"]["labels"] = {"team": "theirs"}  # taken over after the plan was made
    fake.update(s)
    [r] = applier.apply(Plan((delete(ns_a, rv),)))
    assert not r.ok and "label" in r.message
    assert fake.get("secrets", ns_a, o.SECRET) is not None


def test_parallel_writers_keep_each_namespace_in_order(fake: Any, clients: KubeClients, settings: KubeSettings) -> None:
    from dataclasses import replace

    names = [f"p{i:02d}" for i in range(40)]
    for ns in names:
        fake.create(o.namespace(ns))
        fake.create(o.service_account(ns, "default"))
    actions = tuple(a for ns in names for a in (create(ns), sa_add(ns)))
    # a plan in the documented order: every Secret first, then every ServiceAccount
    ordered = tuple(a for a in actions if a.kind == "Secret") + tuple(a for a in actions if a.kind != "Secret")
    applier = Applier(clients, replace(settings, apply_workers=4), sleep=lambda s: None)
    results = applier.apply(Plan(actions=ordered))
    assert [r.action for r in results] == list(ordered)  # results in plan order
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]
    for ns in names:
        assert dockercfg(fake, ns)
        assert pulls(fake, ns) == ["acr-credential-helper"]
        # within a namespace the Secret was written before its ServiceAccount was pointed at it
        log = [(r.verb, r.resource) for r in fake.requests if r.namespace == ns and r.verb in ("create", "patch", "update")]
        assert log.index(("create", "secrets")) < next(i for i, x in enumerate(log) if x[1] == "serviceaccounts")


def test_parallel_writers_stop_together(fake: Any, clients: KubeClients, settings: KubeSettings) -> None:
    from dataclasses import replace

    names = [f"s{i:02d}" for i in range(20)]
    for ns in names:
        fake.create(o.namespace(ns))
    budget = iter(range(5))
    applier = Applier(clients, replace(settings, apply_workers=4), sleep=lambda s: None)
    results = applier.apply(Plan(actions=tuple(create(ns) for ns in names)),
                            should_continue=lambda: next(budget, None) is not None)
    assert sum(1 for r in results if r.skipped) >= 15
    assert sum(1 for r in results if r.ok) <= 5


def test_a_service_account_is_not_pointed_at_a_secret_we_could_not_write(
    fake: Any, applier: Applier, ns_a: str
) -> None:
    fake.create({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                 "metadata": {"name": "acr-credential-helper", "namespace": ns_a}, "data": {}})
    fake.create(o.service_account(ns_a, "default"))
    results = applier.apply(Plan(actions=(create(ns_a), sa_add(ns_a))))
    assert not results[0].ok and results[1].skipped
    assert pulls(fake, ns_a) == []
