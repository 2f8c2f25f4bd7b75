"""Fault injection for the reliability tests (in the spirit of FoundationDB's buggify / gofail).

``DPTQ_FAILPOINT=<name>`` makes the process stop at the point called ``<name>``: it creates the
file ``DPTQ_FAILPOINT_FILE`` (so a test knows it is there) and waits, and the test then kills it
with SIGKILL, exactly as a pre-empted job dies. Without the variable a failpoint does nothing.
Points: ``records:before-rename`` (a leaderboard's new file is written, not yet renamed over the
old one), ``leaderboard:appended`` (records appended, views not yet regenerated),
``leaderboard:views`` (some views written, others not).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def failpoint(name: str) -> None:
    if os.environ.get("DPTQ_FAILPOINT") != name:
        return
    marker = os.environ.get("DPTQ_FAILPOINT_FILE")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    while True:  # until killed
        time.sleep(60)
