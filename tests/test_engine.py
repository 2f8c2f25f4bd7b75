"""The training engine (dptq.engine): schedules, checkpoints, and a stage killed mid-way that
resumes to the same weights."""

import pytest
import torch

from bench.names import Layout, kd_name
from bench.pipeline import plan, search
from bench.pipeline.run import run_suite
from dptq.engine import CheckpointError, checkpoint_epoch, cosine_lr, load_checkpoint
from dptq.faults import FailpointHit
from tests.support.helpers import tiny_suite


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


def _selecting_loop(seed=0):
    """A linear model trained 4 epochs whose evaluation snapshots its weights; the scores of
    epochs 1..4 are 1, 3, 3, 0: epoch 2 is selected (the earliest of the tie)."""
    from torch.utils.data import TensorDataset

    from dptq.engine import Loop

    torch.manual_seed(seed)
    net = torch.nn.Linear(3, 2)
    data = TensorDataset(torch.randn(32, 3), torch.randint(0, 2, (32,)))
    snaps = []

    def evaluate():
        snaps.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        return {"w": float(net.weight.sum())}

    def step(batch, mods):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(mods["net"](x), y)
        return loss, {"loss": loss.detach()}

    loop = Loop(
        name="toy",
        modules={"net": net},
        optimizer=torch.optim.SGD(net.parameters(), lr=0.5),
        epochs=4,
        dataset=data,
        batch_size=8,
        step=step,
        evaluate=evaluate,
        train_mode=net.train,
        select=lambda r: {1: 1.0, 2: 3.0, 3: 3.0, 4: 0.0}[r["epoch"]],
    )
    return loop, net, snaps


def test_fit_with_select_ends_on_the_best_epoch_and_resumes_to_it(tmp_path, monkeypatch):
    from dptq.engine import RunOptions, fit, make_accelerator

    opts = RunOptions(cpu=True, progress=False)
    loop, net, snaps = _selecting_loop()
    reports = []
    opts.callback = lambda stage, epoch, result: reports.append(result)
    result = fit(loop, tmp_path / "straight.pt", opts, make_accelerator(opts))
    assert len(snaps) == 4 and not torch.equal(snaps[1]["weight"], snaps[3]["weight"])
    assert result["selected_epoch"] == 2 and result["epoch"] == 4
    assert result["w"] == float(snaps[1]["weight"].sum())  # epoch 2's evaluation
    assert reports[-1] == result  # the last report is the selection (what a trial ends with)
    for state in (
        net.state_dict(),
        load_checkpoint(tmp_path / "straight.pt", "toy")["modules"]["net"],
    ):
        for k in state:
            torch.testing.assert_close(state[k], snaps[1][k], rtol=0, atol=0)
    again = fit(_selecting_loop()[0], tmp_path / "straight.pt", opts, make_accelerator(opts))
    assert again == result  # a finished checkpoint gives the selection again

    monkeypatch.setenv("DPTQ_FAILPOINT", "epoch:toy:3")  # killed after epoch 3 ...
    monkeypatch.setenv("DPTQ_FAILPOINT_ACTION", "raise")
    with pytest.raises(FailpointHit):
        fit(_selecting_loop()[0], tmp_path / "killed.pt", opts, make_accelerator(opts))
    monkeypatch.delenv("DPTQ_FAILPOINT")
    loop, net, _ = _selecting_loop()  # ... and resumed: epoch 2 kept over the restart
    resumed = fit(loop, tmp_path / "killed.pt", opts, make_accelerator(opts))
    assert resumed["selected_epoch"] == 2 and resumed["w"] == result["w"]
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, snaps[1][k], rtol=0, atol=0)


def test_on_epoch_is_called_with_each_epoch_and_a_resume_starts_at_its_epoch(tmp_path, monkeypatch):
    from dptq.engine import RunOptions, fit, make_accelerator

    opts = RunOptions(cpu=True, progress=False)
    calls = []
    loop = _selecting_loop()[0]
    loop.on_epoch = calls.append
    monkeypatch.setenv("DPTQ_FAILPOINT", "epoch:toy:2")  # killed after epoch 2 ...
    monkeypatch.setenv("DPTQ_FAILPOINT_ACTION", "raise")
    with pytest.raises(FailpointHit):
        fit(loop, tmp_path / "killed.pt", opts, make_accelerator(opts))
    monkeypatch.delenv("DPTQ_FAILPOINT")
    assert calls == [0, 1]
    loop = _selecting_loop()[0]  # ... and resumed at the third epoch (index 2)
    loop.on_epoch = calls.append
    fit(loop, tmp_path / "killed.pt", opts, make_accelerator(opts))
    assert calls == [0, 1, 2, 3]
