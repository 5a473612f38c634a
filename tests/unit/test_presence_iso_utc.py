"""`iso_utc` shows exactly what ``datetime.fromtimestamp(t, UTC)`` shows to the millisecond."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from telephonyd.presence.state import iso_utc


def reference(epoch_s: float) -> str:
    moment = datetime.fromtimestamp(epoch_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False, allow_infinity=False))
def test_any_time_as_datetime_shows_it(epoch_s: float) -> None:
    assert iso_utc(epoch_s) == reference(epoch_s)


@given(st.integers(min_value=0, max_value=4_102_444_799), st.integers(min_value=0, max_value=999_999))
def test_microseconds_near_every_edge(second: int, micro: int) -> None:
    for epoch_s in (second + micro / 1e6, second + (micro + 0.5) / 1e6, second + 0.9999995, second + 0.0005):
        assert iso_utc(epoch_s) == reference(epoch_s)


def test_known_values() -> None:
    assert iso_utc(1795237838.627) == "2026-11-21T05:10:38.627Z" == reference(1795237838.627)
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"
    assert iso_utc(59.9999996) == reference(59.9999996) == "1970-01-01T00:01:00.000Z"  # rounds into the next second
