"""The closed division: one standard attack, fixed in code and versioned, for every architecture.

RobustBench scores every model under one fixed attack ensemble (AutoAttack); MLPerf keeps a
closed division (fixed rules: comparable) apart from an open one (anything goes, labelled). A
suite with ``division: closed`` is scored the same way: it may set only what the protocol leaves
open (:data:`OPEN`: the dataset, how f_N is made, the students with their timm options, seeds,
resources, analyses), and the attack version it names (:data:`ATTACKS`, default
:data:`CURRENT`) fixes the rest: the pair section, the search (a grid over whole pair
configurations: the detrimental *portfolio* and one robust control), selection under the
protocol on the validation split, the common cell (bit options II at 6.5 bits x L), the
quantizers, weight bits, the policy network and protocol v3's thresholds. A closed suite that
sets any of them to another value is refused in one line naming the field.

An attack version is literal data, not defaults read from the code: a later change of
:class:`dptq.pair.PairConfig`'s defaults does not change ``closed-v1``; changing the portfolio is
a new version. What the closed suite does not set comes from the version's *preset* for its
dataset (the teacher and KD stages the board used), so a user's architecture is one line of
YAML away from a row comparable with the board (README "Compare your architecture").

Standard library only (the views read the fixed sections to name what an open row changes).
"""

from __future__ import annotations

import copy

from dptq.errors import ConfigError

from .attacks import ATTACKS, CURRENT, Attack, Configuration, attack
from .digest import LATER_FIELDS, with_later_defaults

__all__ = ["ATTACKS", "CURRENT", "OPEN", "Attack", "Configuration", "attack", "changes", "resolve"]

# what a closed suite may set (everything else is the attack version's)
OPEN = (
    "name",
    "seed",
    "seeds",
    "share_stages",
    "division",
    "attack",
    "dataset",
    "teacher",
    "teacher_stage",
    "kd_stage",
    "students",
    "analyses",
    "analysis_examples",
    "sweep_layers",
    "corruption_degrees",
    "audit",
    "defenses",
    "resources",
    "max_concurrent",
    "retries",
)


def _first_difference(given, fixed, path: str) -> str | None:
    """The dotted path of the first value in ``given`` that differs from ``fixed`` (a mapping
    given in part is compared key by key: a resolved suite repeats what the version fixes)."""
    if isinstance(given, dict) and isinstance(fixed, dict):
        for k, v in given.items():
            if k not in fixed:
                return f"{path}.{k}"
            hit = _first_difference(v, fixed[k], f"{path}.{k}")
            if hit is not None:
                return hit
        return None
    if isinstance(given, list | tuple) and isinstance(fixed, list | tuple):
        if len(given) != len(fixed):
            return path
        for i, (a, b) in enumerate(zip(given, fixed)):
            hit = _first_difference(a, b, f"{path}[{i}]")
            if hit is not None:
                return hit
        return None
    same = given == fixed and isinstance(given, bool) == isinstance(fixed, bool)
    return None if same else path


def _value_at(data, path: str):
    import re

    node = data
    for part in re.findall(r"[^.\[\]]+", path):
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _later() -> dict:
    """Fields newer than an attack version (:data:`bench.config.digest.LATER_FIELDS`, by section)
    at their default: a closed suite may state them only there (a resolved suite repeats them)."""
    out: dict = {}
    for path, default in LATER_FIELDS:
        if len(path) == 2 and "*" not in path:
            out.setdefault(path[0], {})[path[1]] = default
    return out


def resolve(data: dict) -> dict:
    """A closed suite's data with the attack version's fixed sections and its dataset's preset
    filled in; ConfigError naming the first field the suite sets that the version fixes."""
    if not isinstance(data.get("attack"), str | None):
        raise ConfigError(f"attack: expected a version's name (known: {', '.join(ATTACKS)})")
    version = attack(data.get("attack"))
    dataset = data.get("dataset", {"name": "digits"})
    name = dataset.get("name", "digits") if isinstance(dataset, dict) else "digits"
    name = name if isinstance(name, str) else "digits"  # a bad one is refused when it is built
    fixed = version.fixed(name)
    later = _later()
    for key, value in data.items():
        if key in OPEN:
            continue
        if key not in fixed:
            raise ConfigError(
                f"{key}: not set by a closed suite (the protocol fixes it); remove it, or use "
                "division: open"
            )
        wanted = fixed[key]
        if isinstance(wanted, dict):  # a field newer than the version: only at its default
            wanted = {**later.get(key, {}), **wanted}
        hit = _first_difference(value, wanted, key)
        if hit is not None:
            at = hit
            while _value_at({key: wanted}, at) is None and "." in at:  # a key it does not have
                at = at.rsplit(".", 1)[0]
            raise ConfigError(
                f"{hit}: fixed by the closed division (attack {version.version}: {at} is "
                f"{_value_at({key: wanted}, at)!r}); remove it, or use division: open"
            )
    if data.get("share_stages") is True:
        raise ConfigError(
            "share_stages: a closed suite distils each seed's own f_N; use share_stages: "
            "teacher (one teacher, f_N per seed) or false"
        )
    students = data.get("students")
    for i, student in enumerate(students if isinstance(students, list) else []):
        if isinstance(student, dict) and student.get("budgets"):
            raise ConfigError(
                f"students[{i}].budgets: the closed division's budget is 6.5 bits x L; remove it, "
                "or use division: open"
            )
    preset = copy.deepcopy(version.presets.get(name, {}))
    given = dict(data)
    if isinstance(dataset, dict) and "options" not in dataset and "dataset" in preset:
        given["dataset"] = {**dataset, "options": preset["dataset"]["options"]}
    return {**preset, **given, **copy.deepcopy(fixed), "attack": version.version}


def _leaves(given, fixed, path: str) -> list[tuple[str, object]]:
    """Every (dotted path, value) where ``given`` differs from ``fixed``."""
    if isinstance(given, dict) and isinstance(fixed, dict):
        out = []
        for k in sorted(set(given) | set(fixed), key=str):
            out += _leaves(given.get(k), fixed.get(k), f"{path}.{k}" if path else str(k))
        return out
    same = given == fixed and isinstance(given, bool) == isinstance(fixed, bool)
    return [] if same else [(path, given)]


def changes(plain: dict, version: str | None = None, limit: int = 8) -> str:
    """What a resolved suite (plain data, every field) changes from the attack ``version``'s
    fixed sections on its dataset, as the open division names a row: e.g. ``pair.epochs=6, no
    portfolio, search.select_epoch=last, protocol.version=2``; empty for a suite the attack
    would run itself."""
    att = attack(version)
    plain = with_later_defaults(plain)  # an older suite's text: its later fields at default
    fixed = att.fixed(plain["dataset"]["name"])
    out = []
    grid = (plain.get("search") or {}).get("grid") or {}
    if grid != fixed["search"]["grid"]:
        names = [c["name"] for c in grid.get("detrimental", [])]
        out.append("portfolio " + "/".join(names) if names else "no portfolio")
    for key in fixed:
        given = plain.get(key)
        if key == "search" and isinstance(given, dict):
            given = {k: v for k, v in given.items() if k != "grid"}
            want = {k: v for k, v in fixed[key].items() if k != "grid"}
        else:
            want = fixed[key]
        out += [f"{p}={_short(v)}" for p, v in _leaves(given, want, key)]
    if plain.get("share_stages") is True:
        out.append("f_N shared by the seeds")
    if len(out) > limit:
        out = [*out[:limit], f"+{len(out) - limit} more"]
    return ", ".join(out)


def _short(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, list):
        return "[" + ",".join(_short(x) for x in v) + "]"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
