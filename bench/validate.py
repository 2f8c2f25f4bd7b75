"""What a leaderboard record must be: its schema, checked as untrusted input.

A record may come from anyone (a pull request adding a row). :func:`validate` accepts only known
fields, each checked (names from a safe character set, numbers finite and within their range,
nested tables of names and numbers only); the id must be the one its fields give; its files must
be where its id puts them (inside its board); its numbers must agree with each other; and its
verdict (``valid``, ``stealthy``) must follow from its numbers and its protocol
(:mod:`bench.protocol`). Schema 1 records (before the protocol) are read as history. Standard
library only.
"""

from __future__ import annotations

import math
import re

SCHEMA_VERSION = 2
RECORDS, PER_EXAMPLE, REPORTS = "records", "per_example", "reports"
NUMBERS = (  # every successful record has them (schema 1 and 2)
    "f_n_acc",
    "f_r_fp_acc",
    "f_r_q_acc",
    "f_r_drop",
    "f_d_fp_acc",
    "f_d_q_acc",
    "f_d_drop",
    "gap",
    "fp_match",
    "f_d_random_acc",
)
OPTIONAL_NUMBERS = ("transitory_rate_test", "transitory_rate_both_correct")  # from analyses
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # suites, datasets, versions, recipes
ARCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")  # a timm name or package.module:function
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


class RecordError(ValueError):
    """A record file or record that cannot be used; one line naming the file."""


def record_rel(rid: str) -> str:
    return f"{RECORDS}/{rid}.json"


def per_example_rel(rid: str) -> str:
    """Where a record's per-example results live, relative to its board."""
    return f"{PER_EXAMPLE}/{rid}.json"


def report_rel(rid: str) -> str:
    """Where a record's report (Tables 1-3, Figs. 2-4) lives, relative to its board."""
    return f"{REPORTS}/{rid}/report.md"


def _num(lo: float, hi: float, optional: bool = False):
    def check(v) -> str | None:
        if optional and v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return "is not a finite number"
        return None if lo <= v <= hi else f"{v} is outside [{lo}, {hi}]"

    return check


def _int(lo: int, hi: int):
    def check(v) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return "is not an integer"
        return None if lo <= v <= hi else f"{v} is outside [{lo}, {hi}]"

    return check


def _text(pattern: re.Pattern | None = None, limit: int = 2000, optional: bool = False):
    def check(v) -> str | None:
        if optional and v is None:
            return None
        if not isinstance(v, str) or len(v) > limit:
            return f"is not a string of at most {limit} characters"
        if pattern is not None and not pattern.fullmatch(v):
            return f"{v[:40]!r} has characters outside {pattern.pattern}"
        return None

    return check


def _kind(*types, optional: bool = False):
    def check(v) -> str | None:
        if optional and v is None:
            return None
        return (
            None if isinstance(v, types) else f"is not a {' or '.join(t.__name__ for t in types)}"
        )

    return check


def _tree(check_leaf, depth: int = 3):
    """A nested mapping (names -> ... -> leaf) whose keys are names and leaves pass ``check_leaf``."""

    def check(v, level=0) -> str | None:
        if isinstance(v, dict) and level < depth:
            for k, x in v.items():
                if not isinstance(k, str) or not NAME.fullmatch(k.replace(" ", "_")):
                    return f"has a key {str(k)[:40]!r} outside the safe names"
                why = check(x, level + 1)
                if why:
                    return f"[{k}] {why}"
            return None
        if isinstance(v, list) and level < depth:
            return next((w for w in (check(x, level + 1) for x in v) if w), None)
        return check_leaf(v)

    return check


