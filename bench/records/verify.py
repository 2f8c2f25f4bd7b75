"""Records read from anywhere: checked as untrusted input, every derived field recomputed.

:func:`parse` turns JSON data into a :class:`bench.records.record.Record` or refuses it with one line
(:class:`bench.records.record.RecordError`) naming the file and the field: every field typed and in range
(pydantic, strict), every name and text from a safe character set, the id the one its fields
give, its files where its id puts them, its counts within its test set, and every derived field
(scores, verdict) equal to what its counts give. :func:`make` is how a run writes a record: the
same checks, so what is written is exactly what is read back. No torch (``deep`` builds the
suite, which loads the trainers). One job, over 300 lines: a record read as untrusted input,
every check (fields, derived numbers, suite, division, per-example evidence) in one place."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from .record import (
    DERIVED,
    SCHEMA_VERSION,
    SUCCESS,
    Record,
    RecordError,
    per_example_bytes,
    per_example_rel,
    report_rel,
)

SAFE = "A-Za-z0-9_.:,;()=%+/ -"  # the characters of any name or text a record holds
TEXT = re.compile(f"[{SAFE}]{{0,300}}")


def one_line(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "record"
    msg = err["msg"]
    if err["type"] == "extra_forbidden" or err["type"] == "unexpected_keyword_argument":
        msg = "unknown field"
    elif err["type"] == "missing":
        msg = "missing"
    return f"field {loc}: {msg}"


FREE = re.compile(r"error|skipped_images\[\d+\]|retries\[\d+\]\.reason|suite_text")  # free text


def _check_text(obj, path: str, where: str) -> None:
    """Every name and text a record holds (keys too) is from a safe character set, except the
    free texts (:data:`FREE`: error messages and file names), which the views escape."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str) or not TEXT.fullmatch(k):
                raise RecordError(
                    f"{where}: field {path or 'record'}: has a key {str(k)[:40]!r} outside the "
                    "safe names"
                )
            _check_text(v, f"{path}.{k}" if path else k, where)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            _check_text(v, f"{path}[{i}]", where)
    elif isinstance(obj, str) and not FREE.fullmatch(path) and not TEXT.fullmatch(obj):
        raise RecordError(
            f"{where}: field {path}: {obj[:40]!r} has characters outside the safe set"
        )


def _check_suite_text(rec: Record, where: str, deep: bool) -> dict | None:
    """A record's suite text must be a suite whose hash is the record's ``suite_hash``; returns
    its plain data with every later field at its default (None for a record without one).

    Without ``deep`` the hash is computed from the text's data (:func:`bench.config.digest.
    digest`: no torch, as the board's views read records); with ``deep`` the text is also built
    as a :class:`bench.config.suite.Suite` (which loads the trainers), refusing one that is not
    a valid suite: what ``bench leaderboard --add`` and the committed records' test do.
    """
    if rec.suite_text is None:
        return None
    import yaml

    from ..config.digest import digest, with_later_defaults

    try:
        plain = yaml.safe_load(rec.suite_text)
        if not isinstance(plain, dict):
            raise ValueError("not a mapping")
        name, hashed = plain.get("name"), digest(plain)
        if deep:
            from ..config.suite import parse_suite
            from ..config.typed_yaml import to_plain

            suite = parse_suite(plain, "suite_text")
            name, hashed, plain = suite.name, suite.digest(), to_plain(suite)
    except Exception as e:  # a hostile text: any parse error is the submitter's, in one line
        why = " ".join(str(e).split())[:120]
        raise RecordError(f"{where}: field suite_text: not a suite ({why})") from None
    if hashed != rec.suite_hash or name != rec.suite:
        raise RecordError(
            f"{where}: field suite_text: its suite is {name!r} with hash {hashed}, not the "
            f"record's {rec.suite!r} {rec.suite_hash} (a suite field added without an entry in "
            "bench.config.digest.LATER_FIELDS changes every hash)"
        )
    return with_later_defaults(plain)


def _check_division(rec: Record, plain: dict | None, where: str) -> None:
    """A record's division and attack are its suite's; a closed record is verified as closed
    (:func:`_check_closed`)."""
    if plain is None:
        if rec.division == "closed":
            raise RecordError(
                f"{where}: field suite_text: missing (a closed record names its suite)"
            )
        return
    division, attack = plain.get("division", "open"), plain.get("attack")
    if (division, attack) != (rec.division, rec.attack):
        raise RecordError(
            f"{where}: field division: the record says {rec.division} ({rec.attack}), its suite "
            f"{division} ({attack})"
        )
    if rec.division == "closed" and rec.error is None:
        _check_closed(rec, plain, where)


