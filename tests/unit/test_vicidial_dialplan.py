"""dialplan/vicidial.conf leaves VICIdial's FastAGI_log.pl lines alone and reaches telephonyd only
through its own added priorities."""

from __future__ import annotations

import re
from pathlib import Path

SNIPPET = Path(__file__).resolve().parents[2] / "dialplan" / "vicidial.conf"


def active_lines() -> list[str]:
    return [ln.strip() for ln in SNIPPET.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith(";")]


def test_no_active_line_takes_or_redirects_fastagi_log_pl() -> None:
    lines = active_lines()
    assert lines, "the snippet has lines to add"
    assert not [ln for ln in lines if ":4577" in ln]
    # Only priorities after VICIdial's h,1 are added; VICIdial's own priorities are not redefined.
    assert all(re.match(r"exten => h,([2-9]|\d\d+),", ln) for ln in lines)


def test_result_is_cleared_before_the_agi_and_local_agi_is_the_fallback() -> None:
    lines = active_lines()
    clear = next(i for i, ln in enumerate(lines) if "Set(TELEPHONYD_RESULT=)" in ln)
    fastagi = next(i for i, ln in enumerate(lines) if "agi://127.0.0.1:4573/call_log" in ln)
    check = next(i for i, ln in enumerate(lines) if "GotoIf" in ln)
    local = next(i for i, ln in enumerate(lines) if "AGI(telephonyd-call-log" in ln)
    assert clear < fastagi < check < local
    assert '"QUEUED"' in lines[check] and '"DUPLICATE"' in lines[check]
    # VICIdial's own line is quoted verbatim (as a comment) so the operator finds where to add.
    assert "AGI(agi://127.0.0.1:4577/call_log--HVcauses--" in SNIPPET.read_text()
