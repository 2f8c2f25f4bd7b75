"""Re-evaluations (bench.records.reevaluations): the result of `bench verify --rerun` kept beside
the record; the board says which rows were re-evaluated and ranks them under --trusted when they
agree (identical with the record's arithmetic, within the tolerance with other arithmetic);
an entry that is not the record's own check is refused in one line."""

import json
import math

import pytest

from bench.board.leaderboard import load_boards, regenerate
from bench.records import reevaluations
from bench.records.record import DERIVED
from bench.records.store import RecordError
from bench.records.verify import make
from tests.support.records import board_with, record

NETWORKS = {n: f"{i:064x}" for i, n in enumerate(("f_N", "f_R", "pi_R", "f_D", "pi_D"))}
HERE = {"cores": 2, "machine_id": "ab" * 16, "cpu_model": "AMD EPYC"}


def networked(rec, **fields):
    """``rec`` as a record made since records name their networks' hashes (and ``fields``)."""
    data = {k: v for k, v in rec.to_json().items() if k not in DERIVED}
    return make({**data, "networks": NETWORKS, **fields})


def check(board, rec, differences=None, date="2026-12-07T20:00:00+00:00", hardware=HERE):
    result = {"identical": not differences, "differences": differences or {}, "seconds": 77.4}
    entry = reevaluations.make(rec, result, hardware, "1234abcd" * 5, date)
    return reevaluations.write(board, entry)


def test_an_identical_re_evaluation_is_a_check_and_a_differing_one_is_shown(tmp_path):
    same, moved, alone = (
        networked(record(a, 80, g))
        for a, g in (("resnet18", 50.0), ("vgg11", 40.0), ("regnet", 30.0))
    )
    board = board_with(tmp_path, [same, moved, alone])
    path = check(board, same)
    assert path.parent == board / "reevaluations" / same.id
    assert path.name == "abababababab-1234abcd-20261207T200000.json"
    beyond = reevaluations.tolerance(moved) + 1  # another machine (HERE), beyond tolerance
    check(board, moved, {"f_D.pi_R": (beyond, 249, 249 + beyond)})
    _, _, checks = load_boards([board])
    assert checks[same.id]["passed"] and checks[same.id]["reevaluated"] == 1
    assert not checks[moved.id]["passed"] and checks[moved.id]["reevaluated_images"] == beyond
    assert checks[alone.id]["reevaluated"] == 0 and not checks[alone.id]["passed"]
    regenerate(board)
    md = (board / "README.md").read_text()
    assert "re-evaluated 1/1 (identical)" in md
    assert (
        f"re-evaluated 1/1 (up to {beyond} examples differ with other arithmetic, beyond tolerance)"
        in md
    )
    assert "self-reported" in md
    regenerate(board, board / "trusted", trusted=True)
    trusted = (board / "trusted" / "README.md").read_text()
    assert "| resnet18 |" in trusted and "| vgg11 |" not in trusted and "| regnet |" not in trusted


def test_a_re_evaluation_that_is_not_the_records_own_check_is_refused_in_one_line(tmp_path):
    rec = networked(record("resnet18", 80, 50.0))
    old = record("vgg11", 80, 40.0)  # written before records named their networks
    board = board_with(tmp_path, [rec, old])
    path = check(board, rec)
    entry = json.loads(path.read_text())
    records = {rec.id: rec, old.id: old}

    def refused(data, match, where=path):
        where.write_text(json.dumps(data))
        with pytest.raises(RecordError, match=match) as e:
            reevaluations.read(board, records)
        assert str(e.value).startswith(str(where)) and "\n" not in str(e.value)
        where.unlink()

    refused({**entry, "networks": {**NETWORKS, "f_D": "f" * 64}}, "not the networks record")
    refused({**entry, "verdict": "trusted"}, "exactly the fields")
    refused({**entry, "differences": {"f_D.pi_D": [-1, 0, 0]}}, "field differences")
    refused({**entry, "differences": {"f_D.pi_D": [0, 5, 5]}}, "field differences")  # none differ
    refused({**entry, "differences": {"f_D.pi_D": [1, 5, 9]}}, "field differences")  # 4 apart
    refused({**entry, "git_commit": 1234}, "field git_commit")
    refused({**entry, "seconds": True}, "field seconds")
    other = board / "reevaluations" / old.id / path.name
    other.parent.mkdir(parents=True)
    refused({**entry, "id": old.id}, "not the networks record", other)
    refused(entry, "named by its machine, commit and date", path.with_name("mine.json"))
    path.write_text(json.dumps(entry))
    assert [e["seconds"] for e in reevaluations.read(board, records)[rec.id]] == [77.4]


