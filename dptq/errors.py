"""The method's configuration errors (standard library only).

Every frozen configuration dataclass of :mod:`dptq` (stage, pair, audit, defense, dataset and
quantizer settings) raises :class:`ConfigError` naming its own field (``epochs: must be a number >
0, got -1``); whoever built it from a file adds the path (``bench`` prefixes ``pair.``).
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value that cannot work; the message starts with the field's name."""


def check_positive(cfg, *names: str) -> None:
    """Raise :class:`ConfigError` naming the first field of ``cfg`` that is not > 0."""
    for n in names:
        v = getattr(cfg, n)
        if not (isinstance(v, int | float) and v > 0):
            raise ConfigError(f"{n}: must be a number > 0, got {v!r}")