PCT, DROP = _num(0, 100), _num(-100, 100)
COMMON = {  # every record, failed or not
    "schema_version": _int(1, SCHEMA_VERSION),
    "id": _text(ID, 400),
    "suite": _text(NAME),
    "suite_hash": _text(re.compile(r"[0-9a-f]{12}")),
    "seed": _int(0, 2**31 - 1),
    "dataset": _text(NAME),
    "num_classes": _int(2, 100_000),
    "architecture": _text(ARCH),
    "bit_options": _text(NAME),
    "options": _tree(_int(2, 16), depth=1),
    "budget": _int(1, 100_000),
    "recipe": _text(NAME),
    "error": _text(limit=2000, optional=True),
    "date": _text(re.compile(r"\d{4}-\d\d-\d\dT[0-9:+.Z-]{8,20}")),
    "git_commit": _text(re.compile(r"[0-9a-f]{40}"), optional=True),
    "python": _text(re.compile(r"[0-9.a-z+]{1,20}")),
    "versions": _tree(_text(re.compile(r"[0-9A-Za-z.+_-]{1,40}")), depth=1),
    "hardware": _tree(_kind(str, int, type(None)), depth=1),
    "retries": _tree(_kind(str, int, type(None)), depth=2),
    "skipped_images": _tree(_text(limit=500), depth=1),
}
SUCCESS = {  # and every successful one (schema 2)
    **{k: PCT for k in NUMBERS},
    "f_r_drop": DROP,
    "f_d_drop": DROP,
    "gap": _num(-200, 200),
    "f_n_val_acc": PCT,
    "f_d_uniform_acc": PCT,
    "selected_on": _text(re.compile(r"val|test")),
    "recipe_deviations": _tree(_kind(str, int, float, bool, type(None)), depth=1),
    "searched": _tree(_text(NAME), depth=1),
    "protocol": _tree(lambda v: None if isinstance(v, bool) else _num(0, 2**31)(v), depth=1),
    "degenerate": _kind(bool),
    "allocations_log10": _num(0, 10_000),
    "num_layers": _int(1, 100_000),
    "stealth": _tree(_num(-100, 100, optional=True), depth=3),
    "worst_non_own_drop": DROP,
    "hidden_gap": _num(-200, 200),
    "stealthy": _kind(bool),
    "valid": _kind(bool),
    "invalid_reasons": _tree(_text(limit=300), depth=1),
    "cross_policy": _tree(PCT, depth=2),
    "best": _tree(_num(0, 1e6), depth=2),
    "trials": _tree(_int(0, 10**6), depth=1),
    "per_example": _text(limit=500),
    "report": _text(limit=500),
}


def _leaf(v) -> str | None:
    """A number (finite) or a short name (a layer's module name, a scheme)."""
    if isinstance(v, str):
        return _text(re.compile(r"[A-Za-z0-9_.: -]{1,200}"), 200)(v)
    return _num(-1e6, 1e6)(v)


SCHEME = _text(re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,63}"), optional=True)
OPTIONAL = {
    **{k: _num(0, 100, optional=True) for k in OPTIONAL_NUMBERS},
    "policy_only_drop": _num(-100, 100, optional=True),
    "audit": _tree(_leaf, depth=3),
    "quantizer_transfer": _tree(_num(-200, 200), depth=2),
    "transfer_gap_min": _num(-200, 200, optional=True),
    "transfer_gap_max": _num(-200, 200, optional=True),
    "transfer_gap_min_scheme": SCHEME,
    "transfer_gap_max_scheme": SCHEME,
    "defenses": _tree(_num(-200, 200), depth=2),
    "best_defense": SCHEME,
    "best_defense_gap": _num(-200, 200, optional=True),
    "corruption_mean_acc": _tree(PCT, depth=1),
    "trigger_radius": _num(0, 100_000, optional=True),
}