def test_one_check_never_rescues_another(tmp_path):
    """A reproduction within tolerance and a re-evaluation beyond its own: not trusted; a
    re-evaluation on the machine that made the record says so on the board."""
    from tests.test_reproductions import _add, rerun

    rec = networked(record("resnet18", 80, 50.0))
    board = board_with(tmp_path, [rec])
    _add(board, tmp_path, rerun(rec, "cc" * 16, "2026-12-03T00:00:00+00:00"), "again")
    _, _, checks = load_boards([board])
    assert checks[rec.id]["passed"]  # reproduced within tolerance
    T = reevaluations.tolerance(rec)  # another machine, beyond its tolerance
    check(board, rec, {"f_D.pi_D": (T + 1, 50, 49 - T)})
    _, _, checks = load_boards([board])
    assert checks[rec.id]["level"] == "reproduced" and not checks[rec.id]["passed"]
    alone = networked(record("vgg11", 80, 40.0))
    other = board_with(tmp_path / "b", [alone])
    check(other, alone)  # HERE is not the machine the record names (it names none)
    _, _, checks = load_boards([other])
    assert checks[alone.id]["reevaluated_elsewhere"] == 1


def test_other_arithmetic_may_move_a_few_examples_the_records_own_none(tmp_path):
    """A re-evaluation on another machine (or with other vector kernels on the same one) agrees
    within the tolerance (TOLERANCE_SHARE of the test split) per allocation; on the record's
    machine with its own arithmetic, one example apart is a difference."""
    own = {**HERE, "capability": "AVX512", "torch": "2.14.1", "blas": "mkl"}
    elsewhere, kernels, mine = (
        networked(record(a, 80, g), hardware=own)
        for a, g in (("resnet18", 50.0), ("vgg11", 40.0), ("regnet", 30.0))
    )
    board = board_with(tmp_path, [elsewhere, kernels, mine])
    T = reevaluations.tolerance(elsewhere)
    assert T == math.ceil(reevaluations.TOLERANCE_SHARE * elsewhere.evaluation.total) >= 1
    check(board, elsewhere, {"f_D.pi_R": (T, 249, 249 - T)}, hardware={"machine_id": "cd" * 16})
    check(board, kernels, {"f_D.heldout[2]": (1, 395, 394)}, hardware={**own, "capability": "AVX2"})
    check(board, mine, {"f_D.heldout[2]": (1, 395, 394)}, hardware=own)
    _, _, checks = load_boards([board])
    assert checks[elsewhere.id]["passed"] and checks[elsewhere.id]["reevaluated_elsewhere"] == 1
    assert checks[kernels.id]["passed"] and not checks[kernels.id]["reevaluated_elsewhere"]
    assert not checks[mine.id]["passed"] and checks[mine.id]["agrees"] is False
    regenerate(board)
    md = (board / "README.md").read_text()
    assert (
        f"re-evaluated 1/1 (up to {T} examples differ with other arithmetic, within tolerance)"
        in md
    )
    other = "up to 1 example differs with other arithmetic, within tolerance"
    assert f"({other}, on the machine that made it)" in md
    assert "(up to 1 example differs with its own arithmetic, on the machine that made it)" in md
    check(board, kernels, date="2026-12-08T00:00:00+00:00", hardware=own)  # identical at home
    regenerate(board)
    md = (board / "README.md").read_text()
    assert f"(identical with its own arithmetic; {other}, on the machine that made it)" in md
    avx2 = {**own, "capability": "AVX2"}  # one seed failing at home, agreeing elsewhere
    check(board, mine, {"f_D.uniform": (1, 7, 8)}, "2026-12-08T00:00:00+00:00", hardware=avx2)
    regenerate(board)
    md = (board / "README.md").read_text()
    home = "up to 1 example differs with its own arithmetic"
    assert f"({home}; {other}, on the machine that made it)" in md
    _, _, checks = load_boards([board])
    assert not checks[mine.id]["passed"] and checks[mine.id]["other_agrees"]
    check(
        board,
        elsewhere,
        {"f_D.pi_R": (T + 1, 249, 249 - T - 1)},
        "2026-12-08T00:00:00+00:00",
        hardware={"machine_id": "cd" * 16},
    )
    _, _, checks = load_boards([board])
    assert not checks[elsewhere.id]["passed"]  # one entry beyond tolerance: not agreeing
