"""A registry of named things (policies, datasets, analyses): a dict plus a decorator, timm's
pattern (``timm/models/_registry.py``), shared by every registry of the method.

A name is registered once: a second registration under the same name is refused (two modules
defining ``small_cnn`` would otherwise have the later one win silently), and :meth:`Registry.get`
names the known entries when asked for an unknown one. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Registry(dict):
    """``name -> entry`` (a dict: membership, iteration in registration order, ``Literal``s of
    its keys), what it holds named in its messages (``what``: "policy", "dataset", ...)."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def add(self, name: str, entry: Any) -> None:
        """Register ``entry`` under ``name``; ValueError if the name is taken."""
        if name in self:
            raise ValueError(f"{self.what} {name!r} is registered twice; pick another name")
        self[name] = entry

    def known(self, name: str) -> Any:
        """The entry called ``name``; ValueError listing the known names otherwise."""
        if name not in self:
            raise ValueError(f"unknown {self.what} {name!r}; known: {sorted(self)}")
        return self[name]

    def decorator(self, name: str, make: Callable[[Callable], Any]) -> Callable:
        """A decorator registering ``make(fn)`` under ``name`` and returning ``fn`` unchanged."""

        def deco(fn):
            self.add(name, make(fn))
            return fn

        return deco
