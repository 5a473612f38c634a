"""Run ``python -m telephonyd ...`` as a process (the CLI as an operator runs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def telephonyd(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
               without_dac_override: bool = False, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the CLI; returns the finished process (``returncode``, ``stdout``, ``stderr``).

    ``without_dac_override``: run it without the capabilities that let root read any file
    (``setpriv``), so a mode 000 file is unreadable to it as to an ordinary user.
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TELEPHONYD", "NOTIFY_SOCKET", "WATCHDOG"))}
    base["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))
    base.update(env or {})
    command = [sys.executable, "-m", "telephonyd", *args]
    if without_dac_override and os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv, "setpriv (util-linux) is needed to drop root's CAP_DAC_OVERRIDE"
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    return subprocess.run(command, cwd=cwd or REPO, env=base, capture_output=True, text=True, timeout=timeout)
