"""Suites: YAML files loaded with ``yaml.safe_load`` into frozen, validated dataclasses.

A mistake gives :class:`SuiteError` with one line: the file, the field path, what was wrong and
what is allowed (an unknown key names the nearest valid one). Nothing runs before a suite loads.
The stage and pair sections take any field of :class:`dptq.train.StageConfig` and
:class:`dptq.pair.PairConfig`, validated by those classes.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dptq.data import DATASETS, load_dataset
from dptq.engine import ConfigError
from dptq.models import ActQuantConfig
from dptq.pair import PairConfig
from dptq.train import TEACHER_DEFAULTS, StageConfig

ANALYSES = ("pair_scores", "transitory", "cross_policy", "layer_sweep", "histograms", "corruptions")


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


@dataclass(frozen=True)
class Search:
    """Optuna (through Ray Tune's OptunaSearch) over the hinge margin and the loss weights.

    Attributes:
        num_samples: trials per (student, bit options, budget, mode); the first trial always uses
            the ``pair`` section's own delta/alpha/beta.
        delta, alpha, beta: ranges; a missing one is fixed at the ``pair`` section's value.
        fp_tolerance: points of FP accuracy below f_N that a pair may lose before it is penalised.
        penalty: score points per point of FP accuracy lost beyond the tolerance.
        asha: stop unpromising trials early (ASHA) when True.
    """

    num_samples: int = 1
    delta: Range | None = None
    alpha: Range | None = None
    beta: Range | None = None
    fp_tolerance: float = 2.0
    penalty: float = 10.0
    asha: bool = False

    def __post_init__(self):
        if self.num_samples < 1:
            raise ConfigError(f"num_samples: must be >= 1, got {self.num_samples}")


@dataclass(frozen=True)
class Resources:
    """Per trial; fractional GPUs let several trials share one GPU."""

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self):
        if self.cpus <= 0 or self.gpus < 0:
            raise ConfigError(f"cpus must be > 0 and gpus >= 0, got {self.cpus}, {self.gpus}")


@dataclass(frozen=True)
class Student:
    """A white-box architecture: a timm name or ``package.module:function``.

    ``budgets``: absolute budgets for this student (override the suite's ``avg_bits``), either one
    list for all bit-option versions or a mapping version -> list.
    """

    name: str
    budgets: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Dataset:
    """A registered dataset, its loader's options, and what an unreadable image file does.

    ``bad_images``: ``stop`` (the run ends with one line listing the files) or ``skip`` (they are
    left out, listed in the run's output and counted on the record).
    """

    name: str = "digits"
    options: dict[str, Any] = field(default_factory=dict)
    bad_images: Literal["stop", "skip"] = "stop"

    def load(self):
        """The dataset pair (:func:`dptq.data.load_dataset`)."""
        return load_dataset(self.name, bad_images=self.bad_images, **self.options)

    def __post_init__(self):
        if self.name not in DATASETS:
            near = difflib.get_close_matches(self.name, list(DATASETS), n=1)
            raise ConfigError(
                f"unknown dataset {self.name!r}; "
                + (f"did you mean {near[0]!r}?" if near else f"known: {sorted(DATASETS)}")
            )
        if "bad_images" in self.options:
            raise ConfigError("options.bad_images: put bad_images directly under dataset")


@dataclass(frozen=True)
class Teacher:
    name: str = "resnet50"
    pretrained: bool = False


@dataclass(frozen=True)
class Suite:
    """A benchmark suite (see README "Suites").

    Attributes:
        name: used for the run folder and the leaderboard.
        seed: seeds every stage; the same seed on the CPU gives the same numbers.
        dataset, teacher, students: what is distilled into what.
        teacher_stage, kd_stage, pair: hyperparameters (any field of StageConfig / PairConfig).
        bit_options: named versions, e.g. ``{I: [3..10], II: [4..10]}``.
        avg_bits: budgets as average bits x L, for students without explicit ``budgets``.
        modes: which pairs to search.
        search: the Optuna search.
        analyses: which analyses to run on each architecture's best pairs.
        analysis_examples: examples per split for the layer sweeps and corruptions (null: all).
        resources: per trial.
        retries: times a failed trial is retried (from its checkpoint) before it counts as failed.
        act: activation quantizer settings.
        policy, policy_options: the registered bit-width policy and its options.
    """

    name: str
    seed: int = 0
    dataset: Dataset = Dataset()
    teacher: Teacher = Teacher()
    students: tuple[Student, ...] = (Student("resnet18"),)
    teacher_stage: StageConfig = TEACHER_DEFAULTS
    kd_stage: StageConfig = StageConfig()
    pair: PairConfig = PairConfig()
    bit_options: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"I": tuple(range(3, 11))}
    )
    avg_bits: tuple[float, ...] = (4.0,)
    modes: tuple[Literal["robust", "detrimental"], ...] = ("robust", "detrimental")
    search: Search = Search()
    analyses: tuple[Literal[ANALYSES], ...] = ANALYSES  # type: ignore[valid-type]
    analysis_examples: int | None = 512
    resources: Resources = Resources()
    retries: int = 1
    act: ActQuantConfig = ActQuantConfig()
    policy: str = "small_cnn"
    policy_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("students", "modes", "bit_options", "avg_bits"):
            if not getattr(self, name) and not (
                name == "avg_bits" and all(s.budgets for s in self.students)
            ):
                raise ConfigError(f"{name}: must not be empty")
        for version, opts in self.bit_options.items():
            if not opts or min(opts) < 2 or max(opts) > 16 or len(set(opts)) != len(opts):
                raise ConfigError(
                    f"bit_options.{version}: need distinct bit-widths in 2..16, got {list(opts)}"
                )
        if self.retries < 0:
            raise ConfigError(f"retries: must be >= 0, got {self.retries}")

    def digest(self) -> str:
        """A short hash of the resolved suite (recorded with every result)."""
        blob = json.dumps(to_plain(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# --- generic loader -------------------------------------------------------------------------

_HINTS_CACHE: dict[type, dict[str, Any]] = {}


def _hints(cls) -> dict[str, Any]:
    if cls not in _HINTS_CACHE:
        _HINTS_CACHE[cls] = typing.get_type_hints(cls, include_extras=False)
    return _HINTS_CACHE[cls]


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return f"a mapping with keys {', '.join(f.name for f in dataclasses.fields(tp))}"
    if origin in (tuple, list):
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        type(None): "null",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def _convert(value, tp, path: str):
    """``value`` (from YAML) as type ``tp``, or ConfigError("<path>: ...")."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _convert(value, a, path)
            except ConfigError as e:
                errors.append(e)
        raise (
            errors[0]
            if len(errors) == 1
            else ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
        )
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path}: {value!r} is not {_describe(tp)}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp)
        return {str(k): _convert(v, vt, f"{path}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp}")


def _build(cls, data, path: str):
    if cls is Student and isinstance(data, str):
        data = {"name": data}
    if cls is Student and isinstance(data, dict) and isinstance(data.get("budgets"), list):
        data = {**data, "budgets": {"*": data["budgets"]}}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'suite'}: expected {_describe(cls)}, got {data!r}")
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields_:
            near = difflib.get_close_matches(str(key), list(fields_), n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"allowed: {', '.join(fields_)}"
            raise ConfigError(f"{where}: unknown key; {hint}")
        kwargs[key] = _convert(value, _hints(cls)[key], where)
    if cls is StageConfig and path == "teacher_stage":  # teacher fields default to the teacher's
        base = {f.name: getattr(TEACHER_DEFAULTS, f.name) for f in dataclasses.fields(StageConfig)}
        kwargs = {**base, **kwargs}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        msg = str(e)
        head, _, rest = msg.partition(": ")
        if head in fields_:  # the class named one of its own fields
            raise ConfigError(f"{path}.{head}: {rest}" if path else msg) from None
        raise ConfigError(f"{path or 'suite'}: {msg}") from None
    except TypeError as e:  # a required key is missing
        missing = str(e).rsplit(":", 1)[-1].strip().strip("'")
        where = f"{path}.{missing}" if path else missing
        raise ConfigError(f"{where}: required key is missing") from None


def parse_suite(data: Any, source: str = "<suite>") -> Suite:
    """Validate already-parsed YAML data into a :class:`Suite`; errors name ``source``."""
    try:
        return _build(Suite, data, "")
    except ConfigError as e:
        raise SuiteError(f"{source}: {e}") from None


def load_suite(path: str | Path) -> Suite:
    """Read a suite file with ``yaml.safe_load`` (no tags executed) and validate it."""
    p = Path(path)
    if not p.is_file():
        raise SuiteError(f"{p}: no such suite file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise SuiteError(f"{p}: not valid YAML{line}: {problem}") from None
    return parse_suite(data, str(p))


def to_plain(obj):
    """JSON-friendly form of a suite or any nested dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj
