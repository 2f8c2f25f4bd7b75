"""Records as one file each (bench.records.store): round trip, one file per row, two writers, old files
read, the committed records proved by their per-example files and their schema."""

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from bench.records.store import add, load, verify_per_example
from tests.support.records import board_with, per_example, record, sample_records, source

ROOT = Path(__file__).resolve().parent.parent


def test_round_trip(tmp_path):
    board = board_with(tmp_path, sample_records())
    assert load(board) == sorted(sample_records(), key=lambda r: r.id)
    assert add(sample_records(), board, source=tmp_path / "board-src") == 0  # never twice
    files = sorted(str(p.relative_to(board)) for p in (board / "records").rglob("*.json"))
    assert files == sorted(f"records/{r.id}.json" for r in sample_records())
    for r in sample_records():  # per-example results and the report came along
        if r.error is None:
            assert json.loads((board / r.per_example).read_text()) == per_example(r)
            assert (board / r.report).is_file()


def test_adding_a_row_touches_no_other_file(tmp_path):
    board = board_with(tmp_path, sample_records()[:2])
    before = {p: p.stat().st_mtime_ns for p in board.rglob("*") if p.is_file()}
    new = record("vgg11", 80, 5.0)
    add([new], board, source=source(tmp_path / "more", [new]))
    after = {p: p.stat().st_mtime_ns for p in board.rglob("*") if p.is_file()}
    assert {p: after[p] for p in before} == before and len(after) == len(before) + 4


def _writer(path, start):
    for i in range(start, start + 40):
        rec = record("net", 80 + i, 1.0)
        add([rec], Path(path), per_example={rec.id: per_example(rec)})


def test_two_writers_keep_every_record(tmp_path):
    procs = [
        mp.get_context("spawn").Process(target=_writer, args=(str(tmp_path), s)) for s in (0, 1000)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    recs = load(tmp_path)
    assert len(recs) == 80 and len({r.id for r in recs}) == 80


def test_committed_records_are_valid_and_recomputable():
    """Every committed record loads (each derived field recomputed from its counts), and its
    per-example file proves the counts; every number a view shows is recomputed here from the
    per-example vectors where the record holds them (schema 3: every allocation; migrated from
    schema 2: full precision and the own policies)."""
    from dptq.scores import CellCounts, NetCounts

    board = ROOT / "leaderboard"
    recs = load(board, deep=True)  # raises on a malformed committed record, its suite built
    assert recs and not (board / "records.jsonl").exists()
    native = 0
    for r in recs:
        if r.error is not None:
            continue
        pe = json.loads((board / r.per_example).read_text())
        verify_per_example(r, pe, r.id)
        vec = pe["evaluation"]
        ones = lambda v: [v.count("1") for v in v] if isinstance(v, list) else v.count("1")  # noqa: E731
        n = pe["total"]
        if r.migrated_from is None:
            native += 1
            c = CellCounts(
                n,
                *(
                    NetCounts(**{a: ones(v) for a, v in vec[k].items()})
                    for k in ("f_N", "f_R", "f_D")
                ),
            )
            assert c == r.counts()
            assert float(c.hidden_gap()) == r.hidden_gap and float(c.gap()) == r.gap
        d_drop = 100 * (vec["f_D"]["FP"].count("1") - vec["f_D"]["pi_D"].count("1")) / n
        r_drop = 100 * (vec["f_R"]["FP"].count("1") - vec["f_R"]["pi_R"].count("1")) / n
        assert d_drop - r_drop == pytest.approx(r.gap, abs=1e-9)
        assert 100 * vec["f_R"]["FP"].count("1") / n == pytest.approx(r.f_r_fp_acc, abs=1e-9)
        t = r.analysis("transitory")
        if t is not None:  # Table 2 from the vectors
            both = [a == b == "1" for a, b in zip(vec["f_R"]["FP"], vec["f_D"]["FP"])]
            trans = sum(b and q == "0" for b, q in zip(both, vec["f_D"]["pi_D"]))
            assert (t.count, t.both_correct, t.total) == (trans, sum(both), n)
        assert (board / r.report).is_file()
    assert native >= 1  # the default record is a schema-3 run's


def test_schema_json_is_current_and_every_committed_record_follows_it():
    """leaderboard/schema.json is what the record type generates (``python -m bench leaderboard``
    writes it), and every committed schema-3 file validates against it with jsonschema."""
    import jsonschema

    from bench.board.leaderboard import schema_text

    committed = (ROOT / "leaderboard" / "schema.json").read_text()
    assert committed == schema_text(), "stale: python -m bench leaderboard"
    schema = json.loads(committed)
    files = sorted((ROOT / "leaderboard" / "records").rglob("*.json"))
    v3 = [json.loads(p.read_text()) for p in files]
    v3 = [d for d in v3 if d["schema_version"] == 3]
    assert v3
    for data in v3:
        jsonschema.validate(data, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**v3[0], "budget": "eighty"}, schema)