def _check_closed(rec: Record, plain: dict, where: str) -> None:
    """A closed record as the closed division requires: its suite's fixed sections are its attack
    version's (:func:`bench.config.closed.resolve`), its protocol the suite's (v3), a clean tree
    (``git_dirty`` false), and every configuration of the portfolio on the record with its
    validation figures, so that its score and the winner recompute
    (:func:`bench.records.protocol.selection_score`). Reads the suite's plain data only."""
    from dptq.errors import ConfigError

    from ..config.closed import resolve as closed_resolve
    from .protocol import resolve, selection_score

    try:
        closed_resolve(plain)
    except ConfigError as e:
        raise RecordError(f"{where}: field suite_text: {e}") from None
    if rec.protocol.model_dump() != resolve(plain["protocol"], rec.num_classes):
        raise RecordError(f"{where}: field protocol: not its closed suite's (attack {rec.attack})")
    if rec.git_dirty is not False:
        raise RecordError(
            f"{where}: field git_dirty: a closed record comes from a clean checkout of a commit "
            f"(git_dirty {rec.git_dirty})"
        )
    grid = plain["search"]["grid"]
    for mode in ("robust", "detrimental"):
        names = [c["name"] for c in grid.get(mode, [])]
        rows = (rec.searches or {}).get(mode) or []
        if [r.configuration for r in rows] != names:
            raise RecordError(
                f"{where}: field searches.{mode}: its trials are "
                f"{[r.configuration for r in rows]}, the attack's configurations {names}"
            )
        scored = []
        for i, r in enumerate(rows):
            if r.failed:
                continue
            if r.score is None or r.val_drop is None or r.val_fp_acc is None:
                raise RecordError(
                    f"{where}: field searches.{mode}[{i}]: a finished trial needs its score and "
                    "validation figures (val_drop, val_fp_acc)"
                )
            mine = selection_score(mode, r.val_drop, r.val_fp_acc, rec.f_n_val_acc, rec.protocol)
            if mine != r.score:
                raise RecordError(
                    f"{where}: field searches.{mode}[{i}].score: stored {r.score}, its validation "
                    f"figures give {mine}"
                )
            scored.append((round(mine, 6), -i, r.configuration))
        won = max(scored)[2] if scored else None
        if won is None or (rec.configuration or {}).get(mode) != won:
            raise RecordError(
                f"{where}: field configuration.{mode}: {(rec.configuration or {}).get(mode)!r}, "
                f"its trials' validation figures select {won!r}"
            )


def _check_counts(rec: Record, where: str) -> None:
    ev = rec.evaluation
    for net in ("f_N", "f_R", "f_D"):
        nc = getattr(ev, net)
        k = rec.protocol.random_allocations
        for a in ("FP", "pi_R", "pi_D", "uniform", "random", "heldout"):
            v = getattr(nc, a)
            vals = v if isinstance(v, list) else [v]
            if isinstance(v, list) and len(v) != k:
                raise RecordError(
                    f"{where}: field evaluation.{net}.{a}: {len(v)} allocations, its protocol says {k}"
                )
            if any(x is not None and not 0 <= x <= ev.total for x in vals):
                raise RecordError(
                    f"{where}: field evaluation.{net}.{a}: a count outside 0..{ev.total}"
                )
    if rec.migrated_from is None and any(
        getattr(getattr(ev, n), a) is None
        for n in ("f_N", "f_R", "f_D")
        for a in ("random", "heldout")
    ):
        raise RecordError(
            f"{where}: field evaluation: every allocation's count is recorded (only a migrated record may lack some)"
        )


def make(data: dict) -> Record:
    """A record from the fields a run computed (derived fields are computed, not given): what
    is written is exactly what :func:`parse` reads back."""
    rec = Record.model_validate_json(json.dumps(data, allow_nan=False))
    _check_shape(rec, "new record")
    return rec


