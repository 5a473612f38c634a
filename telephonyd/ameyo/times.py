"""Times in Ameyo callbacks and TopS.II payloads (pure).

TopS.II wants ``YYYY-MM-DD HH:mm:ss`` in the configured zone (Asia/Tokyo by default). Ameyo sends
``callConnectedTime`` as ``2026/01/20 11:16:41 +0900``; when Ameyo leaves the ``+`` unencoded in the
query string it arrives decoded as a space (``11:16:41  0900``), which is accepted as ``+0900``.
A value that matches no known form raises `ValueError`: the caller turns it into a rejected callback
naming the field, never into a silent "now".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo

TOPS_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

_STAMP = re.compile(
    r"^(?P<y>\d{4})[/-](?P<mo>\d{1,2})[/-](?P<d>\d{1,2})[ T](?P<h>\d{1,2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?:\.\d{1,6})?"
    r"(?:\s*(?P<z>Z)|\s*(?P<sign>[+-])?\s*(?P<oh>\d{2}):?(?P<om>\d{2}))?$"
)

#: Plausible range for a call time; anything outside is a malformed value (epoch in ms read as s, ...).
_MIN_YEAR, _MAX_YEAR = 2000, 2100


def parse_time(raw: str, zone: tzinfo) -> datetime:
    """An aware datetime from an Ameyo time value; naive values are read in ``zone``.

    Accepted: ``YYYY/MM/DD HH:MM:SS [+HHMM]``, ``YYYY-MM-DD HH:MM:SS[.ffffff] [+HH:MM|Z]`` (also with
    ``T``), epoch seconds (10 digits) or milliseconds (13 digits). Raises `ValueError` otherwise.
    """
    text = raw.strip()
    if text.isdigit() and len(text) in (10, 13):
        seconds = int(text) / (1000 if len(text) == 13 else 1)
        value = datetime.fromtimestamp(seconds, tz=UTC)
        return _checked(value, raw)
    match = _STAMP.match(text)
    if match is None:
        raise ValueError(f"unrecognised time {raw!r}")
    parts = {k: int(v) for k, v in match.groupdict().items() if v and k not in ("z", "sign")}
    if match["z"]:
        zone_of_value: tzinfo = UTC
    elif "oh" in parts:
        offset = timedelta(hours=parts["oh"], minutes=parts["om"])
        if offset > timedelta(hours=14):
            raise ValueError(f"bad UTC offset in {raw!r}")
        zone_of_value = timezone(-offset if match["sign"] == "-" else offset)
    else:
        zone_of_value = zone
    try:
        value = datetime(parts["y"], parts["mo"], parts["d"], parts["h"], parts["mi"], parts["s"], tzinfo=zone_of_value)
    except ValueError:
        raise ValueError(f"impossible date or time in {raw!r}") from None
    return _checked(value, raw)


def _checked(value: datetime, raw: str) -> datetime:
    if not _MIN_YEAR <= value.year <= _MAX_YEAR:
        raise ValueError(f"time {raw!r} is outside {_MIN_YEAR}-{_MAX_YEAR}")
    return value


def tops_time(value: datetime, zone: tzinfo) -> str:
    """``value`` as TopS.II writes times: ``YYYY-MM-DD HH:mm:ss`` in ``zone``."""
    return value.astimezone(zone).strftime(TOPS_TIME_FORMAT)
