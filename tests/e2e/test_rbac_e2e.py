"""The e2e suite runs with the shipped RBAC enforced; prove the enforcement bites."""

from __future__ import annotations

import kubernetes
import pytest

from .conftest import SA_GROUPS, SA_USER

pytestmark = [pytest.mark.e2e]


@pytest.mark.rbac_denials_expected
def test_the_controller_identity_cannot_read_other_secrets(cluster, tmp_path):
    path = tmp_path / "kubeconfig"
    cluster.api.write_kubeconfig(str(path), user=SA_USER, token="token-probe", groups=SA_GROUPS)
    api = kubernetes.config.new_client_from_config(config_file=str(path))
    core = kubernetes.client.CoreV1Api(api)
    with pytest.raises(kubernetes.client.ApiException) as exc:
        core.list_secret_for_all_namespaces()
    assert exc.value.status == 403
    # with the field selector on the managed name, the same list is allowed
    core.list_secret_for_all_namespaces(field_selector="metadata.name=acr-credential-helper")
    with pytest.raises(kubernetes.client.ApiException) as exc:
        core.read_namespaced_secret("someone-elses", "kube-system")
    assert exc.value.status == 403
    assert len(cluster.api.denied) == 2
    api.close()
