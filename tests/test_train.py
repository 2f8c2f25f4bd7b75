"""The three stages end to end on a tiny digits subset; resume; bad configs; checkpoints."""

import json
from dataclasses import replace

import pytest
import torch
from torch import nn

from dptq.data import AugmentConfig
from dptq.engine import (
    CheckpointError,
    ConfigError,
    Interrupted,
    RunOptions,
    cosine_lr,
    load_checkpoint,
)
from dptq.pair import PairConfig
from dptq.pipeline import PipelineConfig, run_pipeline
from dptq.train import StageConfig

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


def tiny_config(**pair) -> PipelineConfig:
    return PipelineConfig(
        dataset_options={"image_size": 12, "max_train": 96, "max_test": 40},
        teacher=NET,
        student=NET,
        teacher_stage=StageConfig(
            epochs=3, batch_size=32, optimizer="adamw", lr=1e-2, augment=None, mixup=False
        ),
        kd_stage=StageConfig(
            epochs=2, batch_size=32, lr=0.05, augment=AugmentConfig(hflip=False, randaugment_m=5)
        ),
        pair=PairConfig(epochs=2, batch_size=32, options=(3, 4, 5, 6, 8), **pair),
        policy_options={"width": 4, "depth": 2, "input_size": None},
    )


def quiet(**kw) -> RunOptions:
    return RunOptions(progress=False, **kw)


@pytest.mark.slow
def test_three_stages_end_to_end(tmp_path):
    res = run_pipeline(tiny_config(), tmp_path, quiet())
    L = res["num_layers"]
    assert L == 3
    for stage in ("teacher", "kd", "pair-robust", "pair-detrimental"):
        assert (tmp_path / f"{stage}.pt").exists()
    hist = load_checkpoint(tmp_path / "teacher.pt", "teacher")["history"]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]  # the teacher learns
    for mode in ("robust", "detrimental"):
        ev = res[mode]
        assert ev["budget"] == 4 * L  # avg 4 bits x L, held for every example (checked inside)
        assert len(ev["fp_correct"]) == len(ev["q_correct"]) == 40
        assert ev["drop"] == pytest.approx(ev["fp_acc"] - ev["q_acc"])
    assert set(res["cross_policy"]) == {"f_N", "f_R", "f_D"}
    assert set(res["cross_policy"]["f_D"]) == {"FP", "pi_R", "pi_D", "random"}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["gap"] == pytest.approx(res["summary"]["gap"])
    # a second call finds every stage complete and reproduces the results without training
    again = run_pipeline(tiny_config(), tmp_path, quiet())
    assert again["detrimental"]["q_correct"] == res["detrimental"]["q_correct"]


def _states(path, stage):
    return load_checkpoint(path, stage)["modules"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["kd", "pair-detrimental"])
def test_resume_reaches_the_same_weights(tmp_path, stage):
    cfg = tiny_config()
    run_pipeline(cfg, tmp_path / "straight", quiet())
    with pytest.raises(Interrupted):
        run_pipeline(cfg, tmp_path / "killed", quiet(stop_after=(stage, 1)))
    assert load_checkpoint(tmp_path / "killed" / f"{stage}.pt", stage)["epoch"] == 1
    run_pipeline(cfg, tmp_path / "killed", quiet())
    a, b = (
        _states(tmp_path / "straight" / f"{stage}.pt", stage),
        _states(tmp_path / "killed" / f"{stage}.pt", stage),
    )
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
    with pytest.raises(ValueError, match="unknown timm model 'resnet_typo'"):
        run_pipeline(replace(tiny_config(), student="resnet_typo"), tmp_path / "a", quiet())
    with pytest.raises(ConfigError, match="budget: budget 100 is outside"):
        run_pipeline(tiny_config(budget=100), tmp_path / "b", quiet())
    cfg = replace(
        tiny_config(), dataset="imagefolder", dataset_options={"root": str(tmp_path / "none")}
    )
    with pytest.raises(FileNotFoundError, match="none"):
        run_pipeline(cfg, tmp_path / "c", quiet())
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


def test_config_round_trips_through_results_json():
    from dataclasses import asdict

    from dptq.pipeline import _plain, config_from_dict

    cfg = tiny_config()
    assert config_from_dict(json.loads(json.dumps(_plain(asdict(cfg))))) == cfg
