"""Weights from any checkpoint layout (dptq.checkpoints), and one line when they do not fit."""

import pytest
import torch

from dptq.checkpoints import load_weights, state_dict_from
from tests.support.fragile import fragile_net


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
