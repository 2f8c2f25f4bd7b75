"""Suites: YAML files loaded with ``yaml.safe_load`` into frozen, validated dataclasses.

A :class:`Suite` is the only configuration of a run: everything the method can be told (datasets
and their options, stages, pairs, quantizers, policy, search, analyses, resources) is a field of
it, documented where it is declared. A mistake gives :class:`SuiteError` with one line: the file,
the field path, what was wrong and what is allowed. Nothing runs before a suite loads.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dptq.analyses import ANALYSES
from dptq.audit import AuditConfig
from dptq.data import DATASETS, DataOptions
from dptq.defenses import DefenseConfig
from dptq.engine import ConfigError
from dptq.models import ActQuantConfig
from dptq.pair import PairConfig
from dptq.policy import policy_options
from dptq.recipes import RECIPES
from dptq.train import TEACHER_DEFAULTS, StageConfig

from .schema import build, read_yaml, to_plain

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class SuiteError(ValueError):
    """A suite that cannot run; the message is one line naming file and field."""


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

    def __post_init__(self):
        if self.stealth_penalty < 0:
            raise ConfigError(f"stealth_penalty: must be >= 0, got {self.stealth_penalty}")
        if not 1 <= self.num_samples <= 10_000:
            raise ConfigError(f"num_samples: must be >= 1 (and <= 10000), got {self.num_samples}")
        if self.fp_tolerance < 0 or self.penalty < 0:
            raise ConfigError("fp_tolerance, penalty: must be >= 0")

    def ranges(self) -> dict[str, Range]:
        """The searched settings and their ranges (empty: nothing is searched)."""
        return {k: getattr(self, k) for k in SEARCHED if getattr(self, k) is not None}


@dataclass(frozen=True)
class Protocol:
    """How results are selected and judged (README "The protocol").

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
        allow_degenerate: admit cells whose budget leaves exactly one allocation (no policy has a
            choice there); their rows are marked.
    """

    val_fraction: float = 0.15
    split_seed: int = 0
    fp_match_max: float = 2.0
    fp_drop_max: float = 2.0
    min_f_n_acc: float | None = None
    stealth_max: float = 5.0
    random_allocations: int = 8
    allow_degenerate: bool = False

    def __post_init__(self):
        if not 0 < self.val_fraction <= 0.5:
            raise ConfigError(f"val_fraction: must lie in (0, 0.5], got {self.val_fraction}")
        for name in ("fp_match_max", "fp_drop_max", "stealth_max"):
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
    """Per trial; fractional GPUs let several trials share one GPU."""

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self):
        if not (0 < self.cpus <= 4096 and 0 <= self.gpus <= 1024):
            raise ConfigError(f"cpus must be > 0 and gpus >= 0, got {self.cpus}, {self.gpus}")

    @property
    def threads(self) -> int:
        """torch threads of one trial."""
        return max(1, int(self.cpus))


@dataclass(frozen=True)
class Student:
    """A white-box architecture: a timm name or ``package.module:function``.

    ``budgets``: absolute budgets for this student (override the suite's ``avg_bits``), either one
    list for all bit-option versions or a mapping version -> list.
    """

    name: str
    budgets: dict[str, tuple[int, ...]] = field(default_factory=dict)


def _dataset_options(name: str) -> type:
    return DATASETS[name].options


def _recipe_pair(name: str) -> PairConfig:
    return RECIPES[name].pair


def _recipe_kd(name: str) -> StageConfig:
    return StageConfig(tau_squared=RECIPES[name].kd_tau_squared)


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
    name: str = "resnet50"
    pretrained: bool = False


@dataclass(frozen=True)
class Suite:
    """A benchmark suite (see README "Suites").

    Attributes:
        name: the run folder's and the records' name (letters, digits, ``.``, ``_``, ``-``).
        seed: seeds every stage; the same seed on the CPU gives the same numbers.
        seeds: several seeds (replaces ``seed``): every cell is run once per seed, teacher and
            KD included unless ``share_stages``; the views show mean +- sd and n.
        share_stages: train the teacher and KD once (with the first seed), the pairs per seed.
        recipe: the method's named recipe (:mod:`dptq.recipes`: ``paper`` or ``dptq-v1``); it
            gives ``pair`` and ``kd_stage.tau_squared`` their defaults, and every record lists
            where the suite departs from it.
        dataset, teacher, students: what is distilled into what.
        teacher_stage, kd_stage, pair: hyperparameters (any field of StageConfig / PairConfig).
        protocol: how results are selected and judged (:class:`Protocol`).
        bit_options: named versions, e.g. ``{I: [3..10], II: [4..10]}``.
        avg_bits: budgets as average bits x L, for students without explicit ``budgets``.
        modes: which pairs to search.
        search: the Optuna search.
        analyses: which analyses run on each cell's best pairs (:data:`dptq.analyses.ANALYSES`).
        analysis_examples: examples per split for the layer sweeps and corruptions (null: all).
        audit: how the ``audit`` analysis trains its adversarial policy on f_N
            (:class:`dptq.audit.AuditConfig`).
        defenses: settings of the ``defenses`` analysis (:class:`dptq.defenses.DefenseConfig`).
        resources: per trial (and per analysis task).
        retries: times a failed trial is retried (from its checkpoint) before it counts as failed.
        act: activation quantizer; weight_bits: static symmetric weight bits of the quantized
            pass (null: full-precision weights).
        policy, policy_options: the registered bit-width policy and its options.
    """

    name: str
    seed: int = 0
    seeds: tuple[int, ...] | None = None
    share_stages: bool = False
    recipe: Literal[tuple(RECIPES)] = "dptq-v1"  # type: ignore[valid-type]
    dataset: Dataset = Dataset()
    teacher: Teacher = Teacher()
    students: tuple[Student, ...] = (Student("resnet18"),)
    teacher_stage: StageConfig = TEACHER_DEFAULTS
    kd_stage: StageConfig = field(
        default=StageConfig(), metadata={"defaults_of": ("recipe", _recipe_kd)}
    )
    pair: PairConfig = field(
        default=PairConfig(), metadata={"defaults_of": ("recipe", _recipe_pair)}
    )
    protocol: Protocol = Protocol()
    bit_options: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"I": tuple(range(3, 11))}
    )
    avg_bits: tuple[float, ...] = (4.0,)
    modes: tuple[Literal["robust", "detrimental"], ...] = ("robust", "detrimental")
    search: Search = Search()
    analyses: tuple[Literal[tuple(ANALYSES)], ...] = tuple(ANALYSES)  # type: ignore[valid-type]
    analysis_examples: int | None = 512
    audit: AuditConfig = AuditConfig()
    defenses: DefenseConfig = DefenseConfig()
    resources: Resources = Resources()
    retries: int = 1
    act: ActQuantConfig = ActQuantConfig()
    weight_bits: int | None = 16
    policy: str = "small_cnn"
    policy_options: Any = field(default=None, metadata={"options_of": ("policy", policy_options)})

    def __post_init__(self):
        if not SAFE_NAME.fullmatch(self.name):
            raise ConfigError(
                f"name: {self.name!r} must be 1-64 letters, digits, '.', '_' or '-' "
                "(it names the run folder and the records)"
            )
        for name in ("students", "modes", "bit_options", "avg_bits"):
            if not getattr(self, name) and not (
                name == "avg_bits" and all(s.budgets for s in self.students)
            ):
                raise ConfigError(f"{name}: must not be empty")
        for version, opts in self.bit_options.items():
            if not SAFE_NAME.fullmatch(version):
                raise ConfigError(f"bit_options.{version}: a version name is letters and digits")
            if not opts or min(opts) < 2 or max(opts) > 16 or len(set(opts)) != len(opts):
                raise ConfigError(
                    f"bit_options.{version}: need distinct bit-widths in 2..16, got {list(opts)}"
                )
        if len({s.name for s in self.students}) != len(self.students):
            raise ConfigError("students: a student is listed twice")
        if sorted(set(self.modes)) != ["detrimental", "robust"] or len(self.modes) != 2:
            raise ConfigError(
                "modes: a record compares a robust and a detrimental pair; list both, once each"
            )
        if not 0 <= self.retries <= 100:
            raise ConfigError(f"retries: must be >= 0 (and <= 100), got {self.retries}")
        if self.analysis_examples is not None and self.analysis_examples < 1:
            raise ConfigError(
                f"analysis_examples: must be >= 1 (or null), got {self.analysis_examples}"
            )
        if self.weight_bits is not None and not 2 <= self.weight_bits <= 16:
            raise ConfigError(f"weight_bits: must lie in 2..16 (or null), got {self.weight_bits}")
        from dptq.policy import POLICIES

        if self.policy not in POLICIES:
            raise ConfigError(f"policy: unknown policy {self.policy!r}; known: {sorted(POLICIES)}")
        if self.policy_options is None:
            object.__setattr__(self, "policy_options", policy_options(self.policy)())
        if self.seeds is not None and (not self.seeds or len(set(self.seeds)) != len(self.seeds)):
            raise ConfigError("seeds: a list of distinct seeds (or leave it out and set seed)")
        if any(not 0 <= s < 2**31 for s in self.seed_list):
            raise ConfigError("seed: seeds must lie in 0..2^31-1")

    @property
    def seed_list(self) -> tuple[int, ...]:
        """Every seed the suite runs (``seeds``, else ``(seed,)``)."""
        return self.seeds if self.seeds is not None else (self.seed,)

    def stage_seed(self, seed: int) -> int:
        """The seed whose teacher and f_N the pairs of ``seed`` start from."""
        return self.seed_list[0] if self.share_stages else seed

    def digest(self) -> str:
        """A short hash of the resolved suite (recorded with every result)."""
        blob = json.dumps(to_plain(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def _prepare(cls, data, path: str):
    """Shorthands: a student given by name or with one budget list; the teacher's defaults."""
    if cls is Student and isinstance(data, str):
        data = {"name": data}
    if cls is Student and isinstance(data, dict) and isinstance(data.get("budgets"), list):
        data = {**data, "budgets": {"*": data["budgets"]}}
    if cls is PairConfig and isinstance(data, dict):
        defaults = to_plain(PairConfig())  # a saved (resolved) suite repeats the defaults
        for key in ("mode", "options", "budget", "avg_bits"):
            if key in data and data[key] != defaults[key]:
                raise ConfigError(
                    f"{path}.{key}: set by the plan for each cell (modes, bit_options, avg_bits, "
                    "students[].budgets); remove it here"
                )
    if cls is StageConfig and path == "teacher_stage" and isinstance(data, dict):
        data = {**to_plain(TEACHER_DEFAULTS), **data}  # teacher fields default to the teacher's
    return data


def parse_suite(data: Any, source: str = "<suite>") -> Suite:
    """Validate already-parsed YAML data into a :class:`Suite`; errors name ``source``."""
    try:
        return build(Suite, data, "", _prepare)
    except ConfigError as e:
        raise SuiteError(f"{source}: {e}") from None


def load_suite(path: str | Path) -> Suite:
    """Read a suite file with ``yaml.safe_load`` (no tags executed) and validate it."""
    p = Path(path)
    if not p.is_file():
        raise SuiteError(f"{p}: no such suite file")
    try:
        data = read_yaml(p)
    except ConfigError as e:
        raise SuiteError(f"{p}: {e}") from None
    return parse_suite(data, str(p))


__all__ = ["Suite", "SuiteError", "load_suite", "parse_suite", "to_plain", "SEARCHED"]
