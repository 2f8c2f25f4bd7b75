"""A suite's plan: its cells, and every name and path a run uses (spelled here, once).

A **cell** is one leaderboard row: a student, a bit-option version, a budget and a seed. Each cell
has one search per mode (``pair-<cell>-robust``, ``pair-<cell>-detrimental``); the teacher and
f_N it starts from are those of its seed (of the first seed when the suite shares them). Code and tests build
experiment, trial, artifact and record names with these functions instead of re-typing them.

Run folder ``RUN`` (:class:`Layout`): ``suite.yaml`` (the resolved suite), ``trials/`` (each
trial's working checkpoint), ``artifacts/`` (the chosen teacher, f_N and pairs, and each search's
summary), ``tune/`` (Ray Tune's experiments; Ray runs only), ``reports/<cell>/`` (tables and
figures), ``records/<id>.json`` and ``per_example/<id>.json`` (the run's records, laid out as on
the leaderboard), ``board/`` (the views of the run's rows beside the leaderboard's), ``events.jsonl``
(starts, restores, retries, failures).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path


def slug(name: str) -> str:
    """A student's name as a file-name part (``pkg.mod:fn`` -> ``pkg_mod_fn``)."""
    return name.replace(":", "_").replace(".", "_").replace("/", "_")


def teacher_name(seed: int) -> str:
    """The teacher stage of ``seed``: its Ray Tune experiment and checkpoint files."""
    return f"teacher-s{seed}"


def kd_name(student: str, seed: int) -> str:
    """The KD stage of ``student`` and ``seed``: its experiment and checkpoint files."""
    return f"kd-{slug(student)}-s{seed}"


def kd_label(student: str, seed: int) -> str:
    """The KD stage as failures name it (``kd <student> seed <seed>``)."""
    return f"kd {student} seed {seed}"


def cell_key(student: str, version: str, budget: int, seed: int) -> str:
    return f"{slug(student)}-{version}-{budget}-s{seed}"


@dataclass(frozen=True)
class Cell:
    """One leaderboard row: a student, a bit-option version (its options), a budget, a seed.

    ``stage_seed``: the seed of the teacher and f_N it starts from; ``allocations``: how many bit
    vectors meet the budget (1: degenerate, no policy has a choice).
    """

    student: str
    version: str
    options: tuple[int, ...]
    budget: int
    seed: int = 0
    stage_seed: int = 0
    allocations: int = 0

    @property
    def key(self) -> str:
        return cell_key(self.student, self.version, self.budget, self.seed)

    def search(self, mode: str) -> str:
        """The pair search of ``mode``: its experiment, trial folder and artifact name."""
        return f"pair-{self.key}-{mode}"

    def stages(self, modes) -> tuple[str, ...]:
        """Every stage this cell's row depends on, as failures and retries name them."""
        s, st = self.stage_seed, self.student
        return (teacher_name(s), kd_name(st, s), kd_label(st, s), *map(self.search, modes))


def record_id(suite_name: str, digest: str, cell: Cell) -> str:
    return f"{suite_name}/{digest}/{cell.key}"


def failed_record_id(base_id: str, error: str) -> str:
    """A failed row's own id, so a later successful run of the same suite still adds its row."""
    return f"{base_id}/failed-{hashlib.sha256(error.encode()).hexdigest()[:8]}"


def trial_key(search: str, params: dict) -> str:
    """A pair trial's checkpoint name: its search and sampled values, not a trial id.

    A driver killed between a suggestion and the searcher's next snapshot gets the same suggestion
    again after the restart; naming the file by the values lets that trial resume from the epochs
    it already trained.
    """
    key = {"group": search, **{k: params[k] for k in sorted(params)}}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def stage_epochs(suite, name: str) -> int:
    """How many epochs the stage or search ``name`` trains (for progress lines)."""
    if name.startswith("pair-"):
        return suite.pair.epochs
    return suite.teacher_stage.epochs if name.startswith("teacher") else suite.kd_stage.epochs


