"""Records written before schema 3: schema 1 read as history, schema 2 migrated, exactly.

**Schema 1** (before the protocol: selected on the test split, no validation split) has scores
and no counts to rebuild an evaluation from; it is read as it is (:class:`RecordV1`, checked as
untrusted input) and never ranked.

**Schema 2** stored accuracies as float32 means. :func:`migrate_v2` turns each into the count it
was computed from (an accuracy of ``c`` of ``n`` examples is ``100 c / n`` to within float32
noise, far below one example) and refuses any number that is not such a count: the migrated
record's every score is then the exact one, its verdict recomputed, and its per-example file
rewritten in the schema-3 layout (the FP and own-policy vectors schema 2 kept). What schema 2
kept only as a mean (f_N under the random and held-out allocations, the audit's random mean)
stays under ``legacy``, as it was. Standard library only.

One job: reading what earlier versions of this tool wrote (the schema-1 type and the schema-2
migration exist only for old files, and change together).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError

from .record import (
    ARCH,
    ID,
    NAME,
    SCHEMA_VERSION,
    Record,
    RecordError,
    _Model,
    per_example_bytes,
    per_example_rel,
)
from .verify import make, one_line

NUMBERS = ("f_n_acc", "f_r_fp_acc", "f_r_q_acc", "f_r_drop", "f_d_fp_acc", "f_d_q_acc")
NUMBERS += ("f_d_drop", "gap", "fp_match", "f_d_random_acc")
Num = Annotated[float, Field(ge=-200, le=200)]


class RecordV1(_Model):
    """A schema-1 record (history: selected on the test split, never ranked)."""

    model_config = {**_Model.model_config, "extra": "ignore"}
    schema_version: Literal[1]
    id: Annotated[str, Field(pattern=f"^{ID}$", max_length=400)]
    suite: Annotated[str, Field(pattern=f"^{NAME}$")]
    suite_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{12}$")]
    seed: int
    dataset: Annotated[str, Field(pattern=f"^{NAME}$")]
    architecture: Annotated[str, Field(pattern=f"^{ARCH}$")]
    bit_options: Annotated[str, Field(pattern=f"^{NAME}$")]
    options: list[int]
    budget: int
    error: Annotated[str, Field(max_length=2000)] | None
    date: str
    git_commit: str | None
    versions: dict[str, str]
    hardware: dict[str, str | int | None]
    per_example: str | None = None
    f_n_acc: Num | None = None
    f_r_fp_acc: Num | None = None
    f_r_q_acc: Num | None = None
    f_r_drop: Num | None = None
    f_d_fp_acc: Num | None = None
    f_d_q_acc: Num | None = None
    f_d_drop: Num | None = None
    gap: Num | None = None
    fp_match: Num | None = None
    f_d_random_acc: Num | None = None
    transitory_rate_test: Num | None = None

    recipe: str = "dptq-v1 (schema 1)"
    valid: bool = False
    stealthy: bool = False
    attacked: bool = False  # schema 1 is never scored: the fields later schemas derive are empty
    specificity: None = None
    num_layers: int | None = None
    invalid_reasons: list[str] = ["schema 1: selected on the test split, no validation split"]
    degenerate: bool = False
    retries: list = []
    hidden_gap: None = None
    worst_non_own_drop: None = None
    report: None = None
    _raw: dict = PrivateAttr(default_factory=dict)

    def analysis(self, name: str, attribute: str | None = None):
        return None

    def to_json(self) -> dict:
        """The record as its file holds it (schema 1 is kept as it was written)."""
        return self._raw


def parse_v1(data: dict, where: str) -> RecordV1:
    try:
        rec = RecordV1.model_validate_json(json.dumps(data, allow_nan=False))
    except (ValidationError, ValueError) as e:
        why = one_line(e) if isinstance(e, ValidationError) else "a number is not finite"
        raise RecordError(f"{where}: {why}") from None
    if rec.error is None and any(getattr(rec, k) is None for k in NUMBERS):
        missing = [k for k in NUMBERS if getattr(rec, k) is None]
        raise RecordError(f"{where}: a successful record needs numbers for {', '.join(missing)}")
    if rec.per_example is not None and rec.per_example != per_example_rel(rec.id):
        raise RecordError(f"{where}: field per_example must be {per_example_rel(rec.id)!r}")
    rec._raw = data
    return rec


SCHEME_ORDER = ("minmax", "absmax_sym", "pct99.9", "pct99.99", "per_channel", "static")


def _defense_order(name: str):
    """Where :func:`dptq.defenses.defense_table` puts a defense (none, fine-tuning, weight noise
    by scale, percentile scaling, the uniform allocation)."""
    kind, _, arg = name.partition(" ")
    rank = {"none": 0, "finetune": 1, "noise": 2, "percentile": 3}.get(kind, 4)
    return rank, float(arg) if arg.replace(".", "", 1).isdigit() else 0.0


def _count(acc: float, n: int, where: str, field: str) -> int:
    """The number of examples of ``n`` that an accuracy (or a drop) in percent stands for."""
    x = acc * n / 100
    c = round(x)
    if abs(x - c) > 1e-3:
        raise RecordError(f"{where}: field {field}: {acc} is not a count of {n} examples")
    return c


def _bits(values: list) -> str:
    return "".join("1" if v else "0" for v in values)


def _corruption_total(means: dict, n: int, suite: dict | None) -> int | None:
    """examples x corrupted evaluations behind schema 2's mean corruption accuracies: the
    suite's sample (``analysis_examples``) of the test split, 9 corruptions, its degrees 1..5."""
    degrees = (suite or {}).get("corruption_degrees") or [0, 1, 2, 3, 4, 5]
    shown = [(suite or {}).get("analysis_examples")] if suite else []
    for examples in [*shown, 150, 512, None]:
        sub = n if examples is None else min(examples, n)
        total = sub * 9 * sum(1 for d in degrees if d > 0)
        if total and all(
            abs(m * total / 100 - round(m * total / 100)) < 1e-6 for m in means.values()
        ):
            return total
    return None


