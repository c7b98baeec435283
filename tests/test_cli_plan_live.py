"""`acr-helper plan --kubeconfig`: the live, read-only plan against the fake API server."""

from __future__ import annotations

import json

from acr_helper.cli import main
from acr_helper.kube.fakeserver import FakeKubeAPI
from acr_helper.sandbox import Sandbox, SandboxOptions


def test_live_plan_reads_the_cluster_and_writes_nothing(tmp_path, capsys):
    box = Sandbox(SandboxOptions(workdir=tmp_path))
    box.start_fakes()
    try:
        api: FakeKubeAPI = box.api
        api.reset_log()
        code = main(["plan", "--kubeconfig", str(box.kubeconfig), "--region", "cn-hangzhou", "-o", "json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 0
        creates = {(a["namespace"], a["kind"]) for a in out["actions"] if a["action"] == "create"}
        assert ("team-a", "Secret") in creates and ("default", "Secret") in creates
        assert ("team-b", "Secret") not in creates  # someone else's Secret with our name
        assert any("team-b" in w for w in out["warnings"])
        adds = {(a["namespace"], a["name"]) for a in out["actions"] if a["action"] == "add"}
        assert ("team-a", "builder") in adds
        verbs = {r.verb for r in api.requests}
        assert verbs <= {"list", "watch", "get"}, verbs
        secret_lists = [r for r in api.requests if r.resource == "secrets" and r.verb in ("list", "watch")]
        assert secret_lists and all(r.field_selector for r in secret_lists)
    finally:
        box.stop()


def test_live_plan_with_unreachable_cluster_is_a_usage_error(tmp_path, capsys):
    cfg = tmp_path / "kubeconfig"
    cfg.write_text("not: a kubeconfig\n")
    assert main(["plan", "--kubeconfig", str(cfg)]) == 2
    assert "kubeconfig" in capsys.readouterr().err


def test_live_plan_after_the_controller_converged_plans_nothing(tmp_path, capsys):
    box = Sandbox(SandboxOptions(workdir=tmp_path))
    box.start_fakes()
    try:
        box.start_controller(once=True)
        assert box.wait(60) and box.exit_code == 0
        owned = [s for s in box.secrets() if s["managed"]]
        assert len(owned) >= 2
        for argv in ([], ["--region", "cn-hangzhou"]):
            code = main(["plan", "--kubeconfig", str(box.kubeconfig), *argv, "-o", "json"])
            out = json.loads(capsys.readouterr().out)
            assert code == 0 and out["errors"] == []
            assert out["actions"] == [], out["actions"]
            notes = [w for w in out["warnings"] if "live tokens that plan cannot compare" in w]
            assert notes == [f"{len(owned)} Secrets hold live tokens that plan cannot compare; shown as "
                             "current while their registries match and they are not due"], out["warnings"]
        code = main(["plan", "--kubeconfig", str(box.kubeconfig)])
        text = capsys.readouterr().out
        assert code == 0 and "No changes" in text and "live tokens that plan cannot compare" in text
    finally:
        box.stop()
