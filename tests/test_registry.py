"""dptq.registry: every registry of the method (policies, datasets, analyses) refuses a name
registered twice and names the known ones for an unknown name."""

import pytest

from dptq.registry import Registry


def test_a_name_registered_twice_is_refused_and_an_unknown_one_lists_the_known():
    reg = Registry("widget")
    deco = reg.decorator("a", lambda fn: ("entry", fn))

    @deco
    def make():
        return 1

    assert make() == 1 and reg["a"] == ("entry", make) and list(reg) == ["a"]
    with pytest.raises(ValueError, match="widget 'a' is registered twice"):
        reg.decorator("a", lambda fn: fn)(make)
    with pytest.raises(ValueError, match=r"unknown widget 'b'; known: \['a'\]"):
        reg.known("b")


@pytest.mark.parametrize("where", ["dptq.policy:POLICIES", "dptq.data:DATASETS"])
def test_the_methods_registries_are_registries(where):
    import importlib

    module, name = where.split(":")
    reg = getattr(importlib.import_module(module), name)
    assert isinstance(reg, Registry) and len(reg) >= 1
    first = next(iter(reg))
    with pytest.raises(ValueError, match="registered twice"):
        reg.add(first, reg[first])


def test_the_analyses_registry_is_one_too():
    from dptq.analyses import ANALYSES

    assert isinstance(ANALYSES, Registry) and "pair_scores" in ANALYSES
    with pytest.raises(ValueError, match="analysis 'pair_scores' is registered twice"):
        ANALYSES.add("pair_scores", ANALYSES["pair_scores"])
