"""The pipeline: a suite's cells and stages, run in order by an executor, into records.

:mod:`~bench.pipeline.plan` (cells and stages in waves), :mod:`~bench.pipeline.search` (a stage's
search space and its winner), :mod:`~bench.pipeline.stages` (teacher, KD, pair and analyse as plain
functions), :mod:`~bench.pipeline.cells` (each cell's analyses and its record),
:mod:`~bench.pipeline.run` (``bench.run``: the stage loop, the run folder, the run's board),
:mod:`~bench.pipeline.smoke` (``--smoke``).
"""