def parse(data: Any, where: str, deep: bool = True) -> Record:
    """A record from untrusted JSON data: every field checked, the id given by its fields, its
    files where its id puts them, every derived field recomputed and compared. One line
    (:class:`RecordError`) naming ``where`` and the field otherwise. ``deep``: its suite text
    built as a suite too (:func:`_check_suite_text`; loads the trainers)."""
    if not isinstance(data, dict):
        raise RecordError(f"{where}: a record must be a JSON object")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise RecordError(
            f"{where}: schema_version {version!r} is not this tool's ({SCHEMA_VERSION}); "
            "re-run its suite with this version of dptq-bench"
        )
    stored = {k: data[k] for k in DERIVED if k in data}
    given = {k: v for k, v in data.items() if k not in DERIVED}
    _check_text(given, "", where)
    try:
        text = json.dumps(given, allow_nan=False)
    except ValueError:
        raise RecordError(f"{where}: a number is not finite (NaN or infinity)") from None
    try:
        rec = Record.model_validate_json(text)
    except ValidationError as e:
        raise RecordError(f"{where}: {one_line(e)}") from None
    _check_shape(rec, where, deep)
    for k in DERIVED:
        if k not in stored:
            raise RecordError(f"{where}: field {k}: missing (it is derived from the counts)")
        mine = getattr(rec, k)
        if not _same(stored[k], mine):
            raise RecordError(
                f"{where}: field {k}: stored {_shown(stored[k])}, its counts give {_shown(mine)}"
            )
    return rec


def _same(a, b) -> bool:
    if isinstance(a, float | int) and not isinstance(a, bool) and isinstance(b, float):
        return math.isfinite(a) and float(a) == b
    return type(a) is type(b) and a == b


def _shown(v) -> str:
    text = json.dumps(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_shape(rec: Record, where: str, deep: bool = True) -> None:
    from ..names import cell_key

    failed = rec.error is not None
    key = cell_key(rec.architecture, rec.bit_options, rec.budget, rec.seed)
    base = f"{rec.suite}/{rec.suite_hash}/{key}"
    expected = re.compile(re.escape(base) + (r"/failed-[0-9a-f]{8}" if failed else ""))
    if not expected.fullmatch(rec.id):
        raise RecordError(f"{where}: id {rec.id[:80]!r} does not match its fields ({base})")
    present = [k for k in SUCCESS if getattr(rec, k) is not None]
    if failed:
        if present:
            raise RecordError(f"{where}: field {present[0]}: a failed record measures nothing")
        _check_division(rec, _check_suite_text(rec, where, deep), where)
        return
    missing = [k for k in SUCCESS if getattr(rec, k) is None]
    if missing:
        raise RecordError(f"{where}: field {missing[0]}: missing")
    for field, rel in (("per_example", per_example_rel), ("report", report_rel)):
        if getattr(rec, field) != rel(rec.id):
            raise RecordError(f"{where}: field {field} must be {rel(rec.id)!r}")
    _check_division(rec, _check_suite_text(rec, where, deep), where)
    test = (rec.split_sizes or {}).get("test")
    if test is not None and test != rec.evaluation.total:
        raise RecordError(
            f"{where}: field split_sizes.test: {test}, but the evaluation counts "
            f"{rec.evaluation.total} test examples"
        )
    _check_counts(rec, where)


def read_json(path: Path):
    """A JSON file's data; RecordError (one line) when it is not readable JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        why = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
        raise RecordError(f"{path}: not readable JSON ({why}); fix or remove that file") from None


def verify_per_example(rec: Record, pe: dict, where: str) -> None:
    """The per-example file is this record's: its hash, and every vector's count and length."""
    digest = hashlib.sha256(per_example_bytes(pe)).hexdigest()
    if digest != rec.per_example_sha256:
        raise RecordError(
            f"{where}: field per_example_sha256: the per-example file's hash is {digest[:12]}..., "
            f"the record's {rec.per_example_sha256[:12]}... (another record's file?)"
        )
    ev, total = rec.evaluation, rec.evaluation.total
    if pe.get("total") != total:
        raise RecordError(f"{where}: per_example: {pe.get('total')} examples, the record {total}")
    for net, by in pe.get("evaluation", {}).items():
        counts = getattr(ev, net)
        for alloc, bits in by.items():
            want = getattr(counts, alloc)
            vectors, wants = (bits, want) if isinstance(bits, list) else ([bits], [want])
            if len(vectors) != len(wants or []):
                raise RecordError(f"{where}: per_example {net}.{alloc}: not one vector per count")
            for v, w in zip(vectors, wants):
                if len(v) != total or set(v) - {"0", "1"} or v.count("1") != w:
                    raise RecordError(
                        f"{where}: field evaluation.{net}.{alloc}: {w} correct, its per-example "
                        f"vector says {v.count('1')} of {len(v)}"
                    )
    audit = (pe.get("analyses") or {}).get("audit")
    if audit and rec.analysis("audit") is not None:
        if audit["pi_A"].count("1") != rec.analysis("audit").adversarial:
            raise RecordError(
                f"{where}: field analyses.audit.adversarial: not its per-example count"
            )
