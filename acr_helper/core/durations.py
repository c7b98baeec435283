"""Go-style durations (`15m`, `1h30m`, `90s`, `500ms`) as used by `expiring-threshold`.

The grammar is Go's `time.ParseDuration` (units `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, an optional
leading sign, fractions such as `1.5h`), plus two conveniences: `d` for days and a bare number
meaning seconds. Case is ignored (`15M` = `15m`), as are surrounding spaces and spaces between
parts (`1h 30m`).
"""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|μs|ms|s|m|h|d)\s*")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
#: the largest magnitude we accept at all (timedelta overflows near 10^9 days)
_MAX_SECONDS = 100 * 365 * 86400.0
EXAMPLES = "e.g. 15m, 1h, 90s or 1h30m"
#: a value that mentions one of these is never echoed in an error (a credential pasted by mistake)
_SENSITIVE = re.compile(r"secret|password|passwd|token|access[-_]?key", re.IGNORECASE)


def _shown(raw: str) -> str:
    """The input as an error message may show it: at most 40 characters, and nothing at all of a
    value that mentions a secret, password, token or AccessKey."""
    text = raw.strip()
    if _SENSITIVE.search(text):
        return "the value (not shown: it looks like a credential)"
    return repr(text[:40])


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`, `15m`, `90s`, `1.5h`, `-5m`; a bare number means seconds. Raises ValueError.

    The ValueError message never echoes more than the first 40 characters of the input, and
    nothing of an input that mentions a secret, password, token or AccessKey.
    """
    raw = str(text)
    s = raw.strip().lower()
    if not s:
        raise ValueError(f"empty duration; expected {EXAMPLES}")
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:].lstrip()
    if _NUMBER.fullmatch(s):
        total = float(s)
    else:
        pos = 0
        total = 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(s) or pos == 0:
            raise ValueError(f"{_shown(raw)} is not a duration; expected {EXAMPLES}")
    if total > _MAX_SECONDS:
        raise ValueError(f"{_shown(raw)} is far too long for a duration (over 100 years)")
    return timedelta(seconds=sign * total)


def format_duration(delta: timedelta) -> str:
    """The inverse, for messages: 5400s -> `1h30m`; sub-second values as `500ms`."""
    total = delta.total_seconds()
    if total < 0:
        return "-" + format_duration(-delta)
    secs = int(total)
    if secs == 0:
        ms = round(total * 1000)
        return f"{ms}ms" if ms else "0s"
    out = ""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if secs >= size:
            out += f"{secs // size}{unit}"
            secs %= size
    return out
