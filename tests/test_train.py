"""The stages end to end on a tiny digits subset (in this process); resume; bad configs; checkpoints."""

import json

import pytest
import torch
from torch import nn

from bench import plan, search
from bench.runner import run_suite
from bench.suite import SuiteError
from dptq.engine import CheckpointError, ConfigError, cosine_lr, load_checkpoint
from dptq.faults import FailpointHit
from dptq.pair import PairConfig
from dptq.train import StageConfig
from tests.helpers import make_suite

NET = "tests.test_train:small_net"


def small_net(num_classes: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, num_classes),
    )


def tiny_suite(**changes):
    """tests/suites/tiny.yaml, smaller, no search: one trial per mode."""
    base = {
        "dataset.options": {"image_size": 12, "max_train": 96, "max_test": 40},
        "teacher_stage.epochs": 3,
        "kd_stage.epochs": 2,
        "search": {"num_samples": 1},
        "analyses": ["pair_scores", "transitory", "cross_policy"],
    }
    return make_suite("tiny", **{**base, **changes})


def quiet(*_):
    pass


@pytest.mark.slow
def test_three_stages_end_to_end(tmp_path):
    suite = tiny_suite()
    res = run_suite(suite, tmp_path, local=True, out=quiet)
    layout = plan.Layout(tmp_path.resolve())
    [cell] = plan.cells(suite, 10)
    assert plan.count_layers(NET, 10) == 3 and cell.budget == 4 * 3  # avg 4 bits x L
    files = [
        layout.teacher(0),
        layout.kd(NET, 0),
        *(layout.pair(cell.search(m)) for m in suite.modes),
    ]
    for f in files:
        assert f.exists(), f
    hist = load_checkpoint(layout.teacher(0), "teacher")["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]  # the teacher learns
    [rec] = res["records"]
    assert rec["error"] is None and rec["budget"] == 12 and rec["num_layers"] == 3
    pe = json.loads((tmp_path / rec["per_example"]).read_text())
    for mode in ("robust", "detrimental"):  # every test example, FP and quantized
        assert len(pe[mode]["fp_correct"]) == len(pe[mode]["q_correct"]) == 40
    assert rec["f_d_drop"] == pytest.approx(rec["f_d_fp_acc"] - rec["f_d_q_acc"])
    assert set(rec["cross_policy"]) == {"f_N", "f_R", "f_D"}
    assert set(rec["cross_policy"]["f_D"]) == {"FP", "pi_R", "pi_D", "uniform", "random", "heldout"}
    assert rec["selected_on"] == "val" and len(rec["stealth"]["f_D"]["random"]) == 8
    # a second call finds every stage complete and gives the same record without training
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "artifacts").rglob("*.pt")}
    again = run_suite(suite, tmp_path, local=True, out=quiet)
    assert again["records"][0]["gap"] == rec["gap"]
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def _states(path, stage):
    return load_checkpoint(path, stage)["modules"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["kd", "pair-detrimental"])
def test_resume_reaches_the_same_weights(tmp_path, monkeypatch, stage):
    """Stopped (as if killed) after epoch 1 of a stage, then run again: the same weights."""
    suite = tiny_suite()
    run_suite(suite, tmp_path / "straight", local=True, out=quiet)
    monkeypatch.setenv("DPTQ_FAILPOINT", f"epoch:{stage}:1")
    monkeypatch.setenv("DPTQ_FAILPOINT_ACTION", "raise")
    with pytest.raises(FailpointHit):
        run_suite(suite, tmp_path / "killed", local=True, out=quiet)
    monkeypatch.delenv("DPTQ_FAILPOINT")
    [cell] = plan.cells(suite, 10)
    paths = {}
    for run in ("straight", "killed"):
        layout = plan.Layout((tmp_path / run).resolve())
        paths[run] = layout.kd(NET, 0) if stage == "kd" else layout.pair(cell.search("detrimental"))
    killed = plan.Layout((tmp_path / "killed").resolve())
    trial = (
        killed.stage_trial(plan.kd_name(NET, 0))
        if stage == "kd"
        else killed.trial(cell.search("detrimental"), search.space(suite)[1])
    )
    assert load_checkpoint(trial, stage)["epoch"] == 1 and not paths["killed"].exists()
    run_suite(suite, tmp_path / "killed", local=True, out=quiet)
    assert load_checkpoint(paths["killed"], stage)["resumed_from"] == [1]
    a, b = _states(paths["straight"], stage), _states(paths["killed"], stage)
    for name in a:
        for k in a[name]:
            torch.testing.assert_close(a[name][k], b[name][k], rtol=0, atol=0, msg=f"{name}.{k}")


@pytest.mark.parametrize(
    "make,field",
    [
        (lambda: StageConfig(epochs=-1), "epochs"),
        (lambda: StageConfig(lr=0), "lr"),
        (lambda: StageConfig(optimizer="adamax"), "optimizer"),
        (lambda: PairConfig(epochs=0), "epochs"),
        (lambda: PairConfig(mode="evil"), "mode"),
        (lambda: PairConfig(options=(1, 4)), "options"),
        (lambda: PairConfig(batch_size=-8), "batch_size"),
    ],
)
def test_bad_values_name_the_field(make, field):
    with pytest.raises(ConfigError) as e:
        make()
    assert str(e.value).startswith(field) and "\n" not in str(e.value)


def test_bad_model_budget_and_dataset_fail_before_training(tmp_path):
    with pytest.raises(SuiteError, match="unknown timm model 'resnet_typo'"):
        run_suite(tiny_suite(students=["resnet_typo"]), tmp_path / "a", local=True, out=quiet)
    with pytest.raises(SuiteError, match="budget 100 is outside"):
        suite = tiny_suite(students=[{"name": NET, "budgets": [100]}])
        run_suite(suite, tmp_path / "b", local=True, out=quiet)
    missing = {"name": "imagefolder", "options": {"root": str(tmp_path / "none")}}
    with pytest.raises(FileNotFoundError, match="none"):
        run_suite(tiny_suite(dataset=missing), tmp_path / "c", local=True, out=quiet)
    assert not any((tmp_path / d).exists() for d in "abc")  # nothing written


def test_bad_checkpoints_give_one_line(tmp_path):
    trunc = tmp_path / "kd.pt"
    torch.save({"stage": "kd", "modules": {}, "w": torch.zeros(1000)}, trunc)
    trunc.write_bytes(trunc.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable checkpoint.*delete it"):
        load_checkpoint(trunc, "kd")
    other = tmp_path / "teacher.pt"
    torch.save({"stage": "teacher"}, other)
    with pytest.raises(CheckpointError, match="stage 'teacher', expected 'kd'"):
        load_checkpoint(other, "kd")


def test_cosine_lr():
    assert cosine_lr(0, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert cosine_lr(50, 100, 1.0, 0.1) == pytest.approx(0.55)
    assert cosine_lr(100, 100, 1.0, 0.1) == pytest.approx(0.1)
