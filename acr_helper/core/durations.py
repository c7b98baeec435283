"""Go-style durations (`15m`, `1h30m`, `90s`, `500ms`) as used by `expiring-threshold`."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`, `15m`, `90s`, `1.5h`; a bare number means seconds. Raises ValueError."""
    s = str(text).strip().lower()
    if not s:
        raise ValueError("empty duration; expected e.g. 15m, 1h, 90s or 1h30m")
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        return timedelta(seconds=float(s))
    pos = 0
    total = 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"{text!r} is not a duration; expected e.g. 15m, 1h, 90s or 1h30m")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """The inverse, for messages: 5400s -> `1h30m`."""
    secs = int(delta.total_seconds())
    if secs == 0:
        return "0s"
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            out += f"{secs // size}{unit}"
            secs %= size
    return out
