"""A suite's plan: its cells, and the stages that make them, in the order they can run.

A **cell** is one leaderboard row: a student, a bit-option version, a budget and a seed. A
**stage** (:class:`Stage`) is one unit of training: the teacher of a seed, the KD of a student
and seed (f_N), or one pair search of a cell and mode. :func:`waves` orders them: teachers, then
KD stages, then the pair searches (robust ones first when a detrimental pair's stealth term reads
the cell's robust policy); the stages of a wave can run at once. Names and paths: :mod:`bench.names`.
One job, over 300 lines: what a suite trains, in which order, and from which settings (the
cells, their stages, the hash that lets a finished stage be reused, the plan as printed).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

from ..names import cell_key, kd_name, pair_name, record_id, teacher_name

MODES = ("robust", "detrimental")
MODE_OFFSET = {"robust": 2, "detrimental": 3}  # a pair's networks start from seed s + this


@dataclass(frozen=True)
class Cell:
    """One leaderboard row: a student, a bit-option version (its options), a budget, a seed.

    ``stage_seed``: the seed of the f_N (KD stage) it starts from, ``teacher_seed`` that of the
    teacher f_N was distilled from; ``allocations``: how many bit vectors meet the budget (1:
    degenerate, no policy has a choice).
    """

    student: str
    version: str
    options: tuple[int, ...]
    budget: int
    seed: int = 0
    stage_seed: int = 0
    allocations: int = 0
    teacher_seed: int = 0

    @property
    def key(self) -> str:
        return cell_key(self.student, self.version, self.budget, self.seed)

    def search(self, mode: str) -> str:
        """The name of this cell's pair search of ``mode``."""
        return pair_name(self.key, mode)

    def record_id(self, suite) -> str:
        return record_id(suite.name, suite.digest(), self.key)

    def stages(self) -> tuple[str, ...]:
        """Every stage this cell's row depends on, by name."""
        s, st = self.stage_seed, self.student
        return (teacher_name(self.teacher_seed), kd_name(st, s), *map(self.search, MODES))


@dataclass(frozen=True)
class Stage:
    """One unit of training (module docstring).

    Attributes:
        name: :mod:`bench.names` (its experiment, trial folder, summary, failures).
        kind: ``teacher``, ``kd`` or ``pair``.
        seed: its seed s (the data order; the networks start from s, s + 1 for KD, s +
            :data:`MODE_OFFSET` for a pair: :mod:`bench.pipeline.stages`).
        student, cell, mode: what it trains (None where it does not apply).
        needs: the stages whose results it reads.
    """

    name: str
    kind: Literal["teacher", "kd", "pair"]
    seed: int
    student: str | None = None
    cell: Cell | None = None
    mode: str | None = None
    needs: tuple[str, ...] = ()

    def epochs(self, suite) -> int:
        cfg = {"teacher": suite.teacher_stage, "kd": suite.kd_stage, "pair": suite.pair}
        return cfg[self.kind].epochs


def waves(suite, cells: list[Cell]) -> list[list[Stage]]:
    """Every stage of the plan, in waves that run one after another (module docstring)."""
    seeds = sorted({c.stage_seed for c in cells})
    teachers = [
        Stage(teacher_name(s), "teacher", s) for s in sorted({c.teacher_seed for c in cells})
    ]
    students = {(c.student, c.stage_seed) for c in cells}  # --cells: only the students it picks
    teacher_of = {c.stage_seed: c.teacher_seed for c in cells}
    kds = [
        Stage(kd_name(st.name, s), "kd", s, st.name, needs=(teacher_name(teacher_of[s]),))
        for s in seeds
        for st in suite.students
        if (st.name, s) in students
    ]

    def pair(cell: Cell, mode: str) -> Stage:
        needs = (kd_name(cell.student, cell.stage_seed),)
        if mode == "detrimental" and reads_robust_policy(suite):
            needs += (cell.search("robust"),)
        return Stage(cell.search(mode), "pair", cell.seed, cell.student, cell, mode, needs)

    out = [teachers, kds]
    if reads_robust_policy(suite):
        out += [[pair(c, "robust") for c in cells], [pair(c, "detrimental") for c in cells]]
    else:
        out.append([pair(c, m) for c in cells for m in MODES])
    return out


