"""Commands beside the pipeline: ``bench audit`` (:mod:`~bench.tools.audit`: a frozen model
against an adversarial allocator) and ``bench demo`` (:mod:`~bench.tools.demo`: the core in a
minute)."""