def validate(rec: dict, where: str) -> dict:
    """Check one record as untrusted input; returns it. Schema 1 records are read as they are.

    Every field is known and checked (names from a safe character set, numbers finite and in
    range), the id is the one its fields give, its files are where its id puts them (inside the
    board), its numbers agree with each other, and its verdict (``valid``, ``stealthy``) follows
    from its numbers and protocol.
    """
    if not isinstance(rec, dict):
        raise RecordError(f"{where}: a record must be a JSON object")
    version = rec.get("schema_version")
    if version not in (1, SCHEMA_VERSION):
        raise RecordError(
            f"{where}: schema_version {version!r} is not supported (this tool reads 1 and "
            f"{SCHEMA_VERSION}); upgrade dptq-bench or re-run the suite"
        )
    if version == 1:
        return _validate_v1(rec, where)
    failed = rec.get("error") is not None
    allowed = {**COMMON, **({} if failed else {**SUCCESS, **OPTIONAL})}
    required = set(COMMON) | (set() if failed else set(SUCCESS))
    missing = sorted(required - set(rec))
    if missing:
        raise RecordError(f"{where}: missing field(s) {', '.join(missing)}")
    for key, value in rec.items():
        if key not in allowed:
            raise RecordError(f"{where}: unknown field {str(key)[:40]!r}")
        why = allowed[key](value)
        if why:
            raise RecordError(f"{where}: field {key}: {why}")
    _check_consistent(rec, where, failed)
    return rec


def _check_consistent(rec: dict, where: str, failed: bool) -> None:
    from .plan import cell_key
    from .protocol import invalid_reasons, is_stealthy

    key = cell_key(rec["architecture"], rec["bit_options"], rec["budget"], rec["seed"])
    base = f"{rec['suite']}/{rec['suite_hash']}/{key}"
    expected = re.compile(re.escape(base) + (r"/failed-[0-9a-f]{8}" if failed else ""))
    if not expected.fullmatch(rec["id"]):
        raise RecordError(f"{where}: id {rec['id'][:80]!r} does not match its fields ({base})")
    if failed:
        return
    for field, rel in (("per_example", per_example_rel), ("report", report_rel)):
        if rec[field] != rel(rec["id"]):
            raise RecordError(f"{where}: field {field} must be {rel(rec['id'])!r}")
    close = lambda a, b: abs(a - b) <= 1e-6  # noqa: E731
    checks = {
        "f_r_drop": rec["f_r_fp_acc"] - rec["f_r_q_acc"],
        "f_d_drop": rec["f_d_fp_acc"] - rec["f_d_q_acc"],
        "gap": rec["f_d_drop"] - rec["f_r_drop"],
        "fp_match": abs(rec["f_r_fp_acc"] - rec["f_d_fp_acc"]),
    }
    for k, v in checks.items():
        if not close(rec[k], v):
            raise RecordError(f"{where}: field {k} is {rec[k]} but its parts give {v}")
    if rec["invalid_reasons"] != invalid_reasons(rec) or rec["valid"] != (
        not rec["invalid_reasons"]
    ):
        raise RecordError(f"{where}: valid / invalid_reasons do not follow from its numbers")
    if rec["stealthy"] != is_stealthy(rec):
        raise RecordError(f"{where}: stealthy does not follow from its numbers")


def _validate_v1(rec: dict, where: str) -> dict:
    required = ("id", "suite", "suite_hash", "seed", "dataset", "architecture", "bit_options")
    required += ("options", "budget", "error", "date", "git_commit", "versions", "hardware")
    missing = [k for k in required if k not in rec]
    if missing:
        raise RecordError(f"{where}: missing field(s) {', '.join(missing)}")
    if not isinstance(rec["id"], str) or not ID.fullmatch(rec["id"]) or ".." in rec["id"]:
        raise RecordError(f"{where}: id {str(rec['id'])[:80]!r} is not a record id")
    for key in ("suite", "dataset", "bit_options"):
        if _text(NAME)(rec[key]):
            raise RecordError(f"{where}: field {key}: not a safe name")
    if _text(ARCH)(rec["architecture"]):
        raise RecordError(f"{where}: field architecture: not a safe name")
    if rec["error"] is None:
        absent = [k for k in NUMBERS if PCT(rec.get(k)) and DROP(rec.get(k))]
        absent += [k for k in OPTIONAL_NUMBERS if k in rec and _num(0, 100, True)(rec[k])]
        if absent:
            raise RecordError(f"{where}: a successful record needs numbers for {', '.join(absent)}")
    pe = rec.get("per_example")
    if pe is not None and pe != per_example_rel(rec["id"]):
        raise RecordError(f"{where}: field per_example must be {per_example_rel(rec['id'])!r}")
    return rec
