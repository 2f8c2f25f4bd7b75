"""Configuration: a suite YAML file to a validated, frozen :class:`~bench.config.suite.Suite`.

:mod:`~bench.config.typed_yaml` (YAML to frozen dataclasses, one-line errors),
:mod:`~bench.config.sections` (the suite's sections), :mod:`~bench.config.suite` (the suite, its
hash), :mod:`~bench.config.attacks` and :mod:`~bench.config.closed` (the closed division's
standard attack and what a closed suite may set). Imports no other package of ``bench``.
"""
