"""The defense track: each defense changes what it should, and nothing else."""

from __future__ import annotations

import copy

import pytest
import torch

from dptq.defenses import DefenseConfig, best_defense, defense_table, finetune, weight_noise
from dptq.errors import ConfigError
from dptq.evaluate import uniform_policy_bits
from dptq.models import QuantizableModel
from tests.support.fragile import fragile_data, fragile_net
from tests.support.nets import small_net


def test_weight_noise_touches_only_conv_and_linear_weights():
    torch.manual_seed(0)
    net = QuantizableModel(small_net(10))
    before = copy.deepcopy(net.state_dict())
    noisy = weight_noise(net, 0.1, seed=1)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # a copy
    for k, v in noisy.state_dict().items():
        if k.endswith("weight") and before[k].dim() > 1:  # Conv2d / Linear
            rel = (v - before[k]).std() / before[k].std()
            assert 0.07 < rel < 0.13, k
        else:  # biases, batch norm
            assert torch.equal(v, before[k]), k
    assert torch.equal(
        weight_noise(net, 0.1, seed=1).state_dict()["model.0.weight"],
        noisy.state_dict()["model.0.weight"],
    )


def test_finetune_moves_weights_not_batchnorm_statistics():
    torch.manual_seed(0)
    net = QuantizableModel(small_net(2))
    data = fragile_data()
    before = copy.deepcopy(net.state_dict())
    tuned = finetune(net, data, steps=3, lr=1e-2, batch_size=16)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # a copy
    after = tuned.state_dict()
    assert not torch.equal(after["model.0.weight"], before["model.0.weight"])
    for k in before:
        if "running" in k or "num_batches" in k:
            assert torch.equal(after[k], before[k]), k


def test_defense_table_on_the_fragile_net():
    data = fragile_data()
    f_r, f_d = QuantizableModel(fragile_net()), QuantizableModel(fragile_net())
    head_at_3 = lambda x: torch.tensor([[5, 5, 4, 3, 3]] * x.shape[0])  # noqa: E731
    uniform = uniform_policy_bits(5, (3, 4, 5, 6), 20)
    cfg = DefenseConfig(finetune_steps=0, noise_scales=(0.01,))
    table = defense_table({"f_R": (f_r, uniform), "f_D": (f_d, head_at_3)}, uniform, data, cfg)
    assert list(table.index) == ["none", "noise 0.01", "percentile 99.9", "uniform allocation"]
    assert table.loc["none", "gap"] == 50.0  # f_D's own bits starve the head, f_R's do not
    assert table.loc["uniform allocation", "gap"] == 0.0  # ignoring the policy removes it
    assert table.loc["none", "FP cost"] == 0.0
    assert best_defense(table, 2.0) == ("uniform allocation", 0.0)
    assert best_defense(table.assign(**{"FP cost": 5.0}), 2.0) == (None, None)


@pytest.mark.parametrize(
    "kw", [{"finetune_steps": -1}, {"noise_scales": (0.0,)}, {"percentile": 100.0}]
)
def test_defense_config_rejects(kw):
    with pytest.raises(ConfigError):
        DefenseConfig(**kw)
