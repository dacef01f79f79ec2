"""Points in time as the front ends take them (ISO 8601 or "7d back") and show them."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from indexer.errors import ConfigError

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, *, now: float | None = None) -> float:
    """A point in time as epoch seconds: ISO 8601 (2026-11-01, 2026-11-01T12:00) or a
    duration back from now (30m, 24h, 7d, 2w). Naive times are UTC."""
    m = _RELATIVE.match(text)
    if m:
        base = now if now is not None else datetime.now(timezone.utc).timestamp()
        return base - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"cannot read time {text!r}: use ISO 8601 (2026-11-01 or 2026-11-01T12:00:00) or 30m/24h/7d"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def format_time(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")
