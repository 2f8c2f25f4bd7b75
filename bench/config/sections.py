"""The sections of a suite: the frozen dataclasses that :class:`bench.config.suite.Suite` is built from.

Search ranges, the protocol, resources, students, the teacher and the dataset; each field is
documented where it is declared. Loaded and checked through :func:`bench.config.suite.load_suite`.
One job, over 300 lines: a suite's sections and their checks, each field documented beside its
type (a section's rules are read where the section is).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from dptq.data import DATASETS, DataOptions
from dptq.errors import ConfigError


def _dataset_options(name: str) -> type:
    return DATASETS[name].options


@dataclass(frozen=True)
class Range:
    """A search range: ``low``..``high``, sampled on a log scale when ``log``."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self):
        if not self.low <= self.high:
            raise ConfigError(f"low {self.low} must be <= high {self.high}")
        if self.log and self.low <= 0:
            raise ConfigError(f"a log range needs low > 0, got {self.low}")
        if self.low < 0:
            raise ConfigError(f"low: must be >= 0 (a margin or a loss weight), got {self.low}")


SEARCHED = ("delta", "alpha", "beta", "stealth")  # the pair settings a search may range over
MODES = ("robust", "detrimental")


@dataclass(frozen=True)
class GridEntry:
    """One whole pair configuration of a search grid: its name (a record's trial rows and winner
    name it) and what it changes in the suite's ``pair`` section (any of its fields but the ones
    the plan sets: mode, options, budget, avg_bits; checked when the suite loads)."""

    name: str
    pair: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        import re

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", self.name):
            raise ConfigError(f"name: {self.name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        for key in ("mode", "options", "budget", "avg_bits"):
            if key in self.pair:
                raise ConfigError(f"pair.{key}: set by the plan for each cell; remove it here")


@dataclass(frozen=True)
class Search:
    """Optuna (through Ray Tune's OptunaSearch, or directly with ``--local``) over the pair settings.

    Attributes:
        num_samples: trials per (student, bit options, budget, mode); the first trial always uses
            the ``pair`` section's own values.
        delta, alpha, beta, stealth: ranges; a missing one is fixed at the ``pair`` section's
            value (``stealth`` is gamma, the stealth term's weight).
        fp_tolerance: points of FP accuracy below f_N that a pair may lose before it is penalised.
        penalty: score points per point of FP accuracy lost beyond the tolerance.
        stealth_penalty: score points per point of a detrimental pair's worst drop under a random
            or the uniform allocation beyond ``protocol.stealth_max`` (0: not counted).
        asha: stop unpromising trials early (ASHA) when True (Ray only).
        select_epoch: ``last``: a trial's pair is its last epoch's; ``best``: the epoch whose
            validation score (this objective) is the highest, its checkpoint what the record
            evaluates (``selected_epoch`` in the stage's metrics).
        objective: ``penalty`` (docs/suites.md "The search objective": FP loss beyond ``fp_tolerance``
            costs ``penalty`` points); ``constrained``: selection under the protocol
            (:func:`bench.records.protocol.selection_score`): among the epochs and trials that hold full
            precision within the protocol's ``fp_drop_max - select_margin`` of f_N on the
            validation split, the largest drop (robust: the smallest); where none does, the
            smallest shortfall beyond that bound. The closed division's.
        grid: whole pair configurations per mode (``robust``, ``detrimental``), one trial each,
            instead of Optuna over the ranges (a mode without one: the ``pair`` section as
            today); a tie goes to the earlier configuration. The closed division's portfolio.
    """

    num_samples: int = 1
    delta: Range | None = None
    alpha: Range | None = None
    beta: Range | None = None
    stealth: Range | None = None
    fp_tolerance: float = 2.0
    penalty: float = 10.0
    stealth_penalty: float = 0.0
    asha: bool = False
    select_epoch: Literal["last", "best"] = "last"
    objective: Literal["penalty", "constrained"] = "penalty"
    grid: dict[Literal["robust", "detrimental"], tuple[GridEntry, ...]] = field(
        default_factory=dict
    )

    def __post_init__(self):
        for mode, entries in self.grid.items():
            names = [e.name for e in entries]
            if not entries or len(set(names)) != len(names):
                raise ConfigError(f"grid.{mode}: name each configuration once, at least one")
            if self.ranges():
                raise ConfigError(
                    f"grid.{mode}: a grid of whole configurations replaces the search ranges "
                    f"({', '.join(self.ranges())}); give one or the other"
                )
        if self.stealth_penalty < 0:
            raise ConfigError(f"stealth_penalty: must be >= 0, got {self.stealth_penalty}")
        if not 1 <= self.num_samples <= 10_000:
            raise ConfigError(f"num_samples: must be >= 1 (and <= 10000), got {self.num_samples}")
        if self.fp_tolerance < 0 or self.penalty < 0:
            raise ConfigError("fp_tolerance, penalty: must be >= 0")

    def ranges(self) -> dict[str, Range]:
        """The searched settings and their ranges (empty: nothing is searched)."""
        return {k: getattr(self, k) for k in SEARCHED if getattr(self, k) is not None}

    def configurations(self, mode: str) -> tuple[GridEntry, ...]:
        """The grid's configurations of ``mode`` (empty: none, the pair section's own)."""
        return tuple(self.grid.get(mode, ()))

    def configuration(self, mode: str, name: str) -> GridEntry:
        """The configuration called ``name`` of ``mode``'s grid."""
        return next(e for e in self.configurations(mode) if e.name == name)


@dataclass(frozen=True)
class Protocol:
    """How results are selected and judged (docs/protocol.md).

    Attributes:
        val_fraction: share of the training split held out as the validation split (stratified,
            ``split_seed``). Every per-epoch report, the search objective, ASHA, the choice of the
            best trial and f_N's reference accuracy read it; the test split is read once per
            chosen pair, to make the record.
        split_seed: seeds the validation split and every subset of examples (``max_train``,
            ``max_test``, ``analysis_examples``); not the training seed.
        fp_match_max: a valid row has |FP f_R - FP f_D| at most this (points) ...
        fp_drop_max: ... both FP accuracies at most this far below f_N's (points) ...
        min_f_n_acc: ... and f_N's accuracy at least this (percent); null: halfway between
            chance (100 / classes) and 100.
        stealth_max: a detrimental pair is *stealthy* when it drops by more than this under
            its own policy and by at most this under every allocation that is not (points).
        random_allocations: K random budget-respecting allocations every pair is evaluated under.
        attack_min: a seed *found an attack* when f_D drops by more than this under pi_D
            (points); the board's attack success counts those seeds.
        allow_degenerate: admit cells whose budget leaves exactly one allocation (no policy has a
            choice there); their rows are marked.
        version: the rules a record is judged by (:func:`bench.records.protocol.judge`). 2: today's
            (FP match within ``fp_match_max`` is a rule too). 3: full precision one-sided against
            f_N (f_R and f_D each at most ``fp_drop_max`` below it; gaining accuracy is no
            fault), FP match only reported; the closed division's.
        select_margin: with ``search.objective: constrained``, a pair holds full precision on the
            validation split when it is at most ``fp_drop_max - select_margin`` below f_N there:
            room for the test split's noise, so the bound judged on test holds at the edge.
    """

    val_fraction: float = 0.15
    split_seed: int = 0
    fp_match_max: float = 2.0
    fp_drop_max: float = 2.0
    min_f_n_acc: float | None = None
    stealth_max: float = 5.0
    random_allocations: int = 8
    allow_degenerate: bool = False
    attack_min: float = 10.0
    version: Literal[2, 3] = 2
    select_margin: float = 0.0

    def __post_init__(self):
        if not 0 <= self.select_margin <= self.fp_drop_max:
            raise ConfigError(
                f"select_margin: must lie in 0..fp_drop_max ({self.fp_drop_max:g}), got "
                f"{self.select_margin}"
            )
        if not 0 < self.val_fraction <= 0.5:
            raise ConfigError(f"val_fraction: must lie in (0, 0.5], got {self.val_fraction}")
        if not 0 <= self.split_seed < 2**31:
            raise ConfigError(f"split_seed: must lie in 0..2^31-1, got {self.split_seed}")
        for name in ("fp_match_max", "fp_drop_max", "stealth_max", "attack_min"):
            if not 0 <= getattr(self, name) <= 100:
                raise ConfigError(f"{name}: must lie in 0..100 points, got {getattr(self, name)}")
        if self.min_f_n_acc is not None and not 0 <= self.min_f_n_acc <= 100:
            raise ConfigError(f"min_f_n_acc: must lie in 0..100 (or null), got {self.min_f_n_acc}")
        if not 1 <= self.random_allocations <= 256:
            raise ConfigError(
                f"random_allocations: must lie in 1..256, got {self.random_allocations}"
            )


@dataclass(frozen=True)
class Resources:
    """Per trial; fractional GPUs let several trials share one GPU.

    Attributes:
        cpus, gpus: what one trial (and one analysis task) asks Ray for; with ``workers > 1``,
            the trial's total over its workers.
        workers: data-parallel processes per trial (Ray Train's ``TorchTrainer`` started by the
            Tune trial, Accelerate's DDP inside each worker, a stage's batch split among them:
            ``bench.executors.ray.train``); 1: the trial trains in its own process, as before.
        cpus_per_worker, gpus_per_worker: one worker's share (given: the trial's ``cpus`` /
            ``gpus`` are ``workers`` times them; left out: ``cpus / workers``, ``gpus / workers``).
        precision: ``no`` (float32) or ``bf16`` / ``fp16`` autocast in training (Accelerate's
            mixed precision); quantizers, knapsack and policy gradient stay in float32.
        loader_workers: DataLoader worker processes per trial (0: in the trial's process);
            batches are pinned in memory when the trial has a GPU.
        cache_f_n: a pair trial computes f_N's answers on the training split once instead of in
            every step (:class:`dptq.teacher_cache.TeacherCache`: the same numbers, checked; off:
            f_N in every step, as records before it were made).
        compile_taps: the policy's gradient (its option inner products) as one compiled kernel
            (:mod:`dptq.fused_taps`): a pair step about a fifth faster on a CPU, its first step
            per activation shape compiling (tens of seconds), the policy's gradient different by
            float rounding; for long runs.
    """

    cpus: float = 1.0
    gpus: float = 0.0
    workers: int = 1
    cpus_per_worker: float | None = None
    gpus_per_worker: float | None = None
    precision: Literal["no", "bf16", "fp16"] = "no"
    loader_workers: int = 0
    cache_f_n: bool = True
    compile_taps: bool = False

    def __post_init__(self):
        if not 1 <= self.workers <= 4096:
            raise ConfigError(f"workers: must lie in 1..4096, got {self.workers}")
        for field_, total in (("cpus", self.cpus), ("gpus", self.gpus)):
            each = getattr(self, f"{field_}_per_worker")
            if each is None:
                object.__setattr__(self, f"{field_}_per_worker", total / self.workers)
            else:
                object.__setattr__(self, field_, each * self.workers)
        if not (0 < self.cpus <= 4096 and 0 <= self.gpus <= 1024):
            raise ConfigError(f"cpus must be > 0 and gpus >= 0, got {self.cpus}, {self.gpus}")
        if (
            self.workers > 1
            and self.gpus_per_worker
            and self.gpus_per_worker != int(self.gpus_per_worker)
        ):
            raise ConfigError(
                f"gpus_per_worker: a data-parallel worker takes whole GPUs, got "
                f"{self.gpus_per_worker:g}; use 1 (or workers: 1 to share a GPU between trials)"
            )
        if not 0 <= self.loader_workers <= 256:
            raise ConfigError(f"loader_workers: must lie in 0..256, got {self.loader_workers}")

    @property
    def threads(self) -> int:
        """torch threads of one trial (of one worker, with ``workers > 1``)."""
        return max(1, int(self.cpus_per_worker))

    def single(self) -> Resources:
        """The same trial in one process (the whole trial's CPUs and GPUs)."""
        return replace(self, workers=1, cpus_per_worker=None, gpus_per_worker=None)


@dataclass(frozen=True)
class Student:
    """A white-box architecture: a timm name or ``package.module:function``.

    Attributes:
        budgets: absolute budgets for this student (override the suite's ``avg_bits``), either one
            list for all bit-option versions or a mapping version -> list.
        options: keyword arguments of the model's constructor (timm's ``create_model`` kwargs,
            e.g. ``{img_size: 32, patch_size: 4}`` for a ViT; ``num_classes`` comes from the data).
        pretrained: start KD from the model's pretrained weights (timm downloads them).
    """

    name: str
    budgets: dict[str, tuple[int, ...]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False

    def __post_init__(self):
        _check_model_options(self.options)

    def build(self, num_classes: int, pretrained: bool = False):
        """The model (``pretrained`` only where a stage starts from it: KD)."""
        from dptq.models import create_model

        return create_model(self.name, num_classes, pretrained=pretrained, **self.options)


def _check_model_options(options: dict) -> None:
    if "num_classes" in options or "pretrained" in options:
        raise ConfigError(
            "options: num_classes comes from the dataset and pretrained is its own field; "
            "remove them from options"
        )


@dataclass(frozen=True)
class Dataset:
    """A registered dataset, its options, and what an unreadable image file does.

    Attributes:
        name: ``digits``, ``oxford_pets``, ``cifar10``, ``cifar100`` or ``imagefolder``.
        options: that dataset's options (:mod:`dptq.data`: ``image_size``, ``root``, ...).
        bad_images: ``stop`` (the run ends with one line listing the files) or ``skip`` (they
            are left out, listed in the run's output and on the record).
    """

    name: str = "digits"
    options: DataOptions | None = field(
        default=None, metadata={"options_of": ("name", _dataset_options)}
    )
    bad_images: Literal["stop", "skip"] = "stop"

    def __post_init__(self):
        if self.name not in DATASETS:
            import difflib

            near = difflib.get_close_matches(self.name, list(DATASETS), n=1)
            raise ConfigError(
                f"unknown dataset {self.name!r}; "
                + (f"did you mean {near[0]!r}?" if near else f"known: {sorted(DATASETS)}")
            )
        if self.options is None:
            object.__setattr__(self, "options", DATASETS[self.name].options())

    def load(self, protocol: Protocol):
        """The dataset with the protocol's validation split (:func:`dptq.data.load_dataset`)."""
        from dptq.data import load_dataset

        return load_dataset(
            self.name,
            self.options,
            bad_images=self.bad_images,
            val_fraction=protocol.val_fraction,
            sample_seed=protocol.split_seed,
        )


@dataclass(frozen=True)
class Teacher:
    """The black box: a timm name (or ``module:function``), its constructor's keyword arguments
    (``options``, as for a student) and whether it starts from pretrained weights."""

    name: str = "resnet50"
    pretrained: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        _check_model_options(self.options)

    def build(self, num_classes: int, pretrained: bool = False):
        from dptq.models import create_model

        return create_model(self.name, num_classes, pretrained=pretrained, **self.options)
