"""Markdown tables: the one function that builds them (:func:`markdown_table`) and the escape for
text shown in a cell (:func:`cell`). Standard library only: the leaderboard views import it and
stay free of torch and pandas.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

RULES = {"l": "---|", "r": "---:|"}  # align character -> its column's part of the rule line


def cell(text) -> str:
    """``text`` (``str()`` of it) safe inside a Markdown table cell: one line (whitespace runs
    collapsed to one space), no column break (``|`` and ``\\`` escaped), no HTML (``<``, ``>`` as
    entities)."""
    text = " ".join(str(text).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _line(cells: Iterable) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown_table(
    header: Sequence, rows: Iterable[Sequence], align: str | None = None
) -> list[str]:
    """A Markdown table as lines: the header, the rule, one line per row.

    Cells are written with ``str()``, not escaped (escape text with :func:`cell`). ``align`` has
    one character per column, ``"l"`` (rule ``---``) or ``"r"`` (rule ``---:``); by default every
    column is ``"l"``. Raises ValueError when ``align`` or a row has not one entry per column, or
    ``align`` has another character.
    """
    n = len(header)
    align = "l" * n if align is None else align
    if len(align) != n:
        raise ValueError(f"align {align!r} has {len(align)} columns, the header {n}")
    if set(align) - set(RULES):
        raise ValueError(f"align {align!r}: each column is 'l' or 'r'")
    lines = [_line(header), "|" + "".join(RULES[a] for a in align)]
    for i, row in enumerate(rows):
        if len(row) != n:
            raise ValueError(f"row {i} has {len(row)} cells, the header {n}: {row!r}")
        lines.append(_line(row))
    return lines
