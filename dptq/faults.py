"""Fault points for the tests (in the spirit of FoundationDB's buggify / gofail).

``DPTQ_FAILPOINT=<name>`` makes the process stop at the point called ``<name>``. With
``DPTQ_FAILPOINT_ACTION=wait`` (the default) it creates the file ``DPTQ_FAILPOINT_FILE`` (so a test
knows it is there) and waits until the test kills it with SIGKILL, exactly as a pre-empted job
dies; with ``raise`` it raises :class:`FailpointHit` (an in-process test's "kill"). Without the
variable a fault point does nothing: production code never branches on it otherwise.

Points: ``epoch:<stage>:<n>`` (a stage's checkpoint after epoch n is on disk),
``store:before-rename`` (a record's file is written, not yet renamed into place),
``leaderboard:added`` (records added, views not yet regenerated), ``leaderboard:views`` (some views
written, others not).
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class FailpointHit(BaseException):
    """Raised at a fault point when ``DPTQ_FAILPOINT_ACTION=raise``.

    A ``BaseException`` (like ``KeyboardInterrupt``): it stands for a kill, so no ``except
    Exception`` that turns a bad trial into a failed entry catches it.
    """


def failpoint(name: str) -> None:
    if os.environ.get("DPTQ_FAILPOINT") != name:
        return
    if os.environ.get("DPTQ_FAILPOINT_ACTION", "wait") == "raise":
        raise FailpointHit(f"fault point {name!r} reached")
    marker = os.environ.get("DPTQ_FAILPOINT_FILE")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    while True:  # until killed
        time.sleep(60)
