import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


NEEDS = ("slow", "training", "ray", "browser", "netns")  # what a test needs beyond the CPU
HEAVY = {"test_perf.py", "test_int8.py"}  # benchmarks and int8 kernels: seconds each


def pytest_collection_modifyitems(config, items):
    """The fast layer (``python -m pytest -m fast``): every test that needs none of
    :data:`NEEDS` and is not in a :data:`HEAVY` module: configuration, records, views and the
    method's formulas, about 85 s on two idle cores. A slow test trains end to end: it is
    marked ``training`` too."""
    for item in items:
        kinds = {m.name for m in item.iter_markers()}
        if "slow" in kinds:
            item.add_marker(pytest.mark.training)
        elif not kinds & set(NEEDS) and item.path.name not in HEAVY:
            item.add_marker(pytest.mark.fast)
