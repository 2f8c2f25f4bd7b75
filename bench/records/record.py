"""The leaderboard record: one typed model (pydantic), its JSON Schema, and its verification.

A record is one cell's result (suite, architecture, bit options, budget, seed). What it *holds*
is measured: the exact counts of its evaluation (:class:`dptq.scores.NetCounts` per network, on
``evaluation.total`` test examples), the record fields each analysis declares
(:data:`dptq.analyses.ANALYSES`: ``analyses.<name>``), how it was obtained (suite, recipe,
protocol, selection split, environment). What it *shows* is derived: the scores (gap, drops,
hidden gap, specificity, ...) and the verdict (``valid``, ``invalid_reasons``, ``stealthy``,
``attacked``: :func:`bench.records.protocol.judge`) are computed from the counts and written beside them
for readers, and a record read from anywhere (:func:`bench.records.verify.parse`) has every one of them
recomputed: a stored value that differs is refused with one line naming the field. A failed cell
is a record too, with ``error`` set and nothing measured.

One job: what a record is (its fields, their types and bounds, what is derived from what); the
checks of a submission are :mod:`bench.records.verify`'s, the files :mod:`bench.records.store`'s.
``leaderboard/schema.json`` is :func:`json_schema` (a test keeps it current). Standard library,
pydantic and :mod:`dptq`'s torch-free modules only: the views import this without torch.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field, create_model

from dptq.analyses import ANALYSES
from dptq.scores import CellCounts, NetCounts, points

from ..names import PER_EXAMPLE, RECORDS, REPORTS
from . import protocol

SCHEMA_VERSION = 3
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"  # suites, datasets, versions, recipes
ARCH = r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}"  # a timm name or package.module:function
ID = r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*"
Name = Annotated[str, Field(pattern=f"^{NAME}$")]
Count = Annotated[int, Field(ge=0)]
Pct = Annotated[float, Field(ge=0, le=100)]
Points = Annotated[float, Field(ge=-200, le=200)]


class RecordError(ValueError):
    """A record file or record that cannot be used; one line naming the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Retry(_Model):
    """A retried trial (from ``RUN/events.jsonl``)."""

    experiment: str | None = None
    trial: str | None = None
    node: str | None = None
    epoch: int | None = None
    reason: str | None = None


class Evaluation(_Model):
    """The cell's one evaluation on the test split: correct counts per network and allocation
    (:class:`dptq.scores.NetCounts`) of ``total`` examples."""

    split: Literal["test"] = "test"
    total: Annotated[int, Field(ge=1)]
    f_N: NetCounts
    f_R: NetCounts
    f_D: NetCounts

    def counts(self) -> CellCounts:
        return CellCounts(self.total, self.f_N, self.f_R, self.f_D)


class Rules(_Model):
    """The protocol's thresholds a record is judged by (:class:`bench.config.sections.Protocol`, with
    ``min_f_n_acc`` resolved to a number)."""

    val_fraction: float
    split_seed: int
    fp_match_max: float
    fp_drop_max: float
    min_f_n_acc: float
    stealth_max: float
    random_allocations: int
    allow_degenerate: bool
    attack_min: float = 10.0  # added after the first schema-3 records: their protocol's value
    version: Literal[2, 3] = 2  # the rules (bench.records.protocol.judge); records before it: v2
    select_margin: float = (
        0.0  # protocol v3's selection bound (bench.records.protocol.selection_score)
    )


class TrialRow(_Model):
    """One trial of a stage's search: its searched settings, its validation score (the last
    epoch's, or with ``search.select_epoch: best`` the selected epoch's, ``selected_epoch``),
    the epochs it trained and its wall seconds (training and evaluation, over every resume).
    A grid's trial (``search.grid``, the closed division's portfolio) also names its
    configuration and the validation figures its score is computed from (the drop under its
    own policy and its FP accuracy, in points), so a reader recomputes the winner."""

    config: dict[Literal["delta", "alpha", "beta", "stealth"], float]
    score: float | None
    epochs: Annotated[int, Field(ge=0)] | None
    seconds: Annotated[float, Field(ge=0)] | None
    failed: bool
    selected_epoch: Annotated[int, Field(ge=1)] | None = None
    configuration: Name | None = None
    val_drop: Points | None = None
    val_fp_acc: Pct | None = None


Stage = Literal["teacher", "kd", "robust", "detrimental", "analyses"]

Analyses = create_model(
    "Analyses",
    __config__=ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True),
    __doc__="What each analysis that ran adds, as it declares it (dptq.analyses).",
    **{n: (spec.fields | None, None) for n, spec in ANALYSES.items() if spec.fields is not None},
)


