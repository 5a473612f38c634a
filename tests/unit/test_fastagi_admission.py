"""`Admission`: session caps in total and per client, idle sessions evicted oldest first."""

from __future__ import annotations

from telephonyd.fastagi.admission import CLIENT_CAP, OVERLOAD, Admission


class Closer:
    def __init__(self) -> None:
        self.closed: list[str] = []

    def __call__(self, key: str):
        return lambda: self.closed.append(key)


def test_per_client_cap_evicts_that_clients_oldest_idle_session_only() -> None:
    closer = Closer()
    admission = Admission(max_sessions=10, max_per_client=2)
    assert admission.admit("a1", "10.0.0.1", closer("a1")) is None
    assert admission.admit("b1", "10.0.0.2", closer("b1")) is None
    assert admission.admit("a2", "10.0.0.1", closer("a2")) is None
    assert admission.admit("a3", "10.0.0.1", closer("a3")) is None
    assert closer.closed == ["a1"]
    assert admission.evicted("a1") and not admission.evicted("b1")
    assert len(admission) == 3


def test_sessions_with_a_block_are_never_evicted_and_full_means_refused() -> None:
    closer = Closer()
    admission = Admission(max_sessions=2, max_per_client=2)
    for key in ("s1", "s2"):
        assert admission.admit(key, "10.0.0.1", closer(key)) is None
        admission.active(key)
    assert admission.admit("s3", "10.0.0.1", closer("s3")) == CLIENT_CAP
    assert admission.admit("t1", "10.0.0.2", closer("t1")) == OVERLOAD
    assert closer.closed == []
    admission.release("s1")
    assert admission.admit("t1", "10.0.0.2", closer("t1")) is None


def test_total_cap_evicts_the_oldest_idle_session_of_any_client() -> None:
    closer = Closer()
    admission = Admission(max_sessions=3, max_per_client=3)
    admission.admit("x", "10.0.0.1", closer("x"))
    admission.admit("y", "10.0.0.2", closer("y"))
    admission.active("x")
    admission.admit("z", "10.0.0.2", closer("z"))
    assert admission.admit("new", "10.0.0.3", closer("new")) is None
    assert closer.closed == ["y"]
    admission.release("y")  # the evicted task ending later frees nothing twice
    assert len(admission) == 3 and admission.idle == 2
