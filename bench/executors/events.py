"""What a run tells: progress lines (the ``bench`` logger), ``RUN/events.jsonl`` (starts,
restores, retries, failures, trial spans), and a failure's reason in one classified line.

Progress goes through one stdlib logger, :data:`LOG` (``logging.getLogger("bench")``), never a
printer threaded through signatures. A library caller sees nothing unless it configures logging;
the command line sends it to stdout (:func:`to_stdout`); a Ray task that drives a search forwards
its records to the driver through a queue (:class:`ForwardHandler`), and a worker process of
``--local --workers N`` prints them itself (:func:`to_stdout`, from its initializer).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

LOG = logging.getLogger("bench")


class ClusterError(RuntimeError):
    """A Ray cluster that cannot be joined; the message is one line: the address, what to check."""


class _Stdout(logging.Handler):
    """Each record as a line on the *current* ``sys.stdout`` (flushed: a progress line shows now)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(self.format(record) + "\n")
            sys.stdout.flush()
        except Exception:  # a closed stream at exit must not raise from logging
            self.handleError(record)


def to_stdout() -> None:
    """Progress lines of :data:`LOG` on stdout, once per process (the command line, workers)."""
    if not any(isinstance(h, _Stdout) for h in LOG.handlers):
        LOG.addHandler(_Stdout())
    LOG.setLevel(logging.INFO)


def printing() -> bool:
    """Whether this process shows progress lines (a worker process does what its parent did)."""
    return any(isinstance(h, _Stdout) for h in LOG.handlers)


class ForwardHandler(logging.Handler):
    """Sends each line to ``put`` (a Ray queue's: the driver prints it)."""

    def __init__(self, put):
        super().__init__()
        self.put = put

    def emit(self, record: logging.LogRecord) -> None:
        self.put(self.format(record))


def forward_to(put) -> None:
    """In a Ray task: this process's progress lines go to ``put`` instead."""
    for h in list(LOG.handlers):
        LOG.removeHandler(h)
    LOG.addHandler(ForwardHandler(put))
    LOG.setLevel(logging.INFO)


def log_event(run_dir: Path, **event) -> None:
    """One line in ``RUN/events.jsonl`` (retries, failures, restarts: what the records cite)."""
    event["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    with open(run_dir / "events.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps(event, sort_keys=True) + "\n")


def read_events(run_dir: Path) -> list[dict]:
    path = run_dir / "events.jsonl"
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line cut off by a kill: the event is lost, nothing else is
    return events


def retries_of(events: list[dict], stages) -> list[dict]:
    """The retry events of the given stages (experiments), as a record lists them."""
    return [
        {k: e.get(k) for k in ("experiment", "trial", "node", "epoch", "reason")}
        for e in events
        if e.get("event") == "retry" and e.get("experiment") in stages
    ]


def failure_reason(err) -> str:
    """One line saying why a trial failed: the trainer's own exception inside Ray's wrappers.

    Classified so a leaderboard reader sees the kind first: ``non-finite loss``, ``out of memory``
    (PyTorch's allocator on GPU or CPU, or Ray's memory monitor), ``worker or node died``, else
    the exception's type and first line. ``err`` is an exception or the text of Ray Tune's error
    file.
    """
    cause = err
    while getattr(cause, "cause", None) not in (None, cause):  # RayTaskError -> the original
        cause = cause.cause
    name = type(cause).__name__
    text = str(cause).strip()
    if isinstance(cause, str):  # the text of Ray Tune's error file: its last failure
        text = text.split("Failure # ")[-1].partition("\n")[2].strip() or text
        name = "RayTaskError"
        # a lost node or worker: Ray's own account, not a traceback ("The actor died because
        # its node has died. ..." after the actor's class, id, pid and ip)
        died = [ln.strip() for ln in text.splitlines() if "died because" in ln]
        if died:
            return f"worker or node died: {died[-1]}"[:300]
    if name in ("RayTaskError", "TuneError") or text.startswith("ray::"):
        # a wrapper's text: the last "SomeError: message" line of the remote traceback
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        tail = [ln for ln in lines if ":" in ln and ln.split(":")[0].isidentifier()]
        name, _, text = (tail[-1] if tail else lines[-1] if lines else name).partition(": ")
    msg = text.splitlines()[0].strip() if text else ""
    low = f"{name} {msg}".lower()
    if "outofmemory" in low or "out of memory" in low or "allocate" in low and "memory" in low:
        return f"out of memory: {name}: {msg}"
    if name == "FloatingPointError" or "loss is nan" in low or "loss is inf" in low:
        return f"non-finite loss: {msg}"
    lost = ("actordied", "actorunavailable", "nodedied", "workercrashed", "actor died")
    lost += ("is unavailable", "node died", "worker died", "connection reset by peer")
    if any(k in low for k in lost):
        return f"worker or node died: {name}: {msg}"[:300]
    return f"{name}: {msg}" if msg else name


class Progress:
    """One line per finished trial of a stage: trials done, best score, ETA; logs retries/failures."""

    def __init__(self, name: str, total: int, epochs: int, run_dir: Path):
        self.name, self.total, self.epochs, self.run_dir = name, total, epochs, run_dir
        self.done, self.best, self.t0 = 0, None, time.time()

    def __setstate__(self, state):  # restored with its experiment: the clock starts again
        self.__dict__.update(state, t0=time.time(), done=0)
        self.total = max(0, state["total"] - state["done"])

    def event(self, kind: str, trial: str, reason: str, node=None, epoch=None) -> None:
        log_event(
            self.run_dir,
            event=kind,
            experiment=self.name,
            trial=trial,
            node=node,
            epoch=epoch,
            reason=reason,
        )
        LOG.info(f"  [{self.name}] trial {trial} {kind}: {reason}")

    def mark(self, kind: str, trial: str, **where) -> None:
        """A trial's start or end in ``RUN/events.jsonl``, to the microsecond (``t``, Unix time):
        what shows which trials of which searches ran at the same time; an end also says where
        (``where``: the node's address, the data-parallel workers)."""
        extra = {k: v for k, v in where.items() if v is not None}
        log_event(
            self.run_dir, event=kind, experiment=self.name, trial=trial, t=time.time(), **extra
        )

    def epoch(self, trial: str, epoch: int, result: dict) -> None:
        """A line per epoch of a trial (the stage's progress between finished trials)."""
        shown = ", ".join(
            f"{k} {v:.3g}"
            for k, v in result.items()
            if k in ("score", "drop", "fp_acc", "q_acc", "val_acc", "test_acc", "train_loss")
        )
        LOG.info(f"  [{self.name}] {trial} epoch {epoch}/{self.epochs}: {shown}")

    def finished(self, result: dict, failed: bool) -> None:
        self.done += 1
        s = result.get("score")
        if s is not None and (self.best is None or s > self.best):
            self.best = s
        rate = (time.time() - self.t0) / self.done
        eta = rate * max(0, self.total - self.done)
        best = f", best score {self.best:.2f}" if self.best is not None else ""
        status = "FAILED" if failed else "done"
        LOG.info(
            f"  [{self.name}] trial {status}: {self.done}/{self.total}{best}, ETA {eta / 60:.1f} min"
        )