@dataclass(frozen=True)
class Layout:
    """Where a run keeps what (module docstring)."""

    root: Path

    @property
    def suite_file(self) -> Path:
        return self.root / "suite.yaml"

    @property
    def tune(self) -> Path:
        return self.root / "tune"

    def teacher(self, seed: int) -> Path:
        return self.root / "artifacts" / f"{teacher_name(seed)}.pt"

    def kd(self, student: str, seed: int) -> Path:
        return self.root / "artifacts" / f"{kd_name(student, seed)}.pt"

    def stage_trial(self, name: str) -> Path:
        """The working checkpoint of the teacher or a KD stage."""
        return self.root / "trials" / f"{name}.pt"

    def trial(self, search: str, params: dict) -> Path:
        return self.root / "trials" / search / f"{trial_key(search, params)}.pt"

    def pair(self, search: str) -> Path:
        return self.root / "artifacts" / "pairs" / f"{search}.pt"

    def summary(self, search: str) -> Path:
        """A finished search's summary (written last: its presence marks the search done)."""
        return self.root / "artifacts" / "pairs" / f"{search}.json"

    def report(self, rid: str) -> Path:
        """A record's report folder (``reports/<id>/``, as on the leaderboard)."""
        return self.root / "reports" / rid

    @property
    def board(self) -> Path:
        return self.root / "board"


def count_layers(student, num_classes: int) -> int:
    """L of ``student`` (a :class:`bench.sections.Student` or a model name): its dynamically
    quantized activations (a model is built once per name and options)."""
    name, options = (student, {}) if isinstance(student, str) else (student.name, student.options)
    return _count_layers(name, num_classes, json.dumps(options, sort_keys=True))


@lru_cache(maxsize=64)
def _count_layers(name: str, num_classes: int, options: str) -> int:
    from dptq.models import QuantizableModel, create_model

    return QuantizableModel(create_model(name, num_classes, **json.loads(options))).num_layers


def cells(suite, num_classes: int) -> list[Cell]:
    """Every cell of the suite, each seed; budgets checked (one line naming the student) first.

    A budget that leaves exactly one allocation is refused unless
    ``protocol.allow_degenerate``: no policy can be learned there.
    """
    from dptq import knapsack
    from dptq.models import check_model_name

    from .suite import SuiteError

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
                n = knapsack.count_allocations(options, b, L)
                if n == 1 and not suite.protocol.allow_degenerate:
                    raise SuiteError(
                        f"{where}: budget {b} admits exactly one allocation (every one of the "
                        f"{L} layers at {b // L} bits): no policy can be learned; choose a larger "
                        "budget, or set protocol.allow_degenerate: true to keep the cell (marked)"
                    )
                for seed in suite.seed_list:
                    cell = Cell(st.name, version, tuple(options), int(b), seed)
                    out.append(replace(cell, stage_seed=suite.stage_seed(seed), allocations=n))
    return list(dict.fromkeys(out))


def _count(n: int) -> str:
    return f"{n:.3g}" if n < 10**300 else f"~1e{len(str(n)) - 1}"


def describe(suite, plan: list[Cell], run_dir: Path) -> str:
    """The plan as the run prints it (and ``--dry-run`` shows)."""
    searches = len(plan) * len(suite.modes)
    samples = suite.search.num_samples if suite.search.ranges() else 1
    res = suite.resources
    stage_seeds = sorted({c.stage_seed for c in plan})
    seeds = ", ".join(map(str, suite.seed_list))
    lines = [
        f"suite '{suite.name}' (hash {suite.digest()}, seeds {seeds}, recipe {suite.recipe}) "
        f"-> {run_dir}",
        f"  stage teacher: {suite.teacher.name}, {suite.teacher_stage.epochs} epochs, "
        f"{len(stage_seeds)} trial(s)",
        f"  stage kd: {len(suite.students) * len(stage_seeds)} trial(s), "
        f"{suite.kd_stage.epochs} epochs each",
        f"  stage pairs: {searches} searches x {samples} samples = {searches * samples} trials, "
        f"{suite.pair.epochs} epochs each; selected on the validation split "
        f"({suite.protocol.val_fraction:.0%} of the training data)",
    ]
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