class Record(_Model):
    """One leaderboard row (module docstring). Fields after ``error`` are None on a failed
    record; on a successful one, every field up to ``report`` is set."""

    schema_version: Literal[3] = SCHEMA_VERSION
    id: Annotated[str, Field(pattern=f"^{ID}$", max_length=400)]
    suite: Name
    suite_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{12}$")]
    seed: Annotated[int, Field(ge=0, lt=2**31)]
    dataset: Name
    num_classes: Annotated[int, Field(ge=2, le=100_000)]
    architecture: Annotated[str, Field(pattern=f"^{ARCH}$")]
    bit_options: Name
    options: list[Annotated[int, Field(ge=2, le=16)]]
    budget: Annotated[int, Field(ge=1, le=100_000)]
    recipe: Name
    # the closed division (bench.config.closed): its attack version and each mode's winning
    # configuration; an open record (every record before it) has neither
    division: Literal["open", "closed"] = "open"
    attack: Name | None = None
    configuration: dict[Literal["robust", "detrimental"], Name] | None = None
    date: Annotated[str, Field(pattern=r"^\d{4}-\d\d-\d\dT[0-9:+.Z-]{8,20}$")]
    git_commit: Annotated[str, Field(pattern="^[0-9a-f]{40}$")] | None
    git_dirty: bool | None = None  # tracked files differed from git_commit (None: not recorded)
    python: Annotated[str, Field(pattern=r"^[0-9.a-z+]{1,20}$")]
    versions: dict[str, Annotated[str, Field(pattern=r"^[0-9A-Za-z.+_-]{1,40}$")]]
    hardware: dict[str, str | int | None]
    retries: list[Retry] = []
    skipped_images: list[Annotated[str, Field(max_length=500)]] = []
    split_sizes: dict[Literal["train", "val", "test"], Annotated[int, Field(ge=0)]] | None = None
    # the suite as run (YAML; its hash must be suite_hash), each stage's wall seconds (a search:
    # its trials' sum) and every trial of both searches; None on records written before them
    suite_text: Annotated[str, Field(max_length=50_000)] | None = None
    stage_seconds: dict[Stage, Annotated[float, Field(ge=0)]] | None = None
    searches: dict[Literal["robust", "detrimental"], list[TrialRow]] | None = None
    error: Annotated[str, Field(max_length=2000)] | None = None
    selected_on: Literal["val", "test"] | None = None
    recipe_deviations: dict[str, str | int | float | bool | None] | None = None
    searched: list[Name] | None = None
    protocol: Rules | None = None
    degenerate: bool | None = None
    allocations_log10: Annotated[float, Field(ge=0)] | None = None
    num_layers: Annotated[int, Field(ge=1)] | None = None
    f_n_val_acc: Pct | None = None
    evaluation: Evaluation | None = None
    analyses: Analyses | None = None  # type: ignore[valid-type]
    best: dict[str, dict[str, float]] | None = None
    trials: dict[str, Count] | None = None
    per_example: str | None = None
    per_example_sha256: Annotated[str, Field(pattern="^[0-9a-f]{64}$")] | None = None
    # the SHA-256 of each evaluated network's safetensors (dptq.bundle): what a bundle's files
    # must be for `bench verify --rerun`; None on records written before it
    networks: (
        dict[
            Literal["f_N", "f_R", "pi_R", "f_D", "pi_D"],
            Annotated[str, Field(pattern="^[0-9a-f]{64}$")],
        ]
        | None
    ) = None
    report: str | None = None
    migrated_from: int | None = None
    legacy: dict[str, Any] | None = None

    # -- derived: written for readers, recomputed whenever a record is read ---------------------

    def counts(self) -> CellCounts:
        return self.evaluation.counts()

    def _score(self, fn) -> float | None:
        return None if self.evaluation is None else points(fn(self.counts()))

    def _acc(self, net: str, allocation: str) -> float | None:
        if self.evaluation is None:
            return None
        return points(self.counts().net(net).acc(allocation, self.evaluation.total))

    @computed_field
    @property
    def f_n_acc(self) -> float | None:
        """f_N's test accuracy at full precision (%)."""
        return self._acc("f_N", "FP")

    @computed_field
    @property
    def f_r_fp_acc(self) -> float | None:
        return self._acc("f_R", "FP")

    @computed_field
    @property
    def f_r_q_acc(self) -> float | None:
        """f_R under its own policy pi_R (%)."""
        return self._acc("f_R", "pi_R")

    @computed_field
    @property
    def f_r_drop(self) -> float | None:
        return self._score(lambda c: c.own_drop("f_R"))

    @computed_field
    @property
    def f_d_fp_acc(self) -> float | None:
        return self._acc("f_D", "FP")

    @computed_field
    @property
    def f_d_q_acc(self) -> float | None:
        """f_D under its own policy pi_D (%)."""
        return self._acc("f_D", "pi_D")

    @computed_field
    @property
    def f_d_drop(self) -> float | None:
        return self._score(lambda c: c.own_drop("f_D"))

    @computed_field
    @property
    def gap(self) -> float | None:
        """The catastrophic-failure gap: f_D's drop minus f_R's (points)."""
        return self._score(CellCounts.gap)

    @computed_field
    @property
    def fp_match(self) -> float | None:
        return self._score(CellCounts.fp_match)

    @computed_field
    @property
    def f_d_random_acc(self) -> float | None:
        """f_D under the random allocations (mean, %)."""
        return self._acc("f_D", "random")

    @computed_field
    @property
    def f_d_uniform_acc(self) -> float | None:
        return self._acc("f_D", "uniform")

    @computed_field
    @property
    def worst_non_own_drop(self) -> float | None:
        """f_D's largest drop under an allocation that is not pi_D's (points)."""
        return self._score(CellCounts.worst_non_own_drop)

    @computed_field
    @property
    def hidden_gap(self) -> float | None:
        """f_D's drop under pi_D minus its worst drop under any other allocation (points)."""
        return self._score(CellCounts.hidden_gap)

    @computed_field
    @property
    def valid(self) -> bool | None:
        return None if self.evaluation is None else protocol.judge(self).valid

    @computed_field
    @property
    def invalid_reasons(self) -> list[str] | None:
        """Why the gap does not count (empty: it does), by the record's own protocol."""
        return None if self.evaluation is None else protocol.judge(self).reasons

    @computed_field
    @property
    def stealthy(self) -> bool | None:
        """f_D fails under pi_D and under no other allocation (:func:`bench.records.protocol.judge`)."""
        return None if self.evaluation is None else protocol.judge(self).stealthy

    @computed_field
    @property
    def attacked(self) -> bool | None:
        """f_D drops by more than ``protocol.attack_min`` under pi_D: the search found an attack."""
        return None if self.evaluation is None else protocol.judge(self).attacked

    @computed_field
    @property
    def specificity(self) -> float | None:
        """f_D's worst drop under another allocation / its drop under pi_D
        (:meth:`dptq.scores.CellCounts.specificity`); None without a drop under pi_D."""
        if self.evaluation is None:
            return None
        s = self.counts().specificity()
        return None if s is None else float(s)

    def analysis(self, name: str, attribute: str | None = None):
        """An analysis' fields (or one attribute or property of them); None where it did not run."""
        section = None if self.analyses is None else getattr(self.analyses, name, None)
        if section is None or attribute is None:
            return section
        value = getattr(section, attribute)
        return value() if callable(value) else value

    def to_json(self) -> dict:
        """The record as its file holds it (derived fields included)."""
        return self.model_dump(mode="json")