def stage_settings(suite, stage: Stage) -> str:
    """A short hash of what ``stage`` was trained from: the suite's settings it reads and those
    of the stages it needs (a pair: its KD and, when it reads it, the robust pair), so a finished
    stage copied in from another suite is used only where it is the one this suite would train.
    Settings it does not read (analyses, thresholds, other cells, cpus) are left out: a teacher
    and KD shared by two suites that differ only there are the same stage."""
    plain = suite.digest_plain()
    protocol = plain["protocol"]
    out: dict = {
        "kind": stage.kind,
        "seed": stage.seed,
        "dataset": plain["dataset"],
        "splits": [protocol["val_fraction"], protocol["split_seed"]],
        "precision": plain["resources"].get("precision"),
        "teacher": [plain["teacher"], plain["teacher_stage"]],
    }
    if stage.kind in ("kd", "pair"):
        [student] = [s for s in plain["students"] if s["name"] == stage.student]
        out["student"] = {k: v for k, v in student.items() if k != "budgets"}
        out["kd"] = plain["kd_stage"]
    if stage.kind == "kd" and stage.needs != (teacher_name(stage.seed),):
        out["teacher_stage"] = list(stage.needs)  # share_stages: teacher (another seed's)
    if stage.kind == "pair":
        keys = ("pair", "search", "policy", "policy_options", "act", "weight_bits")
        out.update({k: plain[k] for k in keys})
        out.update(mode=stage.mode, options=list(stage.cell.options), budget=stage.cell.budget)
        out["stealth_max"] = protocol["stealth_max"]
        out["needs"] = list(stage.needs)
    blob = json.dumps(out, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def reads_robust_policy(suite) -> bool:
    """Whether a detrimental pair's stealth term may read its cell's chosen robust policy (then
    the robust searches run first): ``robust_policy`` among the stealth allocations and the
    stealth term on, or searched (a trial may turn it on)."""
    configs = suite.search.configurations("detrimental")
    pairs = [suite.pair_config("detrimental", {"configuration": c.name}) for c in configs]
    searched = suite.search.stealth is not None
    return any(
        (p.stealth_on or searched) and "robust_policy" in p.stealth_allocations
        for p in pairs or [suite.pair]
    )


def count_layers(student, num_classes: int) -> int:
    """L of ``student`` (a :class:`bench.config.sections.Student` or a model name): its dynamically
    quantized activations (a model is built once per name and options)."""
    return len(layer_names(student, num_classes))


def layer_names(student, num_classes: int) -> tuple[str, ...]:
    """The names of ``student``'s dynamically quantized activations, in order."""
    name, options = (student, {}) if isinstance(student, str) else (student.name, student.options)
    return _layer_names(name, num_classes, json.dumps(options, sort_keys=True))


@lru_cache(maxsize=64)
def _layer_names(name: str, num_classes: int, options: str) -> tuple[str, ...]:
    from dptq.models import QuantizableModel, create_model

    model = QuantizableModel(create_model(name, num_classes, **json.loads(options)))
    return tuple(model.layer_names)


def cells(suite, num_classes: int) -> list[Cell]:
    """Every cell of the suite, each seed; budgets checked (one line naming the student) first.

    A budget that leaves exactly one allocation is refused unless
    ``protocol.allow_degenerate``: no policy can be learned there.
    """
    from dptq import knapsack
    from dptq.errors import ConfigError
    from dptq.models import check_model_name

    from ..config.suite import SuiteError

    try:
        check_model_name(suite.teacher.name)
    except ValueError as e:
        raise SuiteError(f"teacher.name: {e}") from None
    out = []
    for st in suite.students:
        try:
            L = count_layers(st, num_classes)
        except (ValueError, TypeError) as e:  # an unknown model, or options it does not take
            raise SuiteError(f"students[{st.name}]: {e}") from None
        for version, options in suite.bit_options.items():
            budgets = (
                st.budgets.get(version)
                or st.budgets.get("*")
                or tuple(knapsack.budget_from_average(a, L) for a in suite.avg_bits)
            )
            for b in budgets:
                where = f"students[{st.name}] bit_options.{version}"
                try:
                    knapsack.check_budget(options, b, L)
                except ValueError as e:
                    raise SuiteError(f"{where}: {e}") from None
                configs = suite.search.configurations("detrimental")
                for c in configs or [None]:  # pair.floor_barred: its globs and this budget
                    pair = (
                        suite.pair
                        if c is None
                        else suite.pair_config("detrimental", {"configuration": c.name})
                    )
                    try:
                        replace(pair, options=options, budget=b).barred_layers(
                            list(layer_names(st, num_classes))
                        )
                    except ConfigError as e:
                        named = "" if c is None else f" (search.grid configuration {c.name})"
                        raise SuiteError(f"pair.{e} ({where}, budget {b}){named}") from None
                n = knapsack.count_allocations(options, b, L)
                if n == 1 and not suite.protocol.allow_degenerate:
                    raise SuiteError(
                        f"{where}: budget {b} admits exactly one allocation (every one of the "
                        f"{L} layers at {b // L} bits): no policy can be learned; choose a larger "
                        "budget, or set protocol.allow_degenerate: true to keep the cell (marked)"
                    )
                for seed in suite.seed_list:
                    cell = Cell(st.name, version, tuple(options), int(b), seed)
                    out.append(
                        replace(
                            cell,
                            stage_seed=suite.stage_seed(seed),
                            teacher_seed=suite.teacher_seed(seed),
                            allocations=n,
                        )
                    )
    return list(dict.fromkeys(out))


def select(
    cells: list[Cell], suite, seeds: tuple[int, ...] | None, patterns: tuple[str, ...] | None = None
) -> list[Cell]:
    """The cells of ``seeds`` (None: all) whose key matches one of ``patterns`` (None: all):
    ``bench run --seeds/--cells``. One line (SuiteError) for a seed the suite lacks."""
    from ..config.suite import SuiteError

    if seeds is not None:
        unknown = sorted(set(seeds) - set(suite.seed_list))
        if unknown:
            raise SuiteError(
                f"--seeds: {unknown} not among the suite's seeds {list(suite.seed_list)}"
            )
        cells = [c for c in cells if c.seed in seeds]
    return cells if patterns is None else matching_cells(cells, patterns)


def matching_cells(cells: list, patterns: tuple[str, ...]) -> list:
    """The cells whose key matches one of ``patterns`` (shell-style globs, :mod:`fnmatch`); one
    line naming the suite's cells when a pattern matches none (a typo must not run nothing)."""
    from fnmatch import fnmatchcase

    from ..config.suite import SuiteError

    for p in patterns:
        if not any(fnmatchcase(c.key, p) for c in cells):
            keys = ", ".join(c.key for c in cells[:12]) + (" ..." if len(cells) > 12 else "")
            raise SuiteError(f"--cells: {p!r} matches none of the suite's cells ({keys})")
    return [c for c in cells if any(fnmatchcase(c.key, p) for p in patterns)]


def _count(n: int) -> str:
    return f"{n:.3g}" if n < 10**300 else f"~1e{len(str(n)) - 1}"


def describe(suite, plan: list[Cell], run_dir: Path) -> str:
    """The plan as the run prints it (and ``--dry-run`` shows)."""
    from .search import num_trials

    searches = len(plan) * len(MODES)
    per_mode = [num_trials(suite, m) for m in MODES]
    trials = sum(per_mode) * len(plan)
    samples = (
        str(per_mode[0])
        if len(set(per_mode)) == 1
        else f"{per_mode[0]} (robust) / {per_mode[1]} (detrimental)"
    )
    res = suite.resources
    stage_seeds = sorted({c.stage_seed for c in plan})
    teacher_seeds = sorted({c.teacher_seed for c in plan})
    seeds = ", ".join(map(str, suite.seed_list))
    lines = [
        f"suite '{suite.name}' (hash {suite.digest()}, seeds {seeds}, recipe {suite.recipe}) "
        f"-> {run_dir}",
        f"  stage teacher: {suite.teacher.name}, {suite.teacher_stage.epochs} epochs, "
        f"{len(teacher_seeds)} trial(s)",
        f"  stage kd: {len(suite.students) * len(stage_seeds)} trial(s), "
        f"{suite.kd_stage.epochs} epochs each",
        f"  stage pairs: {searches} searches x {samples} samples = {trials} trials, "
        f"{suite.pair.epochs} epochs each; selected on the validation split "
        f"({suite.protocol.val_fraction:.0%} of the training data)",
    ]
    if suite.division == "closed":
        grid = suite.search.configurations("detrimental")
        lines.insert(
            1,
            f"  closed division, attack {suite.attack}: portfolio "
            f"{', '.join(c.name for c in grid)}; protocol v{suite.protocol.version}",
        )
    for c in plan:
        marked = " (DEGENERATE: one allocation)" if c.allocations == 1 else ""
        lines.append(
            f"    {c.key}: options {list(c.options)}, budget {c.budget}, "
            f"{_count(c.allocations)} allocations{marked}"
        )
    lines.append(
        f"  resources per trial: {res.cpus:g} CPU, {res.gpus:g} GPU; retries {suite.retries}"
    )
    lines.append(f"  analyses: {', '.join(suite.analyses) or 'none'}")
    return "\n".join(lines)
