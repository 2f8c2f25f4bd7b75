"""The protocol, each rule with a test that fails when it is broken (README "The protocol")."""

from pathlib import Path

import pytest
import torch

from bench.board.leaderboard import results_section
from bench.config.suite import SuiteError
from bench.pipeline import plan, stages
from bench.pipeline.run import run_suite
from dptq import knapsack
from dptq.data import DATASETS, DigitsOptions, register_dataset
from dptq.recipes import RECIPES, deviations
from tests.support.helpers import make_suite
from tests.support.records import record

ROOT = Path(__file__).resolve().parent.parent
NET = "tests.support.nets:small_net"


class Counting(torch.utils.data.Dataset):
    """A split that counts how often it is read."""

    reads = 0

    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        Counting.reads += 1
        return self.ds[i]


@pytest.fixture
def counting_digits():
    from dataclasses import replace

    def load(opts, bad_images="stop"):
        pair = DATASETS["digits"].load(opts, bad_images)
        return replace(pair, test=Counting(pair.test))

    register_dataset("counting_digits", DigitsOptions)(load)
    Counting.reads = 0
    yield
    del DATASETS["counting_digits"]


@pytest.mark.slow
def test_search_never_reads_the_test_split(tmp_path, counting_digits, monkeypatch):
    """Teacher, KD and a two-trial search per mode run with no read of the test split; the
    analysis then reads it (for the record), once per chosen pair's evaluation."""
    reads_at_analysis = []
    real = stages.analyse

    def analyse(*args, **kw):
        reads_at_analysis.append(Counting.reads)
        return real(*args, **kw)

    monkeypatch.setattr(stages, "analyse", analyse)
    suite = make_suite(
        "tiny",
        **{
            "dataset.name": "counting_digits",
            "dataset.options": {"image_size": 12, "max_train": 160},
        },
        **{"teacher_stage.epochs": 2, "kd_stage.epochs": 2, "pair.epochs": 2},
    )
    [rec] = run_suite(suite, tmp_path, local=True).records
    assert reads_at_analysis == [0]  # every stage and both searches: not one test image
    assert Counting.reads > 0 and rec.selected_on == "val"


def test_f_n_reference_accuracy_is_the_validation_one():
    assert stages.f_n_accuracy({"metrics": {"val_acc": 91.0, "epoch": 1}, "split": "val"}) == 91.0
    with pytest.raises(KeyError):  # a KD run without a validation split is not a reference
        stages.f_n_accuracy({"metrics": {"test_acc": 91.0, "epoch": 1}, "split": "test"})


def test_a_one_allocation_cell_is_refused_unless_allowed():
    one = {"students": [{"name": NET, "budgets": [15]}], "bit_options": {"III": [5, 6, 7]}}
    assert knapsack.count_allocations((5, 6, 7), 15, 3) == 1
    with pytest.raises(SuiteError, match="admits exactly one allocation"):
        plan.cells(make_suite("tiny", **one), 10)
    [cell] = plan.cells(make_suite("tiny", **one, **{"protocol.allow_degenerate": True}), 10)
    assert cell.allocations == 1
    [cell] = plan.cells(
        make_suite("tiny", **{**one, "students": [{"name": NET, "budgets": [16]}]}), 10
    )
    assert cell.allocations == 3  # one layer at 6 bits: a choice


def test_seeds_make_a_cell_each_and_share_stages_when_asked():
    cells = plan.cells(make_suite("tiny", seeds=[0, 1, 2]), 10)
    assert [(c.seed, c.stage_seed) for c in cells] == [(0, 0), (1, 1), (2, 2)]
    assert len({c.key for c in cells}) == 3
    shared = plan.cells(make_suite("tiny", seeds=[3, 4], share_stages=True), 10)
    assert [(c.seed, c.stage_seed) for c in shared] == [(3, 3), (4, 3)]
    with pytest.raises(SuiteError, match="seeds: a list of distinct seeds"):
        make_suite("tiny", seeds=[1, 1])


def test_recipes_and_their_deviations():
    paper = make_suite("tiny", recipe="paper")
    assert paper.pair.hinge_space == "prob" and paper.pair.delta == 0.01
    assert not paper.pair.tau_squared and not paper.kd_stage.tau_squared  # Eq. 3 as printed
    # the tiny suite trains in batches of 16; epochs are a suite's own, not a recipe setting
    assert deviations("paper", paper.pair, paper.kd_stage.tau_squared) == {"pair.batch_size": 16}
    changes = {"pair.optimizer": "adam", "kd_stage.tau_squared": True}
    mine = make_suite("tiny", recipe="paper", **changes)
    assert deviations("paper", mine.pair, mine.kd_stage.tau_squared) == {
        "pair.batch_size": 16,
        "pair.optimizer": "adam",
        "kd_stage.tau_squared": True,
    }
    default = make_suite("tiny")
    assert default.recipe == "dptq-v1" and default.kd_stage.tau_squared
    assert deviations("dptq-v1", default.pair, True) == {"pair.batch_size": 16}
    assert RECIPES["dptq-v1"].pair.hinge_space == "logit"


def test_stealthy_needs_a_failure_under_pi_d_and_none_elsewhere():
    def rec(own, worst):  # f_D's drop under pi_D and its worst other (uniform, samplers: 1.0)
        return record(gap=own - 0.5, hidden=own - worst)

    assert rec(own=24.4, worst=5.0).stealthy  # the paper's f_D, at the 5-point threshold
    assert not rec(own=24.4, worst=5.6).stealthy  # fails under a random allocation too
    assert not rec(own=0.2, worst=0.4).stealthy  # no attack: harmless, not stealthy
    assert not rec(own=5.0, worst=0.0).stealthy  # a drop within the threshold is no failure
    assert rec(own=24.4, worst=5.0).worst_non_own_drop == 5.0


def test_readme_results_are_the_committed_records():
    text = (ROOT / "README.md").read_text()
    generated = results_section(ROOT / "leaderboard")
    assert generated in text, (
        "README's results section is stale: python -m bench leaderboard --readme README.md"
    )
    from bench.records.store import load

    closed = {r.architecture for r in load(ROOT / "leaderboard") if r.division == "closed"}
    for arch in closed:  # every architecture of the closed division, and only those
        assert f"| {arch} |" in generated, arch
    assert bool(closed) != ("No closed-division records yet" in generated)
