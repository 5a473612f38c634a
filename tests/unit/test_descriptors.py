"""`plan_descriptors`: HTTP never takes the FastAGI reserve; both listeners fit in the limit."""

from __future__ import annotations

import pytest

from telephonyd.descriptors import ACCEPT_IN_FLIGHT, plan_descriptors
from telephonyd.logs import LogThrottle


@pytest.mark.parametrize("limit", [512, 1024, 4096, 65536])
def test_listeners_and_their_accept_bursts_fit_in_the_limit(limit: int) -> None:
    budget = plan_descriptors(limit=limit, in_use=30, spare=64, http_max=5000, fastagi_max=2000, fastagi_reserved=256)
    used = 30 + 64 + budget.http_connections + budget.fastagi_sessions + 2 * ACCEPT_IN_FLIGHT
    assert used <= limit
    assert limit - 30 - 64 - budget.http_connections - ACCEPT_IN_FLIGHT >= 256  # the FastAGI reserve
    assert budget.fastagi_sessions >= min(256 - ACCEPT_IN_FLIGHT, limit - 30 - 64 - 8 - 2 * ACCEPT_IN_FLIGHT)


def test_large_limit_keeps_the_configured_caps() -> None:
    budget = plan_descriptors(limit=65536, in_use=30, spare=64, http_max=512, fastagi_max=2000, fastagi_reserved=256)
    assert (budget.http_connections, budget.fastagi_sessions) == (512, 2000)
    assert budget.lowered == ()


def test_log_throttle_shows_one_line_per_interval_with_the_count_held_back() -> None:
    now = [0.0]
    lines: list[dict] = []

    class Logger:
        def log(self, level: int, message: str, extra: dict) -> None:
            lines.append(extra)

    throttle = LogThrottle(Logger(), interval_s=10.0, clock=lambda: now[0])  # type: ignore[arg-type]
    for _ in range(500):
        throttle.log(30, "wrong_token", "refused")
        now[0] += 1.0
    assert [line["suppressed"] for line in lines] == [0] + [9] * 49


def test_accept_errors_are_counted_each_and_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    import asyncio
    import errno

    from telephonyd.descriptors import ACCEPT_ERROR_MESSAGE, AcceptErrorReporter

    reporter = AcceptErrorReporter(interval_s=60.0)
    loop = asyncio.new_event_loop()
    try:
        other: list[dict] = []
        loop.default_exception_handler = other.append  # type: ignore[method-assign]
        for _ in range(500):
            reporter(loop, {"message": ACCEPT_ERROR_MESSAGE, "exception": OSError(errno.EMFILE, "Too many open files")})
        reporter(loop, {"message": "Task exception was never retrieved"})
    finally:
        loop.close()
    assert reporter.errors.labels("EMFILE")._value.get() == 500
    lines = [r for r in caplog.records if r.name == "telephonyd.descriptors"]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert other == [{"message": "Task exception was never retrieved"}]
