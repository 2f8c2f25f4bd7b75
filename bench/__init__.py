"""dptq-bench: suites, runs, records and views around the method of :mod:`dptq`.

``bench.run(suite, ...) -> RunResult`` is the library entry point (:func:`bench.pipeline.run.run`);
``python -m bench`` is a thin command line over it and the other commands.
"""


def __getattr__(name: str):  # bench.run without importing the runner for every bench module
    if name in ("run", "RunResult"):
        from .pipeline import run as runner

        return getattr(runner, name)
    raise AttributeError(f"module 'bench' has no attribute {name!r}")