def migrate_v2(
    rec: dict, per_example: dict, where: str, suite: dict | None = None
) -> tuple[Record, dict]:
    """(schema-3 record, its per-example file) of a schema-2 record and its per-example file
    (module docstring). ``suite``: the resolved suite that wrote it, when known (the corruption
    sample size); without it the size is found from the numbers or the section kept as legacy."""
    if rec.get("error") is not None:
        keep = {k: v for k, v in rec.items() if k in Record.model_fields and v is not None}
        return make({**keep, "schema_version": SCHEMA_VERSION, "migrated_from": 2}), {}
    robust, det = per_example["robust"], per_example["detrimental"]
    n = len(robust["fp_correct"])
    cp, st = rec["cross_policy"], rec["stealth"]
    legacy: dict[str, Any] = {}

    def c(acc, field):
        return _count(acc, n, where, field)

    nets = {}
    for tag, own, other in (("f_R", robust, "pi_D"), ("f_D", det, "pi_R")):
        fp = sum(own["fp_correct"])
        mine = "pi_R" if tag == "f_R" else "pi_D"
        nets[tag] = {
            "FP": fp,
            mine: sum(own["q_correct"]),
            other: c(cp[tag][other], f"cross_policy.{tag}.{other}"),
            "uniform": c(cp[tag]["uniform"], f"cross_policy.{tag}.uniform"),
            "random": [fp - c(d, f"stealth.{tag}.random") for d in st[tag]["random"]],
            "heldout": [fp - c(d, f"stealth.{tag}.heldout") for d in st[tag].get("heldout", [])]
            or None,
        }
    nets["f_N"] = {
        a: c(cp["f_N"][a], f"cross_policy.f_N.{a}") for a in ("FP", "pi_R", "pi_D", "uniform")
    }
    nets["f_N"] |= {"random": None, "heldout": None}
    legacy["f_N_random_acc"] = cp["f_N"].get("random")
    legacy["f_N_heldout_acc"] = cp["f_N"].get("heldout")
    analyses = _migrate_analyses(rec, n, nets, robust, det, where, suite, legacy)
    new_pe = {
        "total": n,
        "evaluation": {
            "f_R": {"FP": _bits(robust["fp_correct"]), "pi_R": _bits(robust["q_correct"])},
            "f_D": {"FP": _bits(det["fp_correct"]), "pi_D": _bits(det["q_correct"])},
        },
    }
    keep = ("id", "suite", "suite_hash", "seed", "dataset", "num_classes", "architecture")
    keep += ("bit_options", "options", "budget", "recipe", "date", "git_commit", "python")
    keep += ("versions", "hardware", "retries", "skipped_images", "selected_on")
    keep += ("recipe_deviations", "searched", "protocol", "degenerate", "allocations_log10")
    keep += ("num_layers", "f_n_val_acc", "best", "trials", "report")
    data = {k: rec[k] for k in keep}
    data |= {
        "schema_version": SCHEMA_VERSION,
        "error": None,
        "evaluation": {"split": "test", "total": n, **nets},
        "analyses": analyses,
        "per_example": per_example_rel(rec["id"]),
        "per_example_sha256": hashlib.sha256(per_example_bytes(new_pe)).hexdigest(),
        "migrated_from": 2,
        "legacy": {k: v for k, v in legacy.items() if v is not None},
    }
    new = make(data)
    for k in ("gap", "f_d_drop", "f_r_drop", "fp_match", "hidden_gap", "worst_non_own_drop"):
        if abs(getattr(new, k) - rec[k]) > 1e-3:
            raise RecordError(
                f"{where}: field {k}: {rec[k]} is not what its counts give ({getattr(new, k)})"
            )
    return new, new_pe


