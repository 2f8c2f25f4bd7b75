"""Records of earlier schemas (bench.records.legacy): schema 2 migrated exactly, schema 1 read as history."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.board.leaderboard import migrate
from bench.records import store
from bench.records.legacy import SCHEME_ORDER, migrate_v2
from bench.records.record import Record, RecordError

V2 = Path(__file__).parent / "data" / "schema2"  # the default suite's record as schema 2 wrote it
RID = "default/b0107eab9688/resnet18-I-80-s0"


def _v2():
    rec = json.loads((V2 / "records" / f"{RID}.json").read_text())
    pe = json.loads((V2 / "per_example" / f"{RID}.json").read_text())
    return rec, pe


def test_schema_2_becomes_exact_counts_with_the_same_numbers():
    old, pe = _v2()
    new, new_pe = migrate_v2(old, pe, "v2")
    assert isinstance(new, Record) and new.migrated_from == 2 and new.evaluation.total == 450
    # every score within float32 noise of the stored mean, and now exact: 432 of 450 examples
    for k in ("f_n_acc", "gap", "f_d_drop", "fp_match", "hidden_gap", "worst_non_own_drop"):
        assert getattr(new, k) == pytest.approx(old[k], abs=1e-4), k
    assert new.f_n_acc == 100 * 432 / 450 and new.evaluation.f_N.FP == 432
    for k in ("valid", "stealthy", "invalid_reasons"):
        assert getattr(new, k) == old[k], k
    assert new.analysis("audit", "policy_only_drop") == pytest.approx(
        old["policy_only_drop"], abs=1e-4
    )
    assert new.analysis("defenses", "best") == old["best_defense"]
    transfer = new.analysis("quantizer_transfer")
    assert transfer.gap_max_scheme == old["transfer_gap_max_scheme"]  # a tie: the first measured
    assert [r.scheme for r in transfer.schemes] == list(SCHEME_ORDER)
    assert new.analysis("transitory", "rate_of_test") == pytest.approx(old["transitory_rate_test"])
    mine = new.analysis("corruptions").mean_acc
    assert mine == pytest.approx(old["corruption_mean_acc"], abs=1e-9)
    # kept as they were: what schema 2 held only as a mean
    assert new.legacy["f_N_random_acc"] == old["cross_policy"]["f_N"]["random"]
    # the per-example file in the new layout: the vectors schema 2 kept
    assert new_pe["evaluation"]["f_D"]["pi_D"].count("1") == new.evaluation.f_D.pi_D
    store.verify_per_example(new, new_pe, "v2")


def test_a_number_that_is_not_a_count_is_refused():
    old, pe = _v2()
    bad = {
        **old,
        "cross_policy": {
            **old["cross_policy"],
            "f_N": {**old["cross_policy"]["f_N"], "pi_R": 95.1},
        },
    }
    with pytest.raises(
        RecordError, match="field cross_policy.f_N.pi_R: 95.1 is not a count of 450"
    ):
        migrate_v2(bad, pe, "v2")
    forged = {**old, "gap": old["gap"] + 1}
    with pytest.raises(RecordError, match="field gap: .* is not what its counts give"):
        migrate_v2(forged, pe, "v2")


def test_a_board_is_migrated_in_place_and_reads_the_same(tmp_path):
    board = tmp_path / "board"
    shutil.copytree(V2, board)
    before = store.load(board)  # read (migrated in memory) ...
    assert migrate(board) == 1  # ... then rewritten as schema 3
    after = store.load(board)
    assert after == before and after[0].schema_version == 3
    data = json.loads((board / "records" / f"{RID}.json").read_text())
    assert data["schema_version"] == 3 and data["gap"] == after[0].gap
    pe = json.loads((board / "per_example" / f"{RID}.json").read_text())
    store.verify_per_example(after[0], pe, "migrated")
    assert migrate(board) == 0  # nothing left to migrate


def test_scheme_order_is_the_transfer_matrix_order():
    from dptq.transfer import SCHEMES

    assert SCHEME_ORDER == tuple(SCHEMES)
