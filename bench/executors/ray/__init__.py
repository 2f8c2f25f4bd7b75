"""The Ray edge: the only package of ``bench`` that imports Ray (``tests/test_imports.py``).

:mod:`~bench.executors.ray.connect` starts or joins a cluster; :mod:`~bench.executors.ray.executor` is the
driver side (:class:`~bench.executors.ray.executor.RayExecutor`: searches as Ray Tune experiments,
analyses as Ray tasks); :mod:`~bench.executors.ray.trial` is what runs inside a trial or task.
"""