def _migrate_analyses(rec, n, nets, robust, det, where, suite, legacy) -> dict:
    out: dict[str, Any] = {}
    c = lambda acc, field: _count(acc, n, where, field)  # noqa: E731
    if rec.get("transitory_rate_test") is not None:
        both = [a and b for a, b in zip(robust["fp_correct"], det["fp_correct"])]
        count = sum(b and not q for b, q in zip(both, det["q_correct"]))
        if c(rec["transitory_rate_test"], "transitory_rate_test") != count:
            raise RecordError(
                f"{where}: field transitory_rate_test does not match its per-example file"
            )
        out["transitory"] = {"count": count, "both_correct": sum(both), "total": n}
    means = rec.get("corruption_mean_acc")
    if means:
        total = _corruption_total(means, n, suite)
        if total is None:
            legacy["corruption_mean_acc"] = means
        else:
            out["corruptions"] = {
                "correct": {k: round(m * total / 100) for k, m in means.items()},
                "total": total,
            }
    if "trigger_radius" in rec:
        out["trigger"] = {"radius": rec["trigger_radius"]}
    a = rec.get("audit")
    if a:
        out["audit"] = {
            "total": n,
            "fp": c(a["fp_acc"], "audit.fp_acc"),
            "adversarial": c(a["adv_acc"], "audit.adv_acc"),
            "uniform": c(a["uniform_acc"], "audit.uniform_acc"),
            "random": None,
            "oracle": c(a["oracle_acc"], "audit.oracle_acc") if "oracle_acc" in a else None,
            "flipped": c(a["flipped_rate_test"], "audit.flipped_rate_test"),
            "mean_bits": a["mean_bits"],
            "starved": a["starved"],
        }
        legacy["audit_random_mean"], legacy["audit_random_sd"] = a["random_mean"], a["random_sd"]
    qt = rec.get("quantizer_transfer")
    if qt:  # in the order the schemes were measured (schema 2 kept them as a JSON object)
        order = sorted(qt, key=lambda s: (SCHEME_ORDER.index(s) if s in SCHEME_ORDER else 99, s))
        schemes = []
        for s in order:
            drops = {k[: -len("_drop")]: v for k, v in qt[s].items() if k.endswith("_drop")}
            lost = {k: c(v, f"quantizer_transfer.{s}.{k}_drop") for k, v in drops.items()}
            schemes.append({"scheme": s, "lost": lost})
        out["quantizer_transfer"] = {"total": n, "schemes": schemes}
    df = rec.get("defenses")
    if df:
        fp = nets["f_D"]["FP"]
        rows = [
            {
                "name": name,
                "f_r_lost": c(df[name]["f_r_drop"], f"defenses.{name}.f_r_drop"),
                "f_d_lost": c(df[name]["f_d_drop"], f"defenses.{name}.f_d_drop"),
                "f_d_fp": fp - c(df[name]["fp_cost"], f"defenses.{name}.fp_cost"),
            }
            for name in sorted(df, key=_defense_order)
        ]
        out["defenses"] = {"total": n, "fp_cost_max": rec["protocol"]["fp_drop_max"], "rows": rows}
    return out


def read(data: Any, where: str, per_example_file: Path | None = None, suite: dict | None = None):
    """A record of any schema from untrusted data: schema 3 parsed (:func:`bench.records.verify.parse`),
    schema 1 as history, schema 2 migrated (its per-example file, the old layout, is needed).
    Returns ``(record, per-example data or None)``."""
    from .verify import parse

    if not isinstance(data, dict):
        raise RecordError(f"{where}: a record must be a JSON object")
    version = data.get("schema_version")
    if version not in (1, 2, SCHEMA_VERSION) or isinstance(version, bool):
        raise RecordError(
            f"{where}: schema_version {version!r} is not supported (this tool reads 1, 2 and "
            f"{SCHEMA_VERSION}); upgrade dptq-bench or re-run the suite"
        )
    if version == 1:
        return parse_v1(data, where), None
    if version == 2:
        if per_example_file is None or not per_example_file.is_file():
            raise RecordError(
                f"{where}: a schema-2 record is migrated from its per-example file, which is missing"
            )
        try:
            pe = json.loads(per_example_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise RecordError(
                f"{per_example_file}: not readable JSON; fix or remove that file"
            ) from None
        rec, new_pe = migrate_v2(_checked_v2(data, where), pe, where, suite)
        return rec, new_pe
    return parse(data, where), None


def _checked_v2(data: dict, where: str) -> dict:
    """A schema-2 record's fields the migration reads, checked before it reads them."""
    need = ("id", "suite", "suite_hash", "architecture", "bit_options", "budget", "seed")
    missing = [k for k in need if k not in data]
    if missing:
        raise RecordError(f"{where}: missing field(s) {', '.join(missing)}")
    if data.get("error") is None:
        for k in (
            "cross_policy",
            "stealth",
            "protocol",
            *NUMBERS,
            "hidden_gap",
            "worst_non_own_drop",
        ):
            if k not in data:
                raise RecordError(f"{where}: missing field {k}")
    return data
