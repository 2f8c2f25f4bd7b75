"""Reproductions (bench.records.reproductions): a run of a cell the board holds already is kept
beside the record as a reproduction, never dropped in silence nor written over; the board says
how far each row was checked."""

import json

import pytest

from bench.board.leaderboard import regenerate
from bench.board.views import frame, groups
from bench.records import reproductions
from bench.records.record import DERIVED, record_rel
from bench.records.store import RecordError, add, load
from bench.records.verify import make
from tests.support.records import board_with, per_example_of, record, source


def rerun(rec, machine_id: str, date: str, **nets):
    """``rec``'s cell run again on another machine (``machine_id``) at ``date``, its counts
    changed by ``nets`` (``f_D={"pi_D": 300}``), re-proved."""
    import hashlib

    from bench.records.record import per_example_bytes

    data = {k: v for k, v in rec.to_json().items() if k not in DERIVED}
    data["hardware"] = {**data["hardware"], "machine_id": machine_id}
    data["date"] = date
    for net, by in nets.items():
        data["evaluation"][net] = {**data["evaluation"][net], **by}
    ev = {n: data["evaluation"][n] for n in ("f_N", "f_R", "f_D")}
    data["per_example_sha256"] = hashlib.sha256(per_example_bytes(per_example_of(ev))).hexdigest()
    return make(data)


def _add(board, tmp_path, rec, name):
    notes: list[str] = []
    added = add([rec], board, source=source(tmp_path / name, [rec]), notes=notes)
    return added, notes


def test_a_run_of_a_cell_the_board_holds_is_kept_as_a_reproduction(tmp_path):
    """Adding a record whose id is on the board: the original is untouched; a run from another
    machine becomes an entry, within tolerance or beyond it, each with a line saying which; the
    same run added twice adds nothing and says so."""
    rec = record("resnet18", 80, 50.0)
    board = board_with(tmp_path, [rec])
    original = (board / record_rel(rec.id)).read_bytes()
    close = rerun(
        rec, "aa" * 16, "2026-12-01T00:00:00+00:00", f_D={"pi_D": rec.evaluation.f_D.pi_D - 9}
    )
    assert _add(board, tmp_path, close, "close") == (
        0,
        [
            f"record {rec.id}: already on the board; kept as a reproduction: within tolerance: "
            "gap +0.90, hidden_gap +0.90, f_d_fp_acc +0.00, fp_match +0.00 points; counts "
            "differ by up to 9 images"
        ],
    )
    far = rerun(
        rec, "bb" * 16, "2026-12-02T00:00:00+00:00", f_D={"pi_D": rec.evaluation.f_D.pi_D + 200}
    )
    _, [line] = _add(board, tmp_path, far, "far")
    assert "differs beyond tolerance: gap -20.00" in line and "200 images" in line
    assert _add(board, tmp_path, far, "far-again") == (
        0,
        [f"record {rec.id}: already on the board, the same run; nothing added"],
    )
    assert (board / record_rel(rec.id)).read_bytes() == original  # never written over
    [back] = load(board)
    entries = reproductions.read(board, {back.id: back})[back.id]
    assert sorted(e.record.hardware["machine_id"] for e in entries) == ["aa" * 16, "bb" * 16]
    check = reproductions.trust(back, entries)
    assert check["level"] == "reproduced" and check["machines"] == 2
    assert (
        check["within"] is False and check["gap"] == pytest.approx(20.0) and check["images"] == 200
    )


def test_the_board_says_how_far_each_row_was_checked_and_trusted_keeps_checked_rows(tmp_path):
    checked = record("resnet18", 80, 50.0)
    alone = record("vgg11", 80, 40.0)
    board = board_with(tmp_path, [checked, alone])
    again = rerun(checked, "cc" * 16, "2026-12-03T00:00:00+00:00")  # identical numbers
    _add(board, tmp_path, again, "again")
    regenerate(board)
    md = (board / "README.md").read_text()
    assert "reproduced 1/1 (gap within 0.0 points, 0 images)" in md and "self-reported" in md
    regenerate(board, board / "trusted", trusted=True)
    trusted = (board / "trusted" / "README.md").read_text()
    assert "| resnet18 |" in trusted and "| vgg11 |" not in trusted
    g = groups(frame([checked, alone])).set_index("architecture")
    assert set(g.trust) == {"self-reported"}  # without the board's entries: nothing checked


