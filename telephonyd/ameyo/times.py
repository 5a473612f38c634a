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
    fast = _fast(text, zone)
    if fast is not None:
        return _checked(fast, raw)
    if text.isdigit() and len(text) in (10, 13):
        seconds = int(text) / (1000 if len(text) == 13 else 1)
        value = datetime.fromtimestamp(seconds, tz=UTC)
        return _checked(value, raw)
    return _checked(_parse_stamp(text, raw, zone), raw)


def _parse_stamp(text: str, raw: str, zone: tzinfo) -> datetime:
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
    return value


def _fast(text: str, zone: tzinfo) -> datetime | None:
    """The two forms Ameyo sends (``2026-01-20 11:16:41``, ``2026/01/20 11:16:41 +0900``) by the C
    parser; None for anything else (the regular expression decides)."""
    size = len(text)
    if size not in (19, 25) or text[4] != text[7] or text[4] not in "-/" or text[10] != " " or text[13] != ":" \
            or text[16] != ":" or not text[:19].replace(text[4], "").replace(" ", "").replace(":", "").isdigit():
        return None
    if size == 25 and (text[19] != " " or text[20] not in "+-" or not text[21:].isdigit() or text[21:23] >= "14"):
        return None
    try:
        value = datetime.fromisoformat(f"{text[:4]}-{text[5:7]}-{text[8:]}".replace(" +", "+").replace(" -", "-"))
    except ValueError:
        return None
    return value.replace(tzinfo=zone) if size == 19 else value


def _checked(value: datetime, raw: str) -> datetime:
    if not _MIN_YEAR <= value.year <= _MAX_YEAR:
        raise ValueError(f"time {raw!r} is outside {_MIN_YEAR}-{_MAX_YEAR}")
    return value


def tops_time(value: datetime, zone: tzinfo) -> str:
    """``value`` as TopS.II writes times: ``YYYY-MM-DD HH:mm:ss`` in ``zone``."""
    return value.astimezone(zone).replace(tzinfo=None).isoformat(" ", "seconds")
