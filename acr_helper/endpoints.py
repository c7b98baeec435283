"""One small HTTP server: /metrics, /healthz (the loop's heartbeat is fresh), /readyz.

/readyz is ready once every cache has synced and the first full pass has completed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class Health:
    """Heartbeat and readiness, set by the runtime loop, read by the HTTP handlers."""

    def __init__(self, heartbeat_timeout: float = 120.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._timeout = heartbeat_timeout
        self._beat = clock()
        self._ready = False
        self._reason = "starting: caches not synced"
        self._lock = threading.Lock()

    def beat(self) -> None:
        with self._lock:
            self._beat = self._clock()

    def set_ready(self, ready: bool, reason: str = "") -> None:
        with self._lock:
            self._ready = ready
            self._reason = reason

    def healthy(self) -> tuple[bool, str]:
        with self._lock:
            age = self._clock() - self._beat
        if age > self._timeout:
            return False, f"loop heartbeat is {age:.0f}s old (limit {self._timeout:.0f}s)"
        return True, f"ok (heartbeat {age:.1f}s ago)"

    def ready(self) -> tuple[bool, str]:
        with self._lock:
            return self._ready, ("ok" if self._ready else self._reason)


def parse_bind_address(address: str) -> tuple[str, int] | None:
    """`:8080` -> ("0.0.0.0", 8080); `127.0.0.1:0` -> ("127.0.0.1", 0); "0" -> None (disabled)."""
    address = address.strip()
    if address in ("0", "", "off", "false"):
        return None
    host, sep, port = address.rpartition(":")
    if not sep:
        raise ValueError(f"metrics bind address {address!r}: expected host:port, e.g. :8080")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class EndpointServer:
    def __init__(self, address: str, registry: CollectorRegistry, health: Health) -> None:
        self._bind = parse_bind_address(address)
        self._registry = registry
        self._health = health
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        return self._server.server_address[1] if self._server else None

    @property
    def url(self) -> str | None:
        if not self._server:
            return None
        host = str(self._server.server_address[0])
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        if self._bind is None:
            return
        registry, health = self._registry, self._health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
                elif path in ("/healthz", "/livez"):
                    ok, msg = health.healthy()
                    body, ctype, code = msg.encode() + b"\n", "text/plain", 200 if ok else 503
                elif path == "/readyz":
                    ok, msg = health.ready()
                    body, ctype, code = msg.encode() + b"\n", "text/plain", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(self._bind, Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="endpoints", daemon=True)
        self._thread.start()
        log.info("serving /metrics, /healthz and /readyz on %s", self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
