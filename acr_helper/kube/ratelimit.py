"""A thread-safe token-bucket rate limiter (the Python client has none; client-go's is the model).

`qps` tokens are added per second up to `burst`; each request takes one. When the bucket is empty
the caller is told how long to wait; the reservation is made under the lock, so concurrent callers
queue fairly and the sustained rate never exceeds `qps`. The clock and the sleep are injectable so
tests measure the rate with a fake clock instead of wall time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(
        self,
        qps: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.qps = float(qps)
        self.burst = max(1, int(burst))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._last = clock()

    @property
    def unlimited(self) -> bool:
        return self.qps <= 0

    def reserve(self) -> float:
        """Take one token now; return how long (seconds) the caller must wait before using it."""
        if self.unlimited:
            return 0.0
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._last)
            self._last = now
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.qps)
            self._tokens -= 1.0
            if self._tokens >= 0.0:
                return 0.0
            return -self._tokens / self.qps

    def acquire(self) -> float:
        """Block until one request may go; return the time waited (seconds)."""
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait
