"""The board: views of the records (Markdown, CSV, figures, the HTML page), pure functions of the
records that never train anything.

:mod:`~bench.board.views` (the frame and its tables), :mod:`~bench.board.groups` (a cell's seeds
scored as one row; the architecture view), :mod:`~bench.board.figures`, :mod:`~bench.board.page`,
:mod:`~bench.board.indicators` (the full-precision indicator table),
:mod:`~bench.board.paper_table` (Table 1 beside the paper), :mod:`~bench.board.readme` (README's
results section), :mod:`~bench.board.leaderboard` (regenerate, add, compare). Imports
:mod:`bench.records` and :mod:`bench.config`.
"""
