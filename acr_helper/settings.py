"""Settings, grouped in frozen dataclasses. Every field has a default and a docstring.

The CLI builds them from flags and `ACR_HELPER_<FLAG>` environment variables; adapters and the
runtime receive them explicitly. The pure core never imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from acr_helper.core.config import CONFIG_NAME, CONFIG_NAMESPACE
from acr_helper.core.model import DEFAULT_SECRET_NAME


@dataclass(frozen=True)
class KubeSettings:
    kubeconfig: str | None = None
    """Path to a kubeconfig. None: in-cluster, then $KUBECONFIG, then ~/.kube/config."""
    context: str | None = None
    """kubeconfig context to use (None: the current context)."""
    config_namespace: str = CONFIG_NAMESPACE
    """Namespace of the acr-configuration ConfigMap (and referenced AccessKey Secrets)."""
    config_name: str = CONFIG_NAME
    """Name of the configuration ConfigMap."""
    secret_name: str = DEFAULT_SECRET_NAME
    """Name of the managed pull Secret written into every watched namespace."""
    qps: float = 20.0
    """Client-side rate limit on Kubernetes requests (requests per second, sustained)."""
    burst: int = 40
    """Client-side rate limit: how many requests may go at once above qps."""
    apply_workers: int = 1
    """Parallel writers when applying a plan; each namespace's actions stay in order on one writer."""
    watch_timeout_seconds: int = 300
    """Server-side watch timeout (the server ends the watch after this; we reconnect)."""
    request_timeout: tuple[float, float] = (10.0, 30.0)
    """(connect, read) client timeout for ordinary requests."""
    watch_read_timeout: float = 90.0
    """Client read timeout on a watch stream; above the bookmark cadence so a quiet stream is fine."""
    backoff_initial: float = 0.5
    """First retry delay (seconds) after a watch/list failure; doubles up to backoff_max, jittered."""
    backoff_max: float = 30.0
    """Largest retry delay (seconds) after repeated watch/list failures."""
    extra_secret_names: tuple[str, ...] = ("alibaba-addon-secret",)
    """Secrets in config_namespace to watch (the addon-secret convention); accessKeySecretRef adds more."""


@dataclass(frozen=True)
class TokenSettings:
    region: str | None = None
    """Default region (the cluster's); else ALIBABA_CLOUD_REGION_ID, else the metadata service."""
    use_vpc_endpoints: bool = False
    """Use cr-vpc.<region>.aliyuncs.com / sts-vpc.<region>.aliyuncs.com."""
    cr_endpoint: str | None = None
    """Override the Container Registry API endpoint (URL; plain http allowed)."""
    sts_endpoint: str | None = None
    """Override the STS endpoint (URL; plain http allowed). Also ALIBABA_CLOUD_STS_ENDPOINT."""
    ecs_metadata_endpoint: str = "http://100.100.100.200"
    """ECS instance metadata service base URL."""
    imds_v1_fallback: bool = True
    """Fall back to IMDSv1 when the IMDSv2 token request fails."""
    connect_timeout: float = 5.0
    """Connect timeout for Alibaba Cloud API calls (seconds)."""
    read_timeout: float = 10.0
    """Read timeout for Alibaba Cloud API calls (seconds)."""
    endpoint_cache_seconds: int = 3600
    """How long the domains from ListInstanceEndpoint are reused before being listed again."""
    backoff_initial: float = 5.0
    """First retry delay (seconds) after a failed token refresh."""
    backoff_max: float = 300.0
    """Largest retry delay (seconds) after repeated token refresh failures."""


@dataclass(frozen=True)
class RuntimeSettings:
    resync_period: float = 600.0
    """Full resync interval (seconds), even when nothing changed."""
    debounce: float = 0.2
    """After a change, wait this long (seconds) so a burst of events coalesces into one pass."""
    leader_elect: bool = False
    """Run leader election on a coordination.k8s.io/v1 Lease; only the leader writes."""
    lease_name: str = "acr-helper"
    """Name of the leader-election Lease."""
    lease_namespace: str = CONFIG_NAMESPACE
    """Namespace of the leader-election Lease."""
    lease_duration: float = 15.0
    """How long (seconds) a lease is valid without renewal; followers take over after it."""
    renew_deadline: float = 10.0
    """The leader gives up leadership if it cannot renew within this many seconds."""
    retry_period: float = 2.0
    """How often (seconds) candidates try to acquire / the leader renews."""
    grace_period: float = 20.0
    """On SIGTERM, how long (seconds) the current apply may take before we exit anyway."""
    once: bool = False
    """Run one full pass, then exit (non-zero when it failed)."""
    identity: str | None = None
    """Leader-election identity (default: hostname + pid)."""


@dataclass(frozen=True)
class ServerSettings:
    metrics_bind_address: str = ":8080"
    """host:port for /metrics, /healthz and /readyz ("0" disables)."""
    heartbeat_timeout: float = 120.0
    """/healthz fails when the loop has not completed a wait/pass cycle for this long (seconds)."""


@dataclass(frozen=True)
class Settings:
    kube: KubeSettings = field(default_factory=KubeSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
