"""Records: the leaderboard's data, one typed record per cell.

:mod:`~bench.records.record` (the record type and its derived scores),
:mod:`~bench.records.protocol` (the verdict, by protocol version), :mod:`~bench.records.verify`
(a record read as untrusted input), :mod:`~bench.records.store` (one JSON file per record),
:mod:`~bench.records.build` (a record from a cell's results), :mod:`~bench.records.machine` (the
machine that made it). Imports :mod:`bench.config` and :mod:`bench.names` only.
"""
