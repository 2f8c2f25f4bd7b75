"""Executors: *where* a stage's trials and a cell's analyses run.

:mod:`~bench.executors.base` (the protocol and what it is handed), :mod:`~bench.executors.local`
(in this process, ``--local``), :mod:`~bench.executors.ray` (Ray Tune and Ray Train: the only
Ray imports), :mod:`~bench.executors.events` (progress lines, event log, failure reasons).
Imports :mod:`bench.config` only (the pipeline hands it what to run).
"""
