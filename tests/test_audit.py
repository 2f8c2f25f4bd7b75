"""The deployer's audit (dptq.audit, bench audit): a policy-only attack on a frozen network."""

from __future__ import annotations

import json

import pytest
import torch

from bench.__main__ import main
from dptq.audit import AuditConfig, audit_scores, starved_layers, train_adversary
from dptq.engine import RunOptions, make_accelerator
from dptq.models import QuantizableModel
from tests.support.fragile import fragile_data, fragile_net

OPTIONS, BUDGET = (3, 4, 5, 6), 20  # 5 layers, 4 bits on average


def _audit(net, data, epochs=3):
    acc = make_accelerator(RunOptions(cpu=True))
    run = RunOptions(cpu=True, progress=False)
    cfg = AuditConfig(epochs=epochs, batch_size=16)
    policy, _ = train_adversary(net, data, OPTIONS, BUDGET, cfg, None, run, acc)
    s = audit_scores(net, policy, data, OPTIONS, BUDGET, acc.device, random_allocations=8)
    return policy, s


def test_audit_finds_the_fragile_layer_and_leaves_the_weights_alone():
    net, data = QuantizableModel(fragile_net()), fragile_data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [p.requires_grad for p in net.parameters()]
    _, s = _audit(net, data)
    for k, v in net.state_dict().items():  # bit-identical: not one weight or buffer moved
        assert torch.equal(v, before[k]), k
    assert [p.requires_grad for p in net.parameters()] == flags
    n = s["total"]
    assert n == 64 and s["fp"] == n and s["uniform"] == n  # 4 bits everywhere: fine
    assert s["adversarial"] == n // 2  # the head at 3 bits: every image -> class 0
    assert s["adversarial"] < sum(s["random"]) / len(s["random"]) < n  # random hit it sometimes
    assert s["flipped"] == 32 and int(s["adversarial_correct"].sum()) == n // 2
    assert s["mean_bits"][-1] == 3.0  # the head's input, starved
    assert sum(s["mean_bits"]) == pytest.approx(BUDGET)
    # the head is among the layers pi_A starves most (another may sit at the floor too: a tie)
    lowest = s["mean_bits"].count(min(s["mean_bits"]))
    assert 5 in [x["layer"] for x in starved_layers(s["mean_bits"], net.layer_names, lowest)]


def test_audit_is_reproducible():
    data = fragile_data()
    a = _audit(QuantizableModel(fragile_net()), data, epochs=1)[1]
    b = _audit(QuantizableModel(fragile_net()), data, epochs=1)[1]
    for k in ("fp_correct", "adversarial_correct"):  # per example
        assert torch.equal(a.pop(k), b.pop(k))
    assert a == b


def _tiny_checkpoint(tmp_path):
    from tests.support.nets import small_net

    torch.manual_seed(0)
    path = tmp_path / "small.pt"
    torch.save(small_net(10).state_dict(), path)
    return path


def test_cli_audit_writes_a_report(tmp_path, capsys):
    ckpt = _tiny_checkpoint(tmp_path)
    out = tmp_path / "audit"
    argv = ["audit", "--model", "tests.support.nets:small_net", "--checkpoint", str(ckpt)]
    argv += ["--dataset-option", "image_size=8", "--dataset-option", "max_train=120"]
    argv += ["--dataset-option", "max_test=60", "--epochs", "1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "adversarial policy" in printed and "starved layers" in printed
    result = json.loads((out / "audit.json").read_text())
    assert result["num_layers"] == 3 and result["budget"] == 12  # small_net: 4 layers, first kept
    assert sum(result["audit"]["mean_bits"]) == pytest.approx(12)
    for f in ("report.md", "report.html", "audit_bits.png", "audit_sweep.png"):
        assert (out / f).stat().st_size > 0
    from dptq.indicators import INDICATORS

    assert set(result["fp_indicators"]) == set(INDICATORS)  # a deployer's own model, no policy
    assert "## Full-precision indicators" in (out / "report.md").read_text()


@pytest.mark.parametrize(
    "change, message",
    [
        (["--checkpoint", "missing.pt"], "no such checkpoint file"),
        (["--model", "resnet18"], "does not fit the model"),
        (["--options", "3-x"], "--options '3-x'"),
        (["--budget", "5"], "--budget/--avg-bits: budget 5 is outside"),
        (["--dataset-option", "imagesize=8"], "imagesize: unknown option"),
        (["--model", "no_such_net_xyz"], "unknown timm model"),
    ],
)
def test_cli_audit_bad_input_is_one_line(tmp_path, capsys, change, message):
    ckpt = _tiny_checkpoint(tmp_path)
    out = tmp_path / "audit"
    argv = ["audit", "--model", "tests.support.nets:small_net", "--checkpoint", str(ckpt)]
    argv += ["--dataset-option", "image_size=8", "--out", str(out)]
    flag = change[0]
    if flag in argv:
        argv[argv.index(flag) + 1] = change[1]
    else:
        argv += change
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err, err
    assert not out.exists()


def test_oracle_searches_each_examples_allocation():
    net, data = QuantizableModel(fragile_net()), fragile_data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    acc = make_accelerator(RunOptions(cpu=True))
    cfg = AuditConfig(epochs=1, batch_size=16, oracle_steps=10)
    from dptq.audit import oracle_bits
    from dptq.policy import create_policy

    x = torch.zeros(4, 3, 2, 2)
    x[:, 0, 0, 0] = torch.tensor([1.0, -1.0, 1.0, -1.0])
    bits = oracle_bits(net, x, OPTIONS, BUDGET, cfg)
    assert bits.sum(1).tolist() == [BUDGET] * 4  # exact budget, every example
    assert bits[0, -1] == 3 and bits[2, -1] == 3  # class 1: flipped by starving the head
    policy = create_policy("small_cnn", 5, 4)  # any policy will do for the rest of the scores
    s = audit_scores(net, policy, data, OPTIONS, BUDGET, acc.device, cfg=cfg)
    assert s["oracle"] == s["total"] // 2 and s["fp"] == s["total"]  # class 0 cannot flip (a tie)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.requires_grad for p in net.parameters())
