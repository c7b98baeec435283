"""Proof with a real registry and a real client.

Debian's `docker-registry` (CNCF distribution) runs on loopback with htpasswd auth. Its htpasswd
holds exactly the logins the Alibaba Cloud emulator still considers valid — standing in for ACR,
which accepts a temporary token until it expires. The controller (the sandbox) writes the Secret;
`skopeo inspect --authfile <the Secret's .dockerconfigjson>` then reads a manifest with it, and fails
with a wrong or an expired credential.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pathlib
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from acr_helper.sandbox import Sandbox, SandboxOptions

from .conftest import free_port, wait_for

pytestmark = [pytest.mark.e2e]

TOOLS = ("docker-registry", "skopeo", "htpasswd")
MISSING = [t for t in TOOLS if shutil.which(t) is None]
if MISSING:
    pytestmark.append(pytest.mark.skip(
        reason=f"needs {', '.join(MISSING)} (apt-get install docker-registry skopeo apache2-utils; .ci/run does)"))

IMAGE = "demo/app:1"


def _blob(layout: pathlib.Path, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def make_oci_layout(layout: pathlib.Path) -> None:
    """A minimal, valid OCI image (one empty gzip layer), built by hand: no network needed."""
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        payload = b"pulled with a token from acr-helper\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    layer_tar = raw.getvalue()
    layer = _blob(layout, gzip.compress(layer_tar, mtime=0))
    config = _blob(layout, json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer_tar).hexdigest()}"]},
    }).encode())
    manifest = _blob(layout, json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
    }).encode())
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
        "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))


class Registry:
    def __init__(self, root: pathlib.Path) -> None:
        self.root = root
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.htpasswd = root / "htpasswd"
        self.proc: subprocess.Popen[bytes] | None = None

    def set_logins(self, logins: list[tuple[str, str]]) -> None:
        lines = []
        for user, password in logins or [("nobody", "no-login-is-valid")]:
            out = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True, text=True, check=True)
            lines.append(out.stdout.strip())
        self.htpasswd.write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        """(Re)start: distribution 2.8 reads htpasswd only at start-up."""
        self.stop()
        cfg = self.root / "config.yml"
        cfg.write_text(json.dumps({
            "version": 0.1,
            "log": {"level": "warn"},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "data")}},
            "http": {"addr": self.host},
            "auth": {"htpasswd": {"realm": "acr-helper-test", "path": str(self.htpasswd)}},
        }))
        self.proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        import urllib.error
        import urllib.request

        def up() -> bool:
            try:
                urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
            except urllib.error.HTTPError as e:
                return e.code == 401
            except OSError:
                return False
            return True

        wait_for(up, 15, what="docker-registry up")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def skopeo_inspect(host: str, authfile: pathlib.Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--authfile", str(authfile),
                           f"docker://{host}/{IMAGE}"], capture_output=True, text=True, timeout=60)


@pytest.fixture
def registry(tmp_path: pathlib.Path) -> Iterator[Registry]:
    reg = Registry(tmp_path / "registry")
    reg.root.mkdir()
    reg.set_logins([("pusher", "fake-push-password")])
    reg.start()
    layout = tmp_path / "oci"
    make_oci_layout(layout)
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "pusher:fake-push-password",
                    f"oci:{layout}:latest", f"docker://{reg.host}/{IMAGE}"], check=True, capture_output=True,
                   timeout=60)
    yield reg
    reg.stop()


def config_for(host: str) -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata:
  name: acr-configuration
  namespace: kube-system
data:
  service-account: default
  watch-namespace: team-a
  expiring-threshold: 1s
  acr-registry-info: |
    - instanceId: cri-sandbox0001
      domains: "{host}"
"""


STATE = """\
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: team-a}}
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: default, namespace: team-a}}
"""


def converge(box: Sandbox) -> dict[str, object]:
    box.start_controller(once=True)
    assert box.wait(60)
    assert box.exit_code == 0
    assert box.api is not None
    secret = box.api.get("secrets", "team-a", "acr-credential-helper")
    assert secret is not None
    return json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))


def test_skopeo_pulls_with_the_secret_and_fails_with_wrong_or_expired(registry: Registry, tmp_path: pathlib.Path):
    box = Sandbox(SandboxOptions(workdir=tmp_path / "sandbox", config_text=config_for(registry.host),
                                 state_text=STATE, token_lifetime=4.0))
    box.start_fakes()
    assert box.emulator is not None
    try:
        doc = converge(box)
        entry = doc["auths"][registry.host]  # type: ignore[index]
        login = (entry["username"], entry["password"])
        # the registry accepts what the emulator (ACR) currently accepts
        assert box.emulator.is_valid_registry_login(*login)
        registry.set_logins([login])
        registry.start()

        authfile = tmp_path / "auth.json"
        authfile.write_text(json.dumps(doc))
        ok = skopeo_inspect(registry.host, authfile)
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["Digest"].startswith("sha256:")

        wrong = json.loads(json.dumps(doc))
        bad = wrong["auths"][registry.host]
        bad["password"] = "wrong-password"
        bad["auth"] = base64.b64encode(f"{bad['username']}:wrong-password".encode()).decode()
        authfile.write_text(json.dumps(wrong))
        denied = skopeo_inspect(registry.host, authfile)
        assert denied.returncode != 0
        assert "unauthorized" in denied.stderr.lower() or "401" in denied.stderr

        # the token expires: ACR (here the registry, re-synced from the emulator) stops accepting it
        wait_for(lambda: not box.emulator.is_valid_registry_login(*login), 15, what="token expiry")
        registry.set_logins([])
        registry.start()
        authfile.write_text(json.dumps(doc))
        expired = skopeo_inspect(registry.host, authfile)
        assert expired.returncode != 0

        # the controller refreshes the Secret; the new credential works again
        fresh = converge(box)
        new_entry = fresh["auths"][registry.host]  # type: ignore[index]
        new_login = (new_entry["username"], new_entry["password"])
        assert new_login != login
        assert box.emulator.is_valid_registry_login(*new_login)
        registry.set_logins([new_login])
        registry.start()
        authfile.write_text(json.dumps(fresh))
        again = skopeo_inspect(registry.host, authfile)
        assert again.returncode == 0, again.stderr
    finally:
        box.stop()
