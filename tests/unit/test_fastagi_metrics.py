"""FastAGI counters: histogram placement, label cap, refusals."""

from __future__ import annotations

from telephonyd.fastagi.metrics import OTHER, FastAGICounters


def test_durations_land_in_their_buckets():
    c = FastAGICounters(buckets=(0.01, 0.1, 1.0))
    for d in (0.001, 0.01, 0.05, 0.5, 5.0):
        c.observe("call_log", "OK", d)
    assert c.duration_buckets == [2, 1, 1, 1]  # <=0.01 twice (bounds are inclusive), then one each
    assert c.cumulative_buckets() == [(0.01, 2), (0.1, 3), (1.0, 4), (float("inf"), 5)]
    assert c.duration_count == 5
    assert abs(c.duration_sum_s - 5.561) < 1e-9


def test_sessions_by_route_and_result():
    c = FastAGICounters()
    c.observe("call_log", "OK", 0.01)
    c.observe("call_log", "OK", 0.01)
    c.observe("call_log", "ERROR", 0.01)
    c.observe("unknown", "UNKNOWN_SCRIPT", 0.01)
    assert c.sessions == {("call_log", "OK"): 2, ("call_log", "ERROR"): 1, ("unknown", "UNKNOWN_SCRIPT"): 1}
    assert c.results == {"OK": 2, "ERROR": 1, "UNKNOWN_SCRIPT": 1}
    snap = c.snapshot()
    assert snap["sessions_total"] == 4 and snap["by_route"]["call_log:OK"] == 2


def test_label_cardinality_is_capped():
    c = FastAGICounters(max_labels=3)
    for i in range(10):
        c.observe("call_log", f"R{i}", 0.01)
    assert len(c.sessions) == 4 and c.sessions[(OTHER, OTHER)] == 7
    assert len(c.results) == 4 and c.results[OTHER] == 7
    assert c.duration_count == 10


def test_refusals_are_counted_by_reason():
    c = FastAGICounters()
    c.refuse("address")
    c.refuse("address")
    c.refuse("overload")
    assert c.refused == {"address": 2, "overload": 1}
