"""Secrets are scrubbed from the finished log line (tracebacks, nested data) and reloads add theirs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from telephonyd.logs import configure_logging, log_context, update_secrets

SECRET = "s3cret-Token-1234"
QUOTED = 'pa"ss\\word-99'  # escaped in a JSON line


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("DEBUG", "json", [SECRET, QUOTED, "abc"])
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_secrets_in_messages_extras_tracebacks_and_nested_data_are_scrubbed(captured: io.StringIO) -> None:
    log = logging.getLogger("telephonyd.test")
    log.info("token %s here", SECRET, extra={"url": f"http://u:{SECRET}@h/", "nested": {"key": QUOTED}})
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        log.exception("boom", extra={"items": [QUOTED]})
    text = captured.getvalue()
    assert SECRET not in text and json.dumps(QUOTED)[1:-1] not in text and QUOTED not in text
    first, second = lines(captured)
    assert first["msg"] == "token ******** here" and first["url"] == "http://u:********@h/"
    assert first["nested"] == {"key": "********"}
    assert "failed with ********" in second["exc"] and second["items"] == ["********"]


def test_short_values_are_not_treated_as_secrets(captured: io.StringIO) -> None:
    logging.getLogger("telephonyd.test").info("abc is a common word")
    assert lines(captured)[0]["msg"] == "abc is a common word"


def test_a_reload_adds_its_secrets_and_keeps_the_old_ones(captured: io.StringIO) -> None:
    log = logging.getLogger("telephonyd.test")
    new = "new-Admin-Token-5678"
    log.info(f"before {new}")
    update_secrets([new])
    with log_context(uniqueid="1.1"):
        log.info(f"after {new} and {SECRET}")
    before, after = lines(captured)
    assert new in before["msg"]  # not known yet
    assert after["msg"] == "after ******** and ********" and after["uniqueid"] == "1.1"
