"""What a run made (:class:`RunResult`): its records, its failures, its plan, its board."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .cells import Failure


@dataclass
class RunResult:
    """What a run made: its records, its failures, its plan; the run's board page, and how many
    records went to the leaderboard (``submit``)."""

    records: list
    failed: list[Failure]
    plan: list
    run_dir: Path
    board: Path | None = None
    added: int = 0
    smoke: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 every stage finished, 1 some failed."""
        return 1 if self.failed else 0

    def invalid(self) -> list[str]:
        """A line per row that does not count, with its reasons."""
        return [
            f"INVALID {r.id}: {'; '.join(r.invalid_reasons)}"
            for r in self.records
            if r.error is None and not r.valid
        ]

    def smoke_verdict(self) -> str:
        """One line: the smoke run passed, or which cells broke (their reasons are above)."""
        cells = len(self.records)
        broken = [r.id.split("/")[2] for r in self.records if r.error]
        if not self.failed and not broken:
            return f"smoke passed: {cells} cell(s), every stage and analysis ran end to end"
        named = ", ".join(broken) if broken else "none (a stage failed, above)"
        return f"smoke FAILED: {len(broken)} of {cells} cell(s) broken: {named}"
