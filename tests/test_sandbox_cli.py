"""The README's main command: `acr-helper sandbox` (what `./dev sandbox` runs)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.e2e]


def test_sandbox_once_converges_and_prints_without_secrets(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "acr_helper", "sandbox", "--once", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "team-a" in out and "managed" in out
    assert "NOT OURS (left alone)" in out  # team-b's foreign Secret
    assert "corp-registry,acr-credential-helper" in out  # others' entries kept, ours appended
    assert "sandbox-registry.cn-hangzhou.cr.aliyuncs.com" in out
    assert "password" not in out.lower()
    assert (tmp_path / "kubeconfig").exists()


def test_sandbox_live_serves_a_new_namespace_and_stops_on_ctrl_c(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "acr_helper", "sandbox", "--dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if line.startswith("fake API server:"):
                url = line.split()[-1]
        assert url, "the sandbox printed its API server URL"
        body = json.dumps({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}).encode()
        req = urllib.request.Request(f"{url}/api/v1/namespaces", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).read()

        def secret():
            try:
                with urllib.request.urlopen(f"{url}/api/v1/namespaces/demo/secrets/acr-credential-helper",
                                            timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and secret() is None:
            time.sleep(0.1)
        assert secret() is not None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
