"""The training engine (dptq.engine): schedules, checkpoints, and a stage killed mid-way that
resumes to the same weights."""

import pytest
import torch

from bench import plan, search
from bench.names import Layout, kd_name
from bench.runner import run_suite
from dptq.engine import CheckpointError, checkpoint_epoch, cosine_lr, load_checkpoint
from dptq.faults import FailpointHit
from tests.helpers import tiny_suite


def _states(path, stage):
    return load_checkpoint(path, stage)["modules"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["kd", "pair-detrimental"])
def test_resume_reaches_the_same_weights(tmp_path, monkeypatch, stage):
    """Stopped (as if killed) after epoch 1 of a stage, then run again: the same weights."""
    suite = tiny_suite()
    run_suite(suite, tmp_path / "straight", local=True)
    monkeypatch.setenv("DPTQ_FAILPOINT", f"epoch:{stage}:1")
    monkeypatch.setenv("DPTQ_FAILPOINT_ACTION", "raise")
    with pytest.raises(FailpointHit):
        run_suite(suite, tmp_path / "killed", local=True)
    monkeypatch.delenv("DPTQ_FAILPOINT")
    [cell] = plan.cells(suite, 10)
    name = kd_name(suite.students[0].name, 0) if stage == "kd" else cell.search("detrimental")
    params = {} if stage == "kd" else search.space(suite)[1]
    killed = Layout((tmp_path / "killed").resolve())
    trial = killed.trial(name, params)
    assert checkpoint_epoch(trial) == 1 and killed.artifact(name) is None
    run_suite(suite, tmp_path / "killed", local=True)
    assert killed.artifact(name) == trial  # the one checkpoint: the trial's file
    assert load_checkpoint(trial, stage)["resumed_from"] == [1]
    straight = Layout((tmp_path / "straight").resolve()).artifact(name)
    a, b = _states(straight, stage), _states(trial, stage)
    for net in a:
        for k in a[net]:
            torch.testing.assert_close(a[net][k], b[net][k], rtol=0, atol=0, msg=f"{net}.{k}")


def test_bad_checkpoints_give_one_line(tmp_path):
    trunc = tmp_path / "kd.pt"
    torch.save({"stage": "kd", "modules": {}, "w": torch.zeros(1000)}, trunc)
    trunc.write_bytes(trunc.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="not a readable checkpoint.*delete it"):
        load_checkpoint(trunc, "kd")
    assert checkpoint_epoch(trunc) == -1 and checkpoint_epoch(tmp_path / "none.pt") == -1
    other = tmp_path / "teacher.pt"
    torch.save({"stage": "teacher", "epoch": 3}, other)
    with pytest.raises(CheckpointError, match="stage 'teacher', expected 'kd'"):
        load_checkpoint(other, "kd")
    assert checkpoint_epoch(other) == 3


def test_cosine_lr():
    assert cosine_lr(0, 100, 1.0, 0.1) == pytest.approx(1.0)
    assert cosine_lr(50, 100, 1.0, 0.1) == pytest.approx(0.55)
    assert cosine_lr(100, 100, 1.0, 0.1) == pytest.approx(0.1)
