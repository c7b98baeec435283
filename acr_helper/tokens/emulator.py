# ruff: noqa: S105  (action names such as "GetAuthorizationToken" are not passwords)
"""A local emulator of the Alibaba Cloud endpoints acr-helper talks to.

One stdlib ``ThreadingHTTPServer`` on 127.0.0.1 answers, over plain HTTP, what the official SDKs send
(wire shapes: ``/work/shared/reference/alibaba-api.md``; user doc: ``docs/emulator.md``):

* ACR Enterprise Edition (cr 2018-12-01): ``GetAuthorizationToken``, ``ListInstanceEndpoint``,
  ``ListInstance``;
* ACR Personal Edition (cr 2016-06-07): ``GET /tokens``;
* STS (2015-04-01): ``AssumeRole`` (ACS3 from the sts SDK or RPC v1 from the credentials library) and
  ``AssumeRoleWithOIDC`` (anonymous);
* ECS instance metadata: ``PUT /latest/api/token``, ``GET /latest/meta-data/ram/security-credentials/``
  [``<role>``], ``GET /latest/meta-data/region-id``.

Requests are dispatched on the ``x-acs-action`` header, else the ``Action`` query parameter, else the
path. Signatures (ACS3-HMAC-SHA256 and RPC v1 HMAC-SHA1) are verified against a table of AccessKeys that
includes the STS keys the emulator issued itself, so a test can prove which credentials signed a call.

Use it for tests and the sandbox only: every credential it issues or accepts is fake, and it listens on
the loopback interface only. Stdlib only; nothing here imports an SDK.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import math
import re
import secrets
import socket
import string
import sys
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType, TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from acr_helper.tokens.emulator_signing import (
    ACS3_ALGORITHM,
    acs3_signature,
    acs3_string_to_sign,
    constant_time_in,
    parse_acs3_authorization,
    rpc_v1_signatures,
)

log = logging.getLogger(__name__)

#: The AccessKey the emulator knows when ``access_keys`` is not given. Obviously fake.
DEFAULT_ACCESS_KEY_ID = "FAKE-AK-ID"
DEFAULT_ACCESS_KEY_SECRET = "fake-secret-not-real"  # a published fake
#: The account id that owns emulated roles when an ARN does not say otherwise.
FAKE_ACCOUNT_ID = "1234567890123456"
#: ``TempUsername`` / ``tempUserName`` returned by ACR (the real service returns this too).
TEMP_USERNAME = "cr_temp_user"

#: The request log keeps at most this many entries (oldest dropped first).
MAX_RECORDED_REQUESTS = 50_000

#: Action names used by counters, faults, ``deny`` and :class:`RecordedRequest`.
EE_TOKEN = "GetAuthorizationToken"
PE_TOKEN = "PersonalToken"
PE_TOKEN_ALIAS = "GetAuthorizationToken@2016-06-07"
LIST_INSTANCE_ENDPOINT = "ListInstanceEndpoint"
LIST_INSTANCE = "ListInstance"
ASSUME_ROLE = "AssumeRole"
ASSUME_ROLE_OIDC = "AssumeRoleWithOIDC"
GET_CALLER_IDENTITY = "GetCallerIdentity"
IMDS_TOKEN = "imds-token"
IMDS_ROLE = "imds-role"
IMDS_CREDENTIALS = "imds-credentials"
IMDS_REGION = "imds-region"
IMDS_OTHER = "imds-other"
UNKNOWN = "unknown"

ACTIONS = (
    EE_TOKEN,
    PE_TOKEN,
    LIST_INSTANCE_ENDPOINT,
    LIST_INSTANCE,
    ASSUME_ROLE,
    ASSUME_ROLE_OIDC,
    GET_CALLER_IDENTITY,
    IMDS_TOKEN,
    IMDS_ROLE,
    IMDS_CREDENTIALS,
    IMDS_REGION,
)
IMDS_ACTIONS = frozenset({IMDS_TOKEN, IMDS_ROLE, IMDS_CREDENTIALS, IMDS_REGION, IMDS_OTHER})
STS_ACTIONS = frozenset({ASSUME_ROLE, ASSUME_ROLE_OIDC, GET_CALLER_IDENTITY})
CR_ACTIONS = frozenset({EE_TOKEN, PE_TOKEN, LIST_INSTANCE_ENDPOINT, LIST_INSTANCE})

FAULT_KINDS = frozenset(
    {
        "throttle",
        "throttle-retry-after",
        "429",
        "403",
        "404",
        "500",
        "503",
        "non-json",
        "slow",
        "is-success-false",
        "invalid-ak",
        "drop",
    }
)

#: Query/form parameters never kept in :attr:`RecordedRequest.params`.
_SECRET_PARAMS = frozenset({"Signature", "SecurityToken", "OIDCToken", "AccessKeySecret", "BearerToken"})
_SESSION_NAME_RE = re.compile(r"^[A-Za-z0-9.@_-]{2,64}$")
_ROLE_ARN_RE = re.compile(r"^acs:ram::(?P<account>[0-9]+):role/(?P<name>.+)$")
_CR_HOST_RE = re.compile(r"^(?:https?://)?cr(?:-vpc)?\.(?P<region>[a-z0-9-]+)\.aliyuncs\.com(?::\d+)?/?$")
_IMDS_CREDS_PREFIX = "/latest/meta-data/ram/security-credentials/"
_IMDS_TOKEN_TTL_HEADER = "x-aliyun-ecs-metadata-token-ttl-seconds"
_IMDS_TOKEN_HEADER = "x-aliyun-ecs-metadata-token"


def _canonical_action(action: str) -> str:
    return PE_TOKEN if action == PE_TOKEN_ALIAS else action


def format_expiration(epoch: float) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` rounded *up* to the second (never fractional, never early)."""
    return datetime.fromtimestamp(math.ceil(epoch), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _random_alnum(n: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(n))


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


@dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator answered (or dropped). Holds no secret.

    ``params`` are the query/form parameters minus signatures, security tokens and OIDC tokens.
    ``principal`` is the RAM identity behind the signing key: the AccessKey id for a long-term key, the
    role ARN for a key the emulator issued through AssumeRole/AssumeRoleWithOIDC/IMDS.
    """

    action: str
    method: str
    path: str
    access_key_id: str | None
    security_token_present: bool
    status: int
    params: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    signature_kind: str = "none"  # "acs3" | "rpc-v1" | "none"
    principal: str | None = None
    credentials_provider: str | None = None  # x-acs-credentials-provider header
    host: str = ""
    at: float = 0.0
    fault: str | None = None


@dataclass
class _Instance:
    instance_id: str
    region: str
    name: str
    status: str
    domains: list[tuple[str, str, str]]
    disabled_endpoints: set[str] = field(default_factory=set)
    created: float = 0.0


@dataclass
class _Role:
    arn: str
    trusted: bool
    max_session_duration: int


@dataclass
class _StsKey:
    secret: str
    security_token: str
    expires_at: float
    role_arn: str
    source: str  # AssumeRole | AssumeRoleWithOIDC | imds
    session: str = ""
    role_id: str = ""


@dataclass
class _Fault:
    action: str | None
    kind: str
    remaining: int | None
    retry_after_ms: int | None
    delay: float


@dataclass
class _Login:
    username: str
    expires_at: float
    target: str


@dataclass
class _Caller:
    access_key_id: str | None = None
    security_token_present: bool = False
    signature_kind: str = "none"
    principal: str | None = None
    role_arn: str | None = None
    sts_expires_at: float | None = None


@dataclass
class _Reply:
    status: int
    body: bytes
    content_type: str = "application/json;charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


class _ApiError(Exception):
    """An error answer; never carries a secret (its text is only codes and identifiers)."""

    def __init__(
        self, status: int, code: str, message: str, *, extra: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = dict(extra or {})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    emulator: AliyunEmulator

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conns_lock:
            if alive:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        """Cut kept-alive client connections, so a stopped emulator really stops answering."""
        with self._conns_lock:
            conns, self._conns = list(self._conns), set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AliyunEmulator/1"
    sys_version = ""
    timeout = 60.0
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        self.server.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        # The request line can carry tokens (OIDCToken, SecurityToken) in the query: never log it.
        return

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        headers: dict[str, str] = {}
        for key in self.headers:
            lk = key.lower()
            if lk not in headers:
                values = [v.strip() for v in self.headers.get_all(key) or []]
                headers[lk] = ",".join(sorted(values)) if len(values) > 1 else (values[0] if values else "")
        reply = self.server.emulator._serve(self.command, self.path, headers, body)
        if reply.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class AliyunEmulator:
    """Loopback emulator of ACR (EE + PE), STS and ECS metadata. Thread-safe. See ``docs/emulator.md``."""

    def __init__(
        self,
        *,
        region: str = "cn-hangzhou",
        token_lifetime: float = 3600.0,
        sts_lifetime: float = 3600.0,
        access_keys: dict[str, str] | None = None,
        role_name: str = "KubernetesWorkerRole-fake",
        require_imdsv2: bool = False,
        reject_imds_token: bool = False,
        verify_signatures: bool = True,
        fixed_registry_credentials: tuple[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        strict_region: bool = False,
        port: int = 0,
        account_id: str = FAKE_ACCOUNT_ID,
    ) -> None:
        self.region = region
        self.role_name = role_name
        self.require_imdsv2 = require_imdsv2
        self.reject_imds_token = reject_imds_token
        self.verify_signatures = verify_signatures
        self.strict_region = strict_region
        self.account_id = account_id
        self._clock = clock
        self._port = port
        self._lock = threading.RLock()
        self._token_lifetime = float(token_lifetime)
        self._sts_lifetime = float(sts_lifetime)
        self._forced_sts_lifetime: float | None = None
        self._access_keys: dict[str, str] = (
            dict(access_keys)
            if access_keys is not None
            else {DEFAULT_ACCESS_KEY_ID: DEFAULT_ACCESS_KEY_SECRET}
        )
        self._fixed = fixed_registry_credentials
        self._instances: dict[str, _Instance] = {}
        self._roles: dict[str, _Role] = {}
        self._oidc_providers: set[str] = set()
        self._denied: set[tuple[str, str]] = set()
        self._faults: list[_Fault] = []
        self._calls: Counter[str] = Counter()
        # bounded so a long sandbox run does not grow without limit (counters are exact regardless)
        self._requests: deque[RecordedRequest] = deque(maxlen=MAX_RECORDED_REQUESTS)
        self._sts_keys: dict[str, _StsKey] = {}
        self._logins: dict[str, _Login] = {}
        self._imds_tokens: dict[str, float] = {}
        self._imds_key: str | None = None
        self._imds_issued_at = 0.0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    # ------------------------------------------------------------------------------------------
    # lifecycle

    def start(self) -> AliyunEmulator:
        """Bind 127.0.0.1 (port 0 = a free port) and serve in a daemon thread.

        After :meth:`stop`, ``start()`` binds the same port again (same :attr:`url`), so a test can
        simulate an outage and a recovery. All state (keys, tokens, counters) survives a restart.
        """
        with self._lock:
            if self._server is not None:
                return self
            server = _Server(("127.0.0.1", self._port))
            server.emulator = self
            self._port = int(server.server_address[1])
            self._stopping.clear()
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="aliyun-emulator",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> AliyunEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (for --cr-endpoint, --sts-endpoint, --ecs-metadata-endpoint)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``: what SDK ``Config(endpoint=..., protocol='http')`` wants."""
        return f"127.0.0.1:{self.port}"

    # ------------------------------------------------------------------------------------------
    # configuration

    def add_access_key(self, access_key_id: str, secret: str) -> None:
        with self._lock:
            self._access_keys[access_key_id] = secret

    def remove_access_key(self, access_key_id: str) -> None:
        with self._lock:
            self._access_keys.pop(access_key_id, None)

    def add_instance(
        self,
        instance_id: str,
        *,
        region: str | None = None,
        name: str | None = None,
        domains: Sequence[tuple[str, str, str]] | None = None,
        status: str = "RUNNING",
    ) -> None:
        """Add (or replace) an Enterprise Edition instance.

        ``domains`` are ``(endpoint_type "internet"|"vpc", domain, "SYSTEM"|"USER")``; the default is
        ``<name>-registry.<region>.cr.aliyuncs.com`` (internet) and
        ``<name>-registry-vpc.<region>.cr.aliyuncs.com`` (vpc), both SYSTEM.
        """
        region = region or self.region
        name = name or instance_id
        if domains is None:
            domains = [
                ("internet", f"{name}-registry.{region}.cr.aliyuncs.com", "SYSTEM"),
                ("vpc", f"{name}-registry-vpc.{region}.cr.aliyuncs.com", "SYSTEM"),
            ]
        for endpoint_type, _domain, kind in domains:
            if endpoint_type not in {"internet", "vpc"} or kind not in {"SYSTEM", "USER"}:
                raise ValueError(f"bad domain entry for {instance_id}: {endpoint_type!r}/{kind!r}")
        with self._lock:
            self._instances[instance_id] = _Instance(
                instance_id, region, name, status, [(t, d, k) for t, d, k in domains], created=self._clock()
            )

    def remove_instance(self, instance_id: str) -> None:
        with self._lock:
            self._instances.pop(instance_id, None)

    def set_endpoint_enabled(self, instance_id: str, endpoint_type: str, enabled: bool) -> None:
        """Flip ``Enable`` of the instance's ``internet`` or ``vpc`` endpoint in ListInstanceEndpoint."""
        with self._lock:
            inst = self._instances[instance_id]
            if enabled:
                inst.disabled_endpoints.discard(endpoint_type)
            else:
                inst.disabled_endpoints.add(endpoint_type)

    def add_role(self, arn: str, *, trusted: bool = True, max_session_duration: int = 43200) -> None:
        """A role AssumeRole/AssumeRoleWithOIDC may target (unknown => 404 EntityNotExist.Role)."""
        with self._lock:
            self._roles[arn.lower()] = _Role(arn, trusted, max_session_duration)

    def add_oidc_provider(self, arn: str) -> None:
        with self._lock:
            self._oidc_providers.add(arn)

    def deny(self, access_key_id_or_role: str, action: str) -> None:
        """Make ``action`` answer 403 Forbidden.RAM for that AccessKey id, role ARN or role name.

        ``action`` uses the counter names (``"*"`` = every action).
        """
        with self._lock:
            self._denied.add((access_key_id_or_role, _canonical_action(action)))

    def allow(self, access_key_id_or_role: str, action: str) -> None:
        with self._lock:
            self._denied.discard((access_key_id_or_role, _canonical_action(action)))

    def inject_fault(
        self,
        action: str | None,
        kind: str,
        *,
        times: int | None = 1,
        retry_after_ms: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Make the next ``times`` requests for ``action`` (None = any) fail with ``kind``.

        Faults are consumed in the order they were injected; ``times=None`` keeps one until
        :meth:`clear_faults`.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(FAULT_KINDS)}")
        if action is not None:
            action = _canonical_action(action)
            if action not in ACTIONS:
                raise ValueError(f"unknown action {action!r}; one of {ACTIONS}")
        if times is not None and times < 1:
            raise ValueError("times must be >= 1 or None")
        with self._lock:
            self._faults.append(_Fault(action, kind, times, retry_after_ms, delay))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_token_lifetime(self, seconds: float) -> None:
        """Lifetime of registry tokens issued from now on (EE and PE)."""
        with self._lock:
            self._token_lifetime = float(seconds)

    def set_sts_lifetime(self, seconds: float, *, force: bool = False) -> None:
        """Default lifetime of STS/IMDS credentials; ``force`` also overrides ``DurationSeconds``."""
        with self._lock:
            self._sts_lifetime = float(seconds)
            self._forced_sts_lifetime = float(seconds) if force else None
            self._imds_key = None  # the next IMDS read gets credentials with the new lifetime

    def rotate_imds_credentials(self) -> None:
        """Make the next IMDS credentials read return a fresh key (the old one stays valid until expiry)."""
        with self._lock:
            self._imds_key = None

    def revoke_sts_credentials(self, access_key_id: str | None = None) -> None:
        """Forget an issued STS key (or all): later calls signed with it get InvalidAccessKeyId.NotFound."""
        with self._lock:
            if access_key_id is None:
                self._sts_keys.clear()
                self._imds_key = None
            else:
                self._sts_keys.pop(access_key_id, None)
                if self._imds_key == access_key_id:
                    self._imds_key = None

    # ------------------------------------------------------------------------------------------
    # observation

    def calls(self, action: str | None = None) -> int:
        """Requests received for ``action`` (None = all), faulted and rejected ones included."""
        with self._lock:
            if action is None:
                return sum(self._calls.values())
            return self._calls[_canonical_action(action)]

    def reset_calls(self) -> None:
        with self._lock:
            self._calls.clear()
            self._requests.clear()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._requests)

    def sts_principal(self, access_key_id: str) -> str | None:
        """The role ARN behind an STS AccessKey id the emulator issued, else None."""
        with self._lock:
            key = self._sts_keys.get(access_key_id)
            return key.role_arn if key else None

    def is_valid_registry_login(self, username: str, password: str, now: float | None = None) -> bool:
        """Would the registry accept this login (a token issued here, not expired at ``now``)?"""
        now = self._clock() if now is None else now
        with self._lock:
            if self._fixed is not None:
                fu, fp = self._fixed
                if secrets.compare_digest(username, fu) and secrets.compare_digest(
                    password.encode(), fp.encode()
                ):
                    return True
            login = self._logins.get(password)
            return login is not None and login.username == username and now < login.expires_at

    @property
    def imds_role_arn(self) -> str:
        return f"acs:ram::{self.account_id}:role/{self.role_name}"

    # ------------------------------------------------------------------------------------------
    # request handling (called from server threads)

    def _serve(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> _Reply:
        split = urlsplit(target)
        path = split.path or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        params = dict(query)
        if body and headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            with contextlib.suppress(UnicodeDecodeError):
                params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        host = headers.get("host", "") if not split.netloc else split.netloc
        action = self._classify(method, path, headers, params)
        now = self._clock()
        with self._lock:
            self._calls[action] += 1
            fault = self._take_fault(action)
        caller = _Caller()
        reply: _Reply
        fault_kind = fault.kind if fault else None
        if fault is not None and fault.kind == "slow":
            self._stopping.wait(fault.delay)
            fault = None
        if fault is not None:
            reply = self._fault_reply(action, fault, host)
        else:
            try:
                if action in IMDS_ACTIONS:
                    reply = self._serve_imds(action, method, path, headers, now)
                else:
                    if action == UNKNOWN:
                        raise _ApiError(
                            404,
                            "InvalidAction.NotFound",
                            "Specified api is not found, please check your url and method.",
                        )
                    self._authenticate(caller, action, method, path, query, params, headers, body, now)
                    self._check_denied(action, caller)
                    reply = self._dispatch(action, params, host, caller, now)
            except _ApiError as err:
                reply = self._error_reply(action, err, host)
        record = RecordedRequest(
            action=action,
            method=method,
            path=path,
            access_key_id=caller.access_key_id,
            security_token_present=caller.security_token_present,
            status=0 if reply.drop else reply.status,
            params=MappingProxyType({k: v for k, v in params.items() if k not in _SECRET_PARAMS}),
            signature_kind=caller.signature_kind,
            principal=caller.principal,
            credentials_provider=headers.get("x-acs-credentials-provider"),
            host=host,
            at=now,
            fault=fault_kind,
        )
        with self._lock:
            self._requests.append(record)
        log.debug("emulator %s %s -> %s", action, method, record.status)
        return reply

    @staticmethod
    def _classify(method: str, path: str, headers: Mapping[str, str], params: Mapping[str, str]) -> str:
        if path.startswith("/latest/"):
            if path == "/latest/api/token":
                return IMDS_TOKEN
            if path.rstrip("/") == _IMDS_CREDS_PREFIX.rstrip("/"):
                return IMDS_ROLE
            if path.startswith(_IMDS_CREDS_PREFIX):
                return IMDS_CREDENTIALS
            if path.rstrip("/") == "/latest/meta-data/region-id":
                return IMDS_REGION
            return IMDS_OTHER
        action = headers.get("x-acs-action") or params.get("Action") or ""
        version = headers.get("x-acs-version") or params.get("Version") or ""
        if action == "GetAuthorizationToken" and (version == "2016-06-07" or path.rstrip("/") == "/tokens"):
            return PE_TOKEN
        if not action and path.rstrip("/") == "/tokens" and method == "GET":
            return PE_TOKEN
        if action in ACTIONS:
            return action
        return UNKNOWN

    def _take_fault(self, action: str) -> _Fault | None:
        for i, f in enumerate(self._faults):
            if f.action is None or f.action == action:
                if f.remaining is not None:
                    f.remaining -= 1
                    if f.remaining <= 0:
                        del self._faults[i]
                return f
        return None

    # ------------------------------------------------------------------------------------------
    # authentication

    def _authenticate(
        self,
        caller: _Caller,
        action: str,
        method: str,
        path: str,
        query: Mapping[str, str],
        params: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes,
        now: float,
    ) -> None:
        """Fill ``caller`` (even when rejecting, so the record names the key) or raise."""
        auth = headers.get("authorization", "")
        if auth:
            parsed = parse_acs3_authorization(auth)
            if parsed is None:
                raise _ApiError(
                    400, "IncompleteSignature", "The request signature does not conform to standards."
                )
            token = headers.get("x-acs-security-token")
            caller.access_key_id, caller.security_token_present, caller.signature_kind = (
                parsed.access_key_id,
                bool(token),
                "acs3",
            )
            secret = self._resolve_key(caller, token, now)
            if self.verify_signatures:
                if parsed.algorithm != ACS3_ALGORITHM:
                    raise _ApiError(
                        400, "SignatureDoesNotMatch", f"Unsupported signature type {parsed.algorithm}."
                    )
                declared = headers.get("x-acs-content-sha256", "")
                if declared != hashlib.sha256(body).hexdigest():
                    raise _ApiError(
                        400, "SignatureDoesNotMatch", "x-acs-content-sha256 does not match the body."
                    )
                sts = acs3_string_to_sign(
                    method, unquote(path), query, headers, parsed.signed_headers, declared
                )
                if not constant_time_in(parsed.signature, (acs3_signature(secret, sts),)):
                    raise _ApiError(
                        400,
                        "SignatureDoesNotMatch",
                        "Specified signature does not match our calculation. "
                        f"server string to sign is:{sts.replace(chr(10), '#')}",
                    )
            return
        if "Signature" in params or "AccessKeyId" in params:
            token = params.get("SecurityToken")
            caller.access_key_id, caller.security_token_present, caller.signature_kind = (
                params.get("AccessKeyId") or None,
                bool(token),
                "rpc-v1",
            )
            if not caller.access_key_id:
                raise _ApiError(400, "MissingAccessKeyId", "AccessKeyId is mandatory for this action.")
            secret = self._resolve_key(caller, token, now)
            if self.verify_signatures:
                if params.get("SignatureMethod", "HMAC-SHA1") != "HMAC-SHA1":
                    raise _ApiError(
                        400, "InvalidSignatureMethod", "Specified signature method is not supported."
                    )
                if not constant_time_in(
                    params.get("Signature", ""), rpc_v1_signatures(method, params, secret)
                ):
                    raise _ApiError(
                        400,
                        "SignatureDoesNotMatch",
                        "Specified signature is not matched with our calculation.",
                    )
            return
        if action == ASSUME_ROLE_OIDC or not self.verify_signatures:
            return
        raise _ApiError(400, "MissingAccessKeyId", "AccessKeyId is mandatory for this action.")

    def _resolve_key(self, caller: _Caller, token: str | None, now: float) -> str:
        """Return the secret for ``caller.access_key_id`` and fill in its principal; raise on bad keys."""
        ak = caller.access_key_id or ""
        with self._lock:
            sts = self._sts_keys.get(ak)
            long_term = self._access_keys.get(ak)
        if sts is not None:
            caller.principal = sts.role_arn
            caller.role_arn = sts.role_arn
            caller.sts_expires_at = sts.expires_at
            if not self.verify_signatures:
                return sts.secret
            if not token:
                raise _ApiError(
                    400, "MissingSecurityToken", "SecurityToken is mandatory for an STS AccessKey."
                )
            if not secrets.compare_digest(token.encode(), sts.security_token.encode()):
                raise _ApiError(
                    400,
                    "InvalidSecurityToken.Mismatch",
                    "Specified SecurityToken mismatch with the AccessKey.",
                )
            if now >= sts.expires_at:
                raise _ApiError(400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired.")
            return sts.secret
        if long_term is not None:
            caller.principal = ak
            if self.verify_signatures and token:
                raise _ApiError(
                    400, "InvalidSecurityToken.Malformed", "A SecurityToken was sent with a long-term key."
                )
            return long_term
        caller.principal = ak or None
        if not self.verify_signatures:
            return ""
        raise _ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")

    def _check_denied(self, action: str, caller: _Caller) -> None:
        if action == UNKNOWN:
            return
        who = {caller.access_key_id, caller.principal}
        if caller.role_arn:
            m = _ROLE_ARN_RE.match(caller.role_arn)
            if m:
                who.add(m.group("name"))
        with self._lock:
            denied = any((w, a) in self._denied for w in who if w for a in (action, "*"))
        if denied:
            raise self._forbidden(action, caller.principal or caller.access_key_id or "anonymous", caller)

    def _forbidden(self, action: str, principal: str, caller: _Caller | None = None) -> _ApiError:
        ram_action = {
            EE_TOKEN: "cr:GetAuthorizationToken",
            PE_TOKEN: "cr:GetAuthorizationToken",
            LIST_INSTANCE_ENDPOINT: "cr:ListInstanceEndpoint",
            LIST_INSTANCE: "cr:ListInstance",
            ASSUME_ROLE: "sts:AssumeRole",
            ASSUME_ROLE_OIDC: "sts:AssumeRole",
            GET_CALLER_IDENTITY: "sts:GetCallerIdentity",
        }.get(action, f"cr:{action}")
        assumed = caller is not None and caller.role_arn is not None
        detail = {
            "PolicyType": "AccountLevelIdentityBasedPolicy",
            "AuthPrincipalOwnerId": self.account_id,
            "AuthPrincipalType": "AssumedRoleUser" if assumed else "SubUser",
            "AuthPrincipalDisplayName": principal,
            "NoPermissionType": "ImplicitDeny",
            "AuthAction": ram_action,
            "EncodedDiagnosticMessage": base64.b64encode(f"{principal} {ram_action}".encode()).decode(),
        }
        return _ApiError(
            403,
            "Forbidden.RAM",
            f"User not authorized to operate on the specified resource, or this API doesn't support RAM. "
            f"AuthAction: {ram_action}",
            extra={"AccessDeniedDetail": detail},
        )

    # ------------------------------------------------------------------------------------------
    # replies

    def _json(self, status: int, payload: Mapping[str, Any], headers: dict[str, str] | None = None) -> _Reply:
        hdrs = dict(headers or {})
        rid = payload.get("RequestId") or payload.get("requestId")
        if rid:
            hdrs.setdefault("x-acs-request-id", str(rid))
        return _Reply(status, json.dumps(payload, separators=(",", ":")).encode("utf-8"), headers=hdrs)

    def _error_reply(
        self, action: str, err: _ApiError, host: str, headers: dict[str, str] | None = None
    ) -> _Reply:
        rid = _request_id()
        if action in IMDS_ACTIONS:
            return _Reply(
                err.status, f"{err.code}\n".encode(), content_type="text/plain", headers=dict(headers or {})
            )
        if action == PE_TOKEN:
            payload: dict[str, Any] = {"code": err.code, "message": err.message, "requestId": rid}
        else:
            payload = {
                "RequestId": rid,
                "HostId": host,
                "Code": err.code,
                "Message": err.message,
                "Recommend": f"https://api.aliyun.com/troubleshoot?q={err.code}",
            }
        payload.update(err.extra)
        return self._json(err.status, payload, headers)

    def _fault_reply(self, action: str, fault: _Fault, host: str) -> _Reply:
        kind = fault.kind
        if kind == "drop":
            return _Reply(0, b"", drop=True)
        if kind == "non-json":
            return _Reply(
                502,
                b"<html><head><title>502 Bad Gateway</title></head><body>502 Bad Gateway</body></html>",
                content_type="text/html",
            )
        if kind == "is-success-false":
            rid = _request_id()
            if action == PE_TOKEN:
                return self._json(200, {"code": "INSTANCE_NOT_EXIST", "requestId": rid, "data": {}})
            return self._json(
                200,
                {
                    "RequestId": rid,
                    "Code": "INSTANCE_NOT_EXIST",
                    "IsSuccess": False,
                    "Message": "instance not exist",
                },
            )
        headers: dict[str, str] = {}
        if kind == "throttle":
            err = _ApiError(400, "Throttling.User", "Request was denied due to user flow control.")
        elif kind == "throttle-retry-after":
            err = _ApiError(400, "Throttling.User", "Request was denied due to user flow control.")
            headers["x-acs-retry-after"] = str(
                fault.retry_after_ms if fault.retry_after_ms is not None else 1000
            )
        elif kind == "429":
            err = _ApiError(429, "Throttling", "Request was denied due to request throttling.")
        elif kind == "403":
            err = self._forbidden(action, "fault-injected")
        elif kind == "404":
            err = _ApiError(404, "INSTANCE_NOT_EXIST", "The instance does not exist.")
        elif kind == "500":
            err = _ApiError(
                500, "InternalError", "The request processing has failed due to some unknown error."
            )
        elif kind == "503":
            err = _ApiError(
                503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server."
            )
        elif kind == "invalid-ak":
            err = _ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        else:  # pragma: no cover - validated in inject_fault
            raise AssertionError(kind)
        if fault.retry_after_ms is not None:
            headers["x-acs-retry-after"] = str(fault.retry_after_ms)
        return self._error_reply(action, err, host, headers)

    # ------------------------------------------------------------------------------------------
    # CR and STS actions

    def _dispatch(
        self, action: str, params: Mapping[str, str], host: str, caller: _Caller, now: float
    ) -> _Reply:
        if action == EE_TOKEN:
            return self._ee_token(params, host, caller, now)
        if action == PE_TOKEN:
            return self._pe_token(caller, now)
        if action == LIST_INSTANCE_ENDPOINT:
            return self._list_instance_endpoint(params, host)
        if action == LIST_INSTANCE:
            return self._list_instance(params, host)
        if action == ASSUME_ROLE:
            return self._assume_role(params, caller, now, oidc=False)
        if action == ASSUME_ROLE_OIDC:
            return self._assume_role(params, caller, now, oidc=True)
        if action == GET_CALLER_IDENTITY:
            return self._caller_identity(caller)
        raise _ApiError(
            404, "InvalidAction.NotFound", "Specified api is not found, please check your url and method."
        )

    def _visible(self, inst: _Instance, host: str) -> bool:
        m = _CR_HOST_RE.match(host)
        if m:
            return inst.region == m.group("region")
        return inst.region == self.region if self.strict_region else True

    def _find_instance(self, params: Mapping[str, str], host: str) -> _Instance:
        instance_id = params.get("InstanceId", "")
        if not instance_id:
            raise _ApiError(400, "MissingInstanceId", "InstanceId is mandatory for this action.")
        with self._lock:
            inst = self._instances.get(instance_id)
        if inst is None or not self._visible(inst, host):
            raise _ApiError(404, "INSTANCE_NOT_EXIST", "The instance does not exist.")
        return inst

    def _issue_login(
        self, target: str, lifetime: float, caller: _Caller, now: float
    ) -> tuple[str, str, float]:
        with self._lock:
            lifetime = min(lifetime, self._token_lifetime)
        expires = now + lifetime
        if caller.sts_expires_at is not None:  # "with STS, valid within the STS token's validity"
            expires = min(expires, caller.sts_expires_at)
        expires = math.floor(expires * 1000) / 1000  # what ExpireTime/expireDate (ms) advertise
        if self._fixed is not None:
            user, password = self._fixed
        else:
            user, password = TEMP_USERNAME, _random_alnum(48)
        with self._lock:
            if len(self._logins) >= 4096:  # forget long-expired tokens (sandbox runs for hours)
                self._logins = {p: lg for p, lg in self._logins.items() if lg.expires_at > now - 3600}
            self._logins[password] = _Login(user, expires, target)
        return user, password, expires

    def _ee_token(self, params: Mapping[str, str], host: str, caller: _Caller, now: float) -> _Reply:
        inst = self._find_instance(params, host)
        lifetime = math.inf
        hours = params.get("ExpiresInHours")
        if hours:
            try:
                lifetime = float(int(hours)) * 3600.0
            except ValueError as exc:
                raise _ApiError(400, "PARAM_INVALID", "ExpiresInHours must be an integer.") from exc
        user, password, expires = self._issue_login(inst.instance_id, lifetime, caller, now)
        return self._json(
            200,
            {
                "RequestId": _request_id(),
                "ExpireTime": int(expires * 1000),
                "Code": "success",
                "IsSuccess": True,
                "TempUsername": user,
                "AuthorizationToken": password,
            },
        )

    def _pe_token(self, caller: _Caller, now: float) -> _Reply:
        user, password, expires = self._issue_login("personal", math.inf, caller, now)
        return self._json(
            200,
            {
                "data": {
                    "authorizationToken": password,
                    "tempUserName": user,
                    "expireDate": int(expires * 1000),
                },
                "requestId": _request_id(),
            },
        )

    def _list_instance_endpoint(self, params: Mapping[str, str], host: str) -> _Reply:
        inst = self._find_instance(params, host)
        module = params.get("ModuleName") or "Registry"
        endpoints: list[dict[str, Any]] = []
        if module == "Registry":
            for endpoint_type in ("internet", "vpc"):
                domains = [{"Domain": d, "Type": k} for t, d, k in inst.domains if t == endpoint_type]
                if not domains:
                    continue
                is_vpc = endpoint_type == "vpc"
                endpoints.append(
                    {
                        "EndpointType": endpoint_type,
                        "Enable": endpoint_type not in inst.disabled_endpoints,
                        "Status": "RUNNING",
                        "AclEnable": not is_vpc,
                        "AclEntries": [] if is_vpc else [{"Entry": "0.0.0.0/0"}],
                        "Domains": domains,
                        "LinkedVpcs": [{"VpcId": "vpc-fake"}] if is_vpc else [],
                    }
                )
        return self._json(
            200, {"Code": "success", "IsSuccess": True, "RequestId": _request_id(), "Endpoints": endpoints}
        )

    def _list_instance(self, params: Mapping[str, str], host: str) -> _Reply:
        try:
            page_no = int(params.get("PageNo") or 1)
            page_size = int(params.get("PageSize") or 30)
        except ValueError as exc:
            raise _ApiError(400, "PARAM_INVALID", "PageNo and PageSize must be integers.") from exc
        if page_no < 1 or not 1 <= page_size <= 100:
            raise _ApiError(400, "PARAM_INVALID", "PageNo >= 1 and 1 <= PageSize <= 100.")
        name = params.get("InstanceName")
        status = params.get("InstanceStatus")
        with self._lock:
            found = [
                i
                for i in sorted(self._instances.values(), key=lambda i: (i.created, i.instance_id))
                if self._visible(i, host)
                and (not name or i.name == name)
                and (not status or i.status == status)
            ]
        page = found[(page_no - 1) * page_size : page_no * page_size]
        return self._json(
            200,
            {
                "Code": "success",
                "IsSuccess": True,
                "RequestId": _request_id(),
                "PageNo": page_no,
                "PageSize": page_size,
                "TotalCount": len(found),
                "Instances": [
                    {
                        "InstanceId": i.instance_id,
                        "InstanceName": i.name,
                        "RegionId": i.region,
                        "InstanceStatus": i.status,
                        "InstanceSpecification": "Enterprise_Basic",
                        "InstanceIssue": "",
                        "ResourceGroupId": "rg-fake",
                        "CreateTime": format_expiration(i.created),
                        "ModifiedTime": format_expiration(i.created),
                        "Tags": [],
                    }
                    for i in page
                ],
            },
        )

    def _assume_role(self, params: Mapping[str, str], caller: _Caller, now: float, *, oidc: bool) -> _Reply:
        role_arn = params.get("RoleArn", "")
        session = params.get("RoleSessionName", "")
        if not role_arn:
            raise _ApiError(400, "MissingRoleArn", "RoleArn is mandatory for this action.")
        if not session:
            raise _ApiError(400, "MissingRoleSessionName", "RoleSessionName is mandatory for this action.")
        if not _SESSION_NAME_RE.match(session):
            raise _ApiError(
                400, "InvalidParameter.RoleSessionName", "The parameter RoleSessionName is wrongly formed."
            )
        oidc_info: dict[str, Any] | None = None
        if oidc:
            oidc_info = self._check_oidc(params, now)
        policy = params.get("Policy")
        if policy:
            try:
                json.loads(policy)
            except ValueError as exc:
                raise _ApiError(
                    400,
                    "InvalidParameter.PolicyGrammar",
                    "The parameter Policy has not passed grammar check.",
                ) from exc
        with self._lock:
            role = self._roles.get(role_arn.lower())
            forced = self._forced_sts_lifetime
            default_lifetime = self._sts_lifetime
        if role is None:
            raise _ApiError(404, "EntityNotExist.Role", "The role not exists: " + role_arn)
        if not role.trusted:
            who = caller.principal or ("oidc" if oidc else "anonymous")
            raise _ApiError(
                403,
                "NoPermission",
                "You are not authorized to do this action. You should be authorized by RAM. "
                f"Principal: {who}, "
                f"Resource: {role.arn}, Action: sts:AssumeRole",
            )
        duration_s = params.get("DurationSeconds")
        if duration_s:
            try:
                duration = int(duration_s)
            except ValueError as exc:
                raise _ApiError(
                    400, "InvalidParameter.DurationSeconds", "DurationSeconds must be an integer."
                ) from exc
            if not 900 <= duration <= role.max_session_duration:
                raise _ApiError(
                    400,
                    "InvalidParameter.DurationSeconds",
                    f"The Min/Max value of DurationSeconds is 15min/{role.max_session_duration // 60}min.",
                )
            lifetime = float(duration)
        else:
            lifetime = default_lifetime
        if forced is not None:
            lifetime = forced
        ak, secret, token, expires = self._issue_sts(
            role.arn, lifetime, now, ASSUME_ROLE_OIDC if oidc else ASSUME_ROLE, session
        )
        rid = _request_id()
        payload: dict[str, Any] = {
            "RequestId": rid,
            "AssumedRoleUser": {
                "Arn": f"{role.arn}/{session}",
                "AssumedRoleId": f"{self._role_id(role.arn)}:{session}",
            },
            "Credentials": {
                "AccessKeyId": ak,
                "AccessKeySecret": secret,
                "SecurityToken": token,
                "Expiration": format_expiration(expires),
            },
        }
        if oidc_info is not None:
            payload["OIDCTokenInfo"] = oidc_info
        return self._json(200, payload)

    def _caller_identity(self, caller: _Caller) -> _Reply:
        ak = caller.access_key_id or ""
        with self._lock:
            key = self._sts_keys.get(ak)
        if key is not None:
            m = _ROLE_ARN_RE.match(key.role_arn)
            account = m.group("account") if m else self.account_id
            role_name = m.group("name") if m else key.role_arn
            payload = {
                "AccountId": account,
                "Arn": f"acs:ram::{account}:assumed-role/{role_name}/{key.session}",
                "IdentityType": "AssumedRoleUser",
                "PrincipalId": f"{key.role_id}:{key.session}",
                "RoleId": key.role_id,
            }
        else:
            user_id = str(int(hashlib.sha256(ak.encode()).hexdigest()[:15], 16)).rjust(16, "2")[:16]
            payload = {
                "AccountId": self.account_id,
                "Arn": f"acs:ram::{self.account_id}:user/{ak.lower()}",
                "IdentityType": "RAMUser",
                "PrincipalId": user_id,
                "UserId": user_id,
            }
        return self._json(200, {"RequestId": _request_id(), **payload})

    def _check_oidc(self, params: Mapping[str, str], now: float) -> dict[str, Any]:
        provider = params.get("OIDCProviderArn", "")
        token = params.get("OIDCToken", "")
        if not provider:
            raise _ApiError(400, "MissingOIDCProviderArn", "OIDCProviderArn is mandatory for this action.")
        if not token:
            raise _ApiError(400, "MissingOIDCToken", "OIDCToken is mandatory for this action.")
        with self._lock:
            known = provider in self._oidc_providers
        if not known:
            raise _ApiError(
                404, "EntityNotExist.OIDCProvider", "The OIDC provider does not exist: " + provider
            )
        claims = _jwt_claims(token)
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp <= now:
            raise _ApiError(400, "AuthenticationFail.OIDCToken.Expired", "The OIDC token has expired.")
        aud = claims.get("aud")
        return {
            "Subject": str(claims.get("sub", "system:serviceaccount:kube-system:acr-helper")),
            "Issuer": str(claims.get("iss", "https://oidc-ack.example.invalid")),
            "ClientIds": ",".join(aud) if isinstance(aud, list) else str(aud or "sts.aliyuncs.com"),
            "IssuanceTime": format_expiration(float(claims.get("iat") or now)),
            "ExpirationTime": format_expiration(float(exp if isinstance(exp, int | float) else now + 3600)),
            "VerificationInfo": "Success",
        }

    @staticmethod
    def _role_id(role_arn: str) -> str:
        return str(int(hashlib.sha256(role_arn.lower().encode()).hexdigest()[:15], 16)).rjust(17, "3")[:17]

    def _issue_sts(
        self, role_arn: str, lifetime: float, now: float, source: str, session: str = ""
    ) -> tuple[str, str, str, float]:
        ak = "STS." + _random_alnum(24)
        secret = _random_alnum(40)
        token = "CAIS" + base64.b64encode(secrets.token_bytes(96)).decode("ascii")
        expires = math.ceil(now + lifetime)
        with self._lock:
            self._sts_keys[ak] = _StsKey(
                secret, token, float(expires), role_arn, source, session, self._role_id(role_arn)
            )
        return ak, secret, token, float(expires)

    # ------------------------------------------------------------------------------------------
    # ECS instance metadata

    def _serve_imds(
        self, action: str, method: str, path: str, headers: Mapping[str, str], now: float
    ) -> _Reply:
        if action == IMDS_TOKEN:
            if method != "PUT":
                raise _ApiError(405, "MethodNotAllowed", "use PUT")
            if self.reject_imds_token:
                raise _ApiError(403, "Forbidden", "IMDS token service disabled")
            try:
                ttl = int(headers.get(_IMDS_TOKEN_TTL_HEADER, ""))
            except ValueError as exc:
                raise _ApiError(
                    400, "MissingTTL", "X-aliyun-ecs-metadata-token-ttl-seconds is required"
                ) from exc
            if not 1 <= ttl <= 21600:
                raise _ApiError(400, "InvalidTTL", "ttl must be within 1..21600")
            new_token = _random_alnum(56)
            with self._lock:
                self._imds_tokens[new_token] = now + ttl
            return _Reply(200, new_token.encode("ascii"), content_type="text/plain")
        if method != "GET":
            raise _ApiError(405, "MethodNotAllowed", "use GET")
        token = headers.get(_IMDS_TOKEN_HEADER)
        if token:
            with self._lock:
                expiry = self._imds_tokens.get(token)
            if expiry is None or now >= expiry:
                raise _ApiError(401, "Unauthorized", "invalid or expired metadata token")
        elif self.require_imdsv2:
            raise _ApiError(403, "Forbidden", "a metadata token is required (IMDSv2 enforced)")
        if action == IMDS_REGION:
            return _Reply(200, self.region.encode(), content_type="text/plain")
        if action == IMDS_ROLE:
            if not self.role_name:
                raise _ApiError(404, "NotFound", "no RAM role attached")
            return _Reply(200, self.role_name.encode(), content_type="text/plain")
        if action == IMDS_CREDENTIALS:
            name = path[len(_IMDS_CREDS_PREFIX) :].strip("/")
            if not self.role_name or name != self.role_name:
                raise _ApiError(404, "NotFound", "no such role")
            return self._imds_credentials(now)
        raise _ApiError(404, "NotFound", "not found")

    def _imds_credentials(self, now: float) -> _Reply:
        with self._lock:
            key = self._sts_keys.get(self._imds_key) if self._imds_key else None
            lifetime = self._sts_lifetime
            if key is None or key.expires_at - now <= lifetime / 2:
                ak, _s, _t, _e = self._issue_sts(self.imds_role_arn, lifetime, now, "imds", "i-fakeinstance")
                self._imds_key = ak
                self._imds_issued_at = now
                key = self._sts_keys[ak]
            ak = self._imds_key or ""
            issued = self._imds_issued_at
        payload = {
            "AccessKeyId": ak,
            "AccessKeySecret": key.secret,
            "Expiration": format_expiration(key.expires_at),
            "SecurityToken": key.security_token,
            "LastUpdated": format_expiration(issued),
            "Code": "Success",
        }
        return _Reply(200, json.dumps(payload).encode("utf-8"), content_type="text/plain")


def _jwt_claims(token: str) -> dict[str, Any]:
    """Best-effort decode of a JWT payload (no signature check); {} when it is not a JWT."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        return {}
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(raw)
    except (binascii.Error, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def make_fake_jwt(claims: Mapping[str, Any]) -> str:
    """An unsigned JWT-shaped string with ``claims`` (for OIDC token files in tests and the sandbox)."""

    def enc(obj: Mapping[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(dict(obj)).encode()).decode().rstrip("=")

    return f"{enc({'alg': 'none', 'typ': 'JWT'})}.{enc(claims)}.fake-signature"


@contextlib.contextmanager
def running_emulator(**kwargs: Any) -> Iterator[AliyunEmulator]:
    """``with running_emulator(region=...) as emu:`` — start, yield, stop."""
    emu = AliyunEmulator(**kwargs).start()
    try:
        yield emu
    finally:
        emu.stop()


def _parse_instance(spec: str) -> tuple[str, str | None, str | None]:
    # ID[=NAME[@REGION]]
    instance_id, _, rest = spec.partition("=")
    name, _, region = rest.partition("@")
    return instance_id, name or None, region or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m acr_helper.tokens.emulator",
        description="Serve a local Alibaba Cloud emulator (ACR EE/PE, STS, ECS metadata) on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = a free port)")
    parser.add_argument("--region", default="cn-hangzhou")
    parser.add_argument("--token-lifetime", type=float, default=3600.0, help="registry token lifetime (s)")
    parser.add_argument("--sts-lifetime", type=float, default=3600.0, help="default STS/IMDS lifetime (s)")
    parser.add_argument("--instance", action="append", default=[], metavar="ID[=NAME[@REGION]]")
    parser.add_argument("--role", action="append", default=[], metavar="ARN", help="an AssumeRole target")
    parser.add_argument("--oidc-provider", action="append", default=[], metavar="ARN")
    parser.add_argument(
        "--access-key",
        action="append",
        default=[],
        metavar="ID:SECRET",
        help=f"a known AccessKey (default {DEFAULT_ACCESS_KEY_ID} with the documented fake secret)",
    )
    parser.add_argument("--worker-role", default="KubernetesWorkerRole-fake", help="IMDS role name")
    parser.add_argument("--no-verify", action="store_true", help="do not verify signatures")
    parser.add_argument("--require-imdsv2", action="store_true")
    args = parser.parse_args(argv)
    keys: dict[str, str] | None = None
    if args.access_key:
        keys = {}
        for item in args.access_key:
            ak, sep, secret = item.partition(":")
            if not sep:
                parser.error("--access-key wants ID:SECRET")
            keys[ak] = secret
    emu = AliyunEmulator(
        region=args.region,
        token_lifetime=args.token_lifetime,
        sts_lifetime=args.sts_lifetime,
        access_keys=keys,
        role_name=args.worker_role,
        require_imdsv2=args.require_imdsv2,
        verify_signatures=not args.no_verify,
        port=args.port,
    )
    for spec in args.instance:
        instance_id, name, region = _parse_instance(spec)
        emu.add_instance(instance_id, name=name, region=region)
    for arn in args.role:
        emu.add_role(arn)
    for arn in args.oidc_provider:
        emu.add_oidc_provider(arn)
    emu.start()
    print(emu.url, flush=True)
    print(f"known AccessKey ids: {', '.join(sorted(emu._access_keys))}", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emu.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
