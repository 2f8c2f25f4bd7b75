"""Suites for tests: ``tests/suites/*.yaml`` with changes, as data, files or Suite objects."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from bench.config.suite import parse_suite

ROOT = Path(__file__).resolve().parents[2]
SUITES = ROOT / "tests" / "suites"


def suite_data(base: str = "tiny", **changes) -> dict:
    """``tests/suites/<base>.yaml`` with dotted keys changed (``...`` deletes one)."""
    data = yaml.safe_load((SUITES / f"{base}.yaml").read_text())
    for path, value in changes.items():
        data = with_change(data, path.replace("__", "."), value)
    return data


def with_change(data: dict, path: str, value) -> dict:
    """``data`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


def make_suite(base: str = "tiny", **changes):
    return parse_suite(suite_data(base, **changes), f"{base}.yaml")


def tiny_suite(**changes):
    """tests/suites/tiny.yaml, smaller, no search: one trial per mode."""
    base = {
        "dataset.options": {"image_size": 12, "max_train": 96, "max_test": 40},
        "teacher_stage.epochs": 3,
        "kd_stage.epochs": 2,
        "search": {"num_samples": 1},
        "analyses": ["pair_scores", "transitory", "cross_policy"],
    }
    return make_suite("tiny", **{**base, **changes})


def write_suite(path: Path, base: str = "tiny", **changes) -> Path:
    path.write_text(yaml.safe_dump(suite_data(base, **changes)))
    return path