DERIVED = tuple(Record.model_computed_fields)
SUCCESS = ("selected_on", "recipe_deviations", "searched", "protocol", "degenerate")
SUCCESS += ("allocations_log10", "num_layers", "f_n_val_acc", "evaluation", "analyses", "best")
SUCCESS += ("trials", "per_example", "per_example_sha256", "report")


def record_rel(rid: str) -> str:
    return f"{RECORDS}/{rid}.json"


def per_example_rel(rid: str) -> str:
    """Where a record's per-example results live, relative to its board."""
    return f"{PER_EXAMPLE}/{rid}.json"


def report_rel(rid: str) -> str:
    """Where a record's report (Tables 1-3, Figs. 2-4) lives, relative to its board."""
    return f"{REPORTS}/{rid}/report.md"


def per_example_bytes(per_example: dict) -> bytes:
    """A per-example file's bytes (what ``per_example_sha256`` hashes)."""
    return (json.dumps(per_example, sort_keys=True) + "\n").encode()


def json_schema() -> dict:
    """The JSON Schema of a record file (``leaderboard/schema.json``)."""
    schema = Record.model_json_schema(mode="serialization")
    schema["$id"] = (
        f"https://github.com/dptq-bench/dptq-bench/leaderboard/schema-{SCHEMA_VERSION}.json"
    )
    return schema
