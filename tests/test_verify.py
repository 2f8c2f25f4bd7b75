"""Records read as untrusted input (bench.records.verify): every field checked, every derived
field recomputed, one line naming the field for each forgery."""

import json
from pathlib import Path

import pytest

from bench.records.store import RecordError, add, load
from bench.records.verify import parse
from tests.support.records import board_with, changed, record, sample_records, source

ROOT = Path(__file__).resolve().parent.parent


def _hostile():
    r = record().to_json()
    esc = "<script>alert(1)</script>| x |"
    other = record("vgg11", 80, 5.0)
    return {
        "per_example outside the board": {**r, "per_example": "../../../../etc/passwd"},
        "report outside the board": {**r, "report": "/etc/passwd"},
        "architecture with markup": {**r, "architecture": esc},
        "suite with a slash": {**r, "suite": "a/b"},
        "a number that is not finite": {**r, "f_n_acc": float("nan")},
        "a number out of range": {**r, "f_r_fp_acc": 250.0, "fp_match": 151.0},
        "a gap its counts do not give": {**r, "gap": r["gap"] + 7},
        "a hidden gap raised": {**r, "hidden_gap": r["hidden_gap"] + 10},
        "a count out of range": {**r, "evaluation": {**r["evaluation"], "total": 10}},
        "an id its fields do not give": {**r, "id": "s/abcdef012345/other-I-80-s0"},
        "a forged verdict": {**record(f_d_fp=90.0).to_json(), "valid": True, "invalid_reasons": []},
        "a forged stealth verdict": {**record(hidden=-30.0).to_json(), "stealthy": True},
        "a forged attack verdict": {**record(gap=2.0).to_json(), "attacked": True},
        "a specificity lowered": {**r, "specificity": 0.01},
        "another record's per-example file": {
            **r,
            "per_example_sha256": other.per_example_sha256,
        },
        "an unknown field": {**r, "note": "trust me"},
        "a key with markup in a table": {**r, "best": {"<b>": {"delta": 1.0}}},
        "a boolean as a number": {**r, "budget": True},
        "a test split of another size": {**r, "split_sizes": {"train": 900, "test": 5}},
        "a suite text of another suite": {**r, "suite_text": "name: other\n"},
        "a suite text that is not a suite": {**r, "suite_text": "epochs: [1, {"},
    }


FORGED_FIELD = {  # the field each forgery's one line names
    "a gap its counts do not give": "field gap: stored",
    "a hidden gap raised": "field hidden_gap: stored",
    "a forged verdict": "field valid: stored true",
    "a forged stealth verdict": "field stealthy: stored true",
    "a forged attack verdict": "field attacked: stored true",
    "a specificity lowered": "field specificity: stored 0.01",
    "a suite text of another suite": "field suite_text: its suite is 'other'",
    "a suite text that is not a suite": "field suite_text: not a suite",
    "another record's per-example file": "field per_example_sha256",
}


@pytest.mark.parametrize("case", list(_hostile()), ids=lambda c: c.replace(" ", "-"))
def test_hostile_submissions_are_refused_and_nothing_is_written(tmp_path, case):
    bad = _hostile()[case]
    good = record("vgg11", 80, 5.0)
    src = source(tmp_path / "src", [good, record()])
    (src / "records").mkdir()
    with pytest.raises(RecordError) as e:
        add([good, bad], tmp_path / "board", source=src)
    assert "\n" not in str(e.value)
    if case in FORGED_FIELD:
        assert FORGED_FIELD[case] in str(e.value), str(e.value)
    assert not (tmp_path / "board").exists() or not any((tmp_path / "board").rglob("*.json"))


def test_schema_versions_and_malformed(tmp_path):
    rec = record().to_json()
    with pytest.raises(RecordError, match=r"x:1: schema_version 2 is not this tool's \(3\)"):
        parse({**rec, "schema_version": 2}, "x:1")
    with pytest.raises(RecordError, match="x:2: field budget: missing"):
        parse({k: v for k, v in rec.items() if k != "budget"}, "x:2")
    with pytest.raises(RecordError, match="x:3: field gap: stored null, its counts give 50.0"):
        parse({**rec, "gap": None}, "x:3")
    board = board_with(tmp_path, sample_records()[:2])
    broken = board / "records" / "s" / "abcdef012345" / "half.json"
    broken.write_text('{"schema_version": 2, "id": "half')  # a file cut off by hand
    with pytest.raises(RecordError) as e:
        load(board)
    assert str(e.value).startswith(f"{broken}: not readable JSON") and "\n" not in str(e.value)
    # nothing is added beside a broken file, and the board is left as it was
    before = sorted(p.name for p in board.rglob("*"))
    with pytest.raises(RecordError, match="fix or remove that file"):
        add([record("vgg11", 80, 5.0)], board)
    assert sorted(p.name for p in board.rglob("*")) == before
    broken.write_text(json.dumps(record("vgg11", 80, 5.0).to_json()))  # valid, wrong name
    with pytest.raises(RecordError, match="a record's file is named by its id"):
        load(board)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"f_d_fp": 96.5}, "FP match 2.50 > 2"),  # and f_D 2.5 points below f_N
        ({"f_d_fp": 96.9}, "f_D FP 2.10 points below f_N"),
    ],
)
def test_validity_rules(change, reason):
    rec = record(**change)
    assert not rec.valid and any(reason in r for r in rec.invalid_reasons)
    low = changed(record(), f_N={"FP": 540}, f_R={"FP": 540}, f_D={"FP": 540})
    assert low.invalid_reasons == ["f_N 54.0% < 55.0% (chance 10.0%)"]  # halfway to 100%
    assert record(f_d_fp=98.1).valid  # within both bounds
    # exactly at a bound is valid (counts are exact: 20 of 1000 examples are 2.0 points)
    at_bound = changed(record(), f_D={"FP": 970})
    assert at_bound.fp_match == 2.0 and at_bound.invalid_reasons == []
    assert changed(record(), f_D={"FP": 969}).invalid_reasons  # one example more
