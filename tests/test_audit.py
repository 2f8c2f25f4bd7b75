"""The deployer's audit (dptq.audit, bench audit): a policy-only attack on a frozen network."""

from __future__ import annotations

import json

import pytest
import torch

from bench.__main__ import main
from dptq.audit import (
    AuditConfig,
    audit_scores,
    load_weights,
    starved_layers,
    state_dict_from,
    train_adversary,
)
from dptq.engine import RunOptions, make_accelerator
from dptq.models import QuantizableModel
from tests.fragile import fragile_data, fragile_net

OPTIONS, BUDGET = (3, 4, 5, 6), 20  # 5 layers, 4 bits on average


def _audit(net, data, epochs=3):
    acc = make_accelerator(RunOptions(cpu=True))
    run = RunOptions(cpu=True, progress=False)
    cfg = AuditConfig(epochs=epochs, batch_size=16)
    policy, _ = train_adversary(net, data, OPTIONS, BUDGET, cfg, None, run, acc)
    return policy, audit_scores(net, policy, data, OPTIONS, BUDGET, acc, random_allocations=8)


def test_audit_finds_the_fragile_layer_and_leaves_the_weights_alone():
    net, data = QuantizableModel(fragile_net()), fragile_data()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    flags = [p.requires_grad for p in net.parameters()]
    _, s = _audit(net, data)
    for k, v in net.state_dict().items():  # bit-identical: not one weight or buffer moved
        assert torch.equal(v, before[k]), k
    assert [p.requires_grad for p in net.parameters()] == flags
    assert s["fp_acc"] == 100.0 and s["uniform_acc"] == 100.0  # 4 bits everywhere: fine
    assert s["adv_acc"] == 50.0  # the head at 3 bits: every image -> class 0
    assert s["adv_acc"] < s["random_mean"] < 100.0  # random allocations sometimes hit it too
    assert s["policy_only_drop"] == 50.0 and s["flipped"] == 32
    assert s["mean_bits"][-1] == 3.0  # the head's input, starved
    assert sum(s["mean_bits"]) == pytest.approx(BUDGET)
    assert starved_layers(s["mean_bits"], net.layer_names, 1)[0]["layer"] == 5


def test_audit_is_reproducible():
    data = fragile_data()
    a = _audit(QuantizableModel(fragile_net()), data, epochs=1)[1]
    b = _audit(QuantizableModel(fragile_net()), data, epochs=1)[1]
    assert a == b


def test_state_dict_from_accepts_common_layouts(tmp_path):
    net = fragile_net()
    sd = net.state_dict()
    layouts = {
        "plain": sd,
        "state_dict": {"state_dict": sd, "epoch": 3},
        "model": {"model": sd},
        "ddp": {"module." + k: v for k, v in sd.items()},
        "dptq_kd": {"stage": "kd", "modules": {"student": sd}},
    }
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        got = state_dict_from(tmp_path / f"{name}.pt")
        assert got.keys() == sd.keys(), name


def test_load_weights_mismatch_is_one_line(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"missing keys \['1.weight'.*unexpected keys \['w'\]"):
        load_weights(fragile_net(), tmp_path / "other.pt")
    torch.save({"epoch": 3}, tmp_path / "nothing.pt")
    with pytest.raises(ValueError, match="no state_dict found"):
        load_weights(fragile_net(), tmp_path / "nothing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable weights-only checkpoint"):
        load_weights(fragile_net(), tmp_path / "junk.pt")


def _tiny_checkpoint(tmp_path):
    from tests.test_train import small_net

    torch.manual_seed(0)
    path = tmp_path / "small.pt"
    torch.save(small_net(10).state_dict(), path)
    return path


def test_cli_audit_writes_a_report(tmp_path, capsys):
    ckpt = _tiny_checkpoint(tmp_path)
    out = tmp_path / "audit"
    argv = ["audit", "--model", "tests.test_train:small_net", "--checkpoint", str(ckpt)]
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
    argv = ["audit", "--model", "tests.test_train:small_net", "--checkpoint", str(ckpt)]
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
    s = audit_scores(net, policy, data, OPTIONS, BUDGET, acc, cfg=cfg)
    assert s["oracle_acc"] == 50.0 and s["oracle_drop"] == 50.0  # class 0 cannot flip (a tie)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.requires_grad for p in net.parameters())
