"""Speed benchmarks (``python -m bench perf WHICH``): :mod:`~bench.perf.run` runs one and writes
its JSON and Markdown under ``leaderboard/perf/``; ``core``, ``train``, ``corruptions``, ``int8``
and ``gpu`` are the benchmarks."""