def test_a_tampered_reproduction_entry_is_refused_in_one_line(tmp_path):
    rec = record("resnet18", 80, 50.0)
    board = board_with(tmp_path, [rec])
    again = rerun(rec, "dd" * 16, "2026-12-04T00:00:00+00:00", f_D={"pi_D": 400})
    _add(board, tmp_path, again, "again")
    [path] = (board / "reproductions").rglob("*.json")
    entry = json.loads(path.read_text())
    entry["record"]["evaluation"]["f_D"]["pi_D"] = 399  # its per-example file says 400
    entry["record"]["gap"] = entry["record"]["gap"]  # derived fields: recomputed anyway
    path.write_text(json.dumps(entry))
    with pytest.raises(RecordError) as e:
        reproductions.read(board, {rec.id: rec})
    assert str(e.value).startswith(str(path)) and "\n" not in str(e.value)
    entry["record"]["evaluation"]["f_D"]["pi_D"] = 400
    path.rename(path.with_name("someone-else.json"))
    path.with_name("someone-else.json").write_text(json.dumps(entry))
    with pytest.raises(RecordError, match="named by its machine, commit and date"):
        reproductions.read(board, {rec.id: rec})


@pytest.mark.slow
def test_bench_reproduce_reruns_a_records_cell_and_keeps_it_beside_the_record(
    tmp_path, monkeypatch
):
    """``bench reproduce RECORD``: the tiny suite's record, made on one machine, rerun on
    another (another machine id; the same CPU, so the same numbers): an entry that says
    identical, the record untouched, the row reproduced."""
    from bench.pipeline.reproduce import reproduce
    from bench.pipeline.run import run
    from tests.support.helpers import tiny_suite

    monkeypatch.setenv("DPTQ_MACHINE_ID", "a1" * 16)
    suite = tiny_suite(analyses=["pair_scores"])
    board = tmp_path / "board"
    [rec] = run(suite, tmp_path / "first", local=True, leaderboard=board, submit=True).records
    before = (board / record_rel(rec.id)).read_bytes()
    monkeypatch.setenv("DPTQ_MACHINE_ID", "b2" * 16)
    res, notes = reproduce(rec.id, board, tmp_path / "again")
    assert notes == [
        f"record {rec.id}: already on the board; kept as a reproduction: identical (the same "
        "per-example results)"
    ]
    assert (board / record_rel(rec.id)).read_bytes() == before
    [back] = load(board)
    [entry] = reproductions.read(board, {back.id: back})[back.id]
    assert entry.record.hardware["machine_id"] == "b2" * 16
    assert reproductions.trust(back, [entry])["within"] is True


def test_a_runs_board_beside_a_leaderboard_that_reproduced_the_same_record(tmp_path):
    """A run's board shows its rows beside the leaderboard's (`bench run`'s board view): where
    the leaderboard holds the run's record id with a reproduction entry, the run's copy is shown
    and the leaderboard's entry is still read and verified (it reproduces one of its records)."""
    rec = record("resnet18", 80, 50.0)
    leaderboard = board_with(tmp_path, [rec], name="leaderboard")
    again = rerun(rec, "ee" * 16, "2026-12-05T00:00:00+00:00")
    _add(leaderboard, tmp_path, again, "again")
    run_board = board_with(tmp_path, [rec], name="run")
    regenerate(run_board, run_board / "board", extra=[leaderboard])
    md = (run_board / "board" / "README.md").read_text()
    assert md.count("| resnet18 |") >= 1 and "self-reported" in md  # the run's own copy
