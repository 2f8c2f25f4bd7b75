"""A suite's plan: its cells, and every name and path a run uses (spelled here, once).

A **cell** is one leaderboard row: a student, a bit-option version and a budget. Each cell has
one search per mode (``pair-<cell>-robust``, ``pair-<cell>-detrimental``). Code and tests build
experiment, trial, artifact and record names with these functions instead of re-typing them.

Run folder ``RUN`` (:class:`Layout`): ``suite.yaml`` (the resolved suite), ``trials/`` (each
trial's working checkpoint), ``artifacts/`` (the chosen teacher, f_N and pairs, and each search's
summary), ``tune/`` (Ray Tune's experiments; Ray runs only), ``reports/<cell>/`` (tables and
figures), ``records/<id>.json`` and ``per_example/<id>.json`` (the run's records, laid out as on
the leaderboard), ``events.jsonl`` (starts, restores, retries, failures).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TEACHER = "teacher"


def slug(name: str) -> str:
    """A student's name as a file-name part (``pkg.mod:fn`` -> ``pkg_mod_fn``)."""
    return name.replace(":", "_").replace(".", "_").replace("/", "_")


def kd_name(student: str) -> str:
    """The KD stage of ``student``: its Ray Tune experiment and checkpoint files."""
    return f"kd-{slug(student)}"


def kd_label(student: str) -> str:
    """The KD stage of ``student`` as failures name it (``kd <student>``)."""
    return f"kd {student}"


@dataclass(frozen=True)
class Cell:
    """One leaderboard row: a student, a bit-option version (its options) and a budget."""

    student: str
    version: str
    options: tuple[int, ...]
    budget: int

    @property
    def key(self) -> str:
        return f"{slug(self.student)}-{self.version}-{self.budget}"

    def search(self, mode: str) -> str:
        """The pair search of ``mode``: its experiment, trial folder and artifact name."""
        return f"pair-{self.key}-{mode}"

    def stages(self, modes) -> tuple[str, ...]:
        """Every stage this cell's row depends on, as failures and retries name them."""
        return (TEACHER, kd_name(self.student), kd_label(self.student), *map(self.search, modes))


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
    return suite.teacher_stage.epochs if name == TEACHER else suite.kd_stage.epochs


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

    @property
    def teacher(self) -> Path:
        return self.root / "artifacts" / f"{TEACHER}.pt"

    def kd(self, student: str) -> Path:
        return self.root / "artifacts" / f"{kd_name(student)}.pt"

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

    def report(self, cell: Cell) -> Path:
        return self.root / "reports" / cell.key


@lru_cache(maxsize=64)
def count_layers(student: str, num_classes: int) -> int:
    """L of ``student``: its dynamically quantized activations (a model is built once per name)."""
    from dptq.models import QuantizableModel, create_model

    return QuantizableModel(create_model(student, num_classes)).num_layers


def cells(suite, num_classes: int) -> list[Cell]:
    """Every cell of the suite; budgets checked (one line naming the student) before any work."""
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
            L = count_layers(st.name, num_classes)
        except ValueError as e:
            raise SuiteError(f"students[{st.name}]: {e}") from None
        for version, options in suite.bit_options.items():
            budgets = (
                st.budgets.get(version)
                or st.budgets.get("*")
                or tuple(knapsack.budget_from_average(a, L) for a in suite.avg_bits)
            )
            for b in budgets:
                try:
                    knapsack.check_budget(options, b, L)
                except ValueError as e:
                    raise SuiteError(f"students[{st.name}] bit_options.{version}: {e}") from None
                out.append(Cell(st.name, version, tuple(options), int(b)))
    return list(dict.fromkeys(out))


def describe(suite, plan: list[Cell], run_dir: Path) -> str:
    """The plan as the run prints it (and ``--dry-run`` shows)."""
    searches = len(plan) * len(suite.modes)
    samples = suite.search.num_samples if suite.search.ranges() else 1
    res = suite.resources
    lines = [
        f"suite '{suite.name}' (hash {suite.digest()}, seed {suite.seed}) -> {run_dir}",
        f"  stage teacher: {suite.teacher.name}, {suite.teacher_stage.epochs} epochs, 1 trial",
        f"  stage kd: {len(suite.students)} trial(s), {suite.kd_stage.epochs} epochs each",
        f"  stage pairs: {searches} searches x {samples} samples = {searches * samples} trials, "
        f"{suite.pair.epochs} epochs each",
    ]
    for c in plan:
        for m in suite.modes:
            lines.append(f"    {c.search(m)}: options {list(c.options)}, budget {c.budget}")
    lines.append(
        f"  resources per trial: {res.cpus:g} CPU, {res.gpus:g} GPU; retries {suite.retries}"
    )
    lines.append(f"  analyses: {', '.join(suite.analyses) or 'none'}")
    return "\n".join(lines)
