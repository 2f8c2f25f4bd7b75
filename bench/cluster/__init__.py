"""The Ray edge: the only package of ``bench`` that imports Ray (``tests/test_imports.py``).

:mod:`~bench.cluster.connect` starts or joins a cluster; :mod:`~bench.cluster.executor` is the
driver side (:class:`~bench.cluster.executor.RayExecutor`: searches as Ray Tune experiments,
analyses as Ray tasks); :mod:`~bench.cluster.trial` is what runs inside a trial or task.
"""
