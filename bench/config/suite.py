"""Suites: YAML files loaded with ``yaml.safe_load`` into frozen, validated dataclasses.

A :class:`Suite` is the only configuration of a run: everything the method can be told (datasets
and their options, stages, pairs, quantizers, policy, search, analyses, resources) is a field of
it, documented where it is declared. A mistake gives :class:`SuiteError` with one line: the file,
the field path, what was wrong and what is allowed. Nothing runs before a suite loads. One job:
the schema and its validation, kept together so every field is declared next to its check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dptq.analyses import ANALYSES
from dptq.audit import AuditConfig
from dptq.augment import AugmentConfig
from dptq.defenses import DefenseConfig
from dptq.errors import ConfigError
from dptq.models import ActQuantConfig
from dptq.pair import PairConfig
from dptq.policy import policy_options
from dptq.recipes import RECIPES
from dptq.train import TEACHER_DEFAULTS, StageConfig

from . import digest
from .closed import resolve as resolve_closed
from .sections import SEARCHED, Dataset, Protocol, Range, Resources, Search, Student, Teacher
from .typed_yaml import build, read_yaml, to_plain

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class SuiteError(ValueError):
    """A suite that cannot run; the message is one line naming file and field."""


def _recipe_pair(name: str) -> PairConfig:
    return RECIPES[name].pair


def _recipe_kd(name: str) -> StageConfig:
    return StageConfig(tau_squared=RECIPES[name].kd_tau_squared)


@dataclass(frozen=True)
class Suite:
    """A benchmark suite (every field: docs/suites.md).

    Attributes:
        name: the run folder's and the records' name (letters, digits, ``.``, ``_``, ``-``).
        seed: seeds every stage; the same seed on the CPU gives the same numbers.
        seeds: several seeds (replaces ``seed``): every cell is run once per seed, teacher and
            KD included unless ``share_stages``; the views score a cell over its valid seeds
            (:mod:`bench.board.groups`: worst case, attack success, mean +- 95% interval).
        share_stages: ``true``: train the teacher and KD once (with the first seed), the pairs
            per seed; ``teacher``: the teacher once, f_N (KD) per seed, so the seeds' intervals
            cover distillation too (the closed division's).
        division: ``open`` (anything goes; each row named by what it changes from the standard
            attack) or ``closed`` (:mod:`bench.config.closed`: the standard attack, the only rows the
            architecture view ranks; the suite sets only what the protocol leaves open).
        attack: the closed division's attack version (:data:`bench.config.closed.ATTACKS`); set for a
            closed suite (default: the current one), null for an open one.
        recipe: the method's named recipe (:mod:`dptq.recipes`: ``paper`` or ``dptq-v1``); it
            gives ``pair`` and ``kd_stage.tau_squared`` their defaults, and every record lists
            where the suite departs from it.
        dataset, teacher, students: what is distilled into what.
        teacher_stage, kd_stage, pair: hyperparameters (any field of StageConfig / PairConfig).
        protocol: how results are selected and judged (:class:`Protocol`).
        bit_options: named versions, e.g. ``{I: [3..10], II: [4..10]}``.
        avg_bits: budgets as average bits x L, for students without explicit ``budgets``.
        search: the Optuna search.
        analyses: which analyses run on each cell's best pairs (:data:`dptq.analyses.ANALYSES`).
        analysis_examples: examples per split for the layer sweeps and corruptions (null: all).
        sweep_layers: at most this many layers per layer sweep, evenly spaced, first and last
            included (null: every layer; ``--smoke`` uses a few).
        corruption_degrees: the degrees (0 = clean .. 5) of the corruptions analysis (null: all).
        audit: how the ``audit`` analysis trains its adversarial policy on f_N
            (:class:`dptq.audit.AuditConfig`).
        defenses: settings of the ``defenses`` analysis (:class:`dptq.defenses.DefenseConfig`).
        resources: per trial (and per analysis task).
        max_concurrent: on Ray, at most this many searches (or teacher / KD stages) run at once;
            null: as many as fill the cluster (its trial slots, by ``resources``, over the
            ``search.num_samples`` trials of one search). Each search keeps its own Optuna study.
        retries: times a failed trial is retried (from its checkpoint) before it counts as failed.
        act: activation quantizer; weight_bits: static symmetric weight bits of the quantized
            pass (null: full-precision weights).
        policy, policy_options: the registered bit-width policy and its options.
    """

    name: str
    seed: int = 0
    seeds: tuple[int, ...] | None = None
    share_stages: bool | Literal["teacher"] = False
    division: Literal["open", "closed"] = "open"
    attack: str | None = None
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
    search: Search = Search()
    analyses: tuple[Literal[tuple(ANALYSES)], ...] = tuple(ANALYSES)  # type: ignore[valid-type]
    analysis_examples: int | None = 512
    sweep_layers: int | None = None
    corruption_degrees: tuple[int, ...] | None = None
    audit: AuditConfig = AuditConfig()
    defenses: DefenseConfig = DefenseConfig()
    resources: Resources = Resources()
    max_concurrent: int | None = None
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
        for name in ("students", "bit_options", "avg_bits"):
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
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"max_concurrent: must be >= 1 (or null), got {self.max_concurrent}")
        if not 0 <= self.retries <= 100:
            raise ConfigError(f"retries: must be >= 0 (and <= 100), got {self.retries}")
        if self.corruption_degrees is not None and (
            not self.corruption_degrees or not set(self.corruption_degrees) <= set(range(6))
        ):
            raise ConfigError(
                f"corruption_degrees: a list of degrees in 0..5 (or null), got "
                f"{list(self.corruption_degrees)}"
            )
        if self.sweep_layers is not None and self.sweep_layers < 1:
            raise ConfigError(f"sweep_layers: must be >= 1 (or null), got {self.sweep_layers}")
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
        if (self.attack is not None) != (self.division == "closed"):
            raise ConfigError(
                "attack: names the closed division's attack version; only a closed suite has one"
            )
        for mode in self.search.grid:
            for i, entry in enumerate(self.search.configurations(mode)):
                try:  # each configuration is a valid pair section
                    build(PairConfig, {**to_plain(self.pair), **entry.pair}, "pair")
                except ConfigError as e:
                    raise ConfigError(f"search.grid.{mode}[{i}].{e}") from None

    @property
    def seed_list(self) -> tuple[int, ...]:
        """Every seed the suite runs (``seeds``, else ``(seed,)``)."""
        return self.seeds if self.seeds is not None else (self.seed,)

    def stage_seed(self, seed: int) -> int:
        """The seed whose f_N (KD stage) the pairs of ``seed`` start from."""
        return self.seed_list[0] if self.share_stages is True else seed

    def teacher_seed(self, seed: int) -> int:
        """The seed whose teacher the f_N of ``seed`` is distilled from."""
        return self.seed_list[0] if self.share_stages else seed

    def pair_config(self, mode: str, params: dict) -> PairConfig:
        """The pair settings of one trial of ``mode``: the ``pair`` section, changed by the grid
        configuration ``params["configuration"]`` when there is one, and by the searched values
        in ``params`` (delta, alpha, beta, stealth). The plan sets options and budget."""
        plain = to_plain(self.pair)
        if params.get("configuration") is not None:
            plain.update(self.search.configuration(mode, params["configuration"]).pair)
        plain.update({k: v for k, v in params.items() if k in SEARCHED})
        return build(PairConfig, {**plain, "mode": mode}, "pair")

    def student(self, name: str) -> Student:
        """The student called ``name``."""
        return next(s for s in self.students if s.name == name)

    def digest(self) -> str:
        """A short hash of the resolved suite (recorded with every result): :func:`bench.config.
        digest.digest` of its plain data (fields added later are left out while at their
        default, :data:`bench.config.digest.LATER_FIELDS`)."""
        return digest.digest(to_plain(self))

    def digest_plain(self) -> dict:
        """The resolved suite as plain data without the later fields left at their default:
        what :meth:`digest` and the stages' settings (:func:`bench.pipeline.plan.stage_settings`)
        hash."""
        return digest.digest_plain(to_plain(self))


def _prepare(cls, data, path: str):
    """Shorthands: a student given by name or with one budget list; the teacher's defaults."""
    if cls is Suite and isinstance(data, dict) and data.get("division") == "closed":
        data = resolve_closed(data)
    if cls is Student and isinstance(data, str):
        data = {"name": data}
    if cls is Student and isinstance(data, dict) and isinstance(data.get("budgets"), list):
        data = {**data, "budgets": {"*": data["budgets"]}}
    if cls is Suite and isinstance(data, dict) and "modes" in data:
        raise ConfigError(
            "modes: every cell trains a robust and a detrimental pair (a record compares them); "
            "remove this key"
        )
    if cls is AugmentConfig and isinstance(data, dict) and "mixup" in data:
        stage = path.rsplit(".", 1)[0]
        raise ConfigError(f"{path}.mixup: batch mixup is the stage's own switch: set {stage}.mixup")
    if cls is PairConfig and isinstance(data, dict):
        defaults = to_plain(PairConfig())  # a saved (resolved) suite repeats the defaults
        for key in ("mode", "options", "budget", "avg_bits"):
            if key in data and data[key] != defaults[key]:
                raise ConfigError(
                    f"{path}.{key}: set by the plan for each cell (bit_options, avg_bits, "
                    "students[].budgets); remove it here"
                )
    if cls is StageConfig and path == "teacher_stage" and isinstance(data, dict):
        data = {**to_plain(TEACHER_DEFAULTS), **data}  # teacher fields default to the teacher's
    return data


def suite_text(suite: Suite) -> str:
    """The resolved suite as YAML: what a run folder's ``suite.yaml`` and each record hold (its
    :meth:`Suite.digest` is the records' ``suite_hash``)."""
    return yaml.safe_dump(to_plain(suite), sort_keys=False)


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


__all__ = ["Suite", "SuiteError", "Range", "load_suite", "parse_suite", "to_plain", "SEARCHED"]
