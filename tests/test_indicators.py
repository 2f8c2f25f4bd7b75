"""Full-precision indicators (dptq.indicators) against independent references: scipy's kurtosis,
numpy's max and std, hand-counted flips and margins."""

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from dptq.indicators import INDICATORS, fp_indicators


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def test_input_statistics_stream_over_batches_as_scipy_computes_them_at_once():
    net = _net()
    batches = [torch.randn(7, 5), torch.randn(4, 5) * 3 + 1]
    values, layers = fp_indicators(net, ["0", "2"], batches)
    first = torch.cat(batches).double().numpy().ravel()
    with torch.no_grad():
        second = torch.cat([net[1](net[0](b)) for b in batches]).double().numpy().ravel()
    for got, v in zip(layers, (first, second)):
        assert got.kurtosis == pytest.approx(stats.kurtosis(v, fisher=True, bias=True), rel=1e-6)
        assert got.outlier == pytest.approx(np.abs(v).max() / v.std(), rel=1e-9)
    assert values["act_outlier"] == pytest.approx(max(s.outlier for s in layers), abs=1e-6)
    assert values["act_kurtosis"] == pytest.approx(max(s.kurtosis for s in layers), abs=1e-6)
    w = [net[i].weight.detach().double().numpy() for i in (0, 2)]
    expect = max(np.abs(a).max() / a.std(ddof=1) for a in w)
    assert values["weight_outlier"] == pytest.approx(expect, rel=1e-6)


def test_margin_and_flips_by_hand_and_weights_restored():
    net = _net()
    x = torch.randn(16, 5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    values, _ = fp_indicators(net, ["0", "2"], [x[:10], x[10:]])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # noise undone
    with torch.no_grad():
        top = net(x).topk(2, dim=1).values
    assert values["low_margin"] == pytest.approx(-float((top[:, 0] - top[:, 1]).mean()), abs=1e-5)
    assert 0 <= values["weight_noise_flip"] <= 1 and 0 <= values["input_noise_flip"] <= 1
    assert set(values) == set(INDICATORS)
    again, _ = fp_indicators(net, ["0", "2"], [x[:10], x[10:]])
    assert again == values  # seeded noise: the same numbers


def test_a_constant_network_flips_nothing_and_a_fragile_one_flips():
    """A network whose logits ignore its input flips nothing under input noise; one whose two
    classes are separated by a hair flips about half its predictions."""
    const = nn.Sequential(nn.Linear(5, 3)).eval()
    with torch.no_grad():
        const[0].weight.zero_()
        const[0].bias.copy_(torch.tensor([1.0, 0.0, -1.0]))
    x = torch.randn(64, 5)
    values, _ = fp_indicators(const, ["0"], [x])
    assert values["input_noise_flip"] == 0 and values["low_margin"] == pytest.approx(-1.0)
    hair = nn.Sequential(nn.Linear(5, 2)).eval()
    with torch.no_grad():
        hair[0].weight.copy_(torch.tensor([[1e-3, 0, 0, 0, 0], [0, 0, 0, 0, 0.0]]))
        hair[0].bias.zero_()
    values, _ = fp_indicators(hair, ["0"], [x * 0.01])  # inputs far smaller than the noise
    assert 0.3 < values["input_noise_flip"] < 0.7


def test_a_planted_outlier_channel_raises_act_outlier():
    """Scaling one hidden unit's output by 50 makes the second layer's input outlying."""
    net = _net()
    x = torch.randn(32, 5)
    plain, _ = fp_indicators(net, ["0", "2"], [x])
    with torch.no_grad():
        net[0].weight[3] *= 50
        net[0].bias[3] = abs(float(net[0].bias[3])) * 50 + 5
    planted, layers = fp_indicators(net, ["0", "2"], [x])
    assert planted["act_outlier"] > plain["act_outlier"]
    assert layers[1].outlier == pytest.approx(planted["act_outlier"], abs=1e-5)


def _board(values):
    """A frame as bench.board.views.frame makes it: one row per seed, (f_R, f_D, valid, attacked[,
    f_N]) indicator values (f_N 0.0 unless given; None: the record has no f_N values)."""
    import pandas as pd

    rows = []
    for r, d, valid, attacked, *n in values:
        n = n[0] if n else 0.0
        ind = {"f_R": {"a": r}, "f_D": {"a": d}} | ({} if n is None else {"f_N": {"a": n}})
        rows.append(
            {
                "dataset": "digits",
                "suite": "s",
                "error": "",
                "valid": valid,
                "attacked": attacked,
                "indicators": ind,
            }
        )
    rows.append({"dataset": "digits", "suite": "s", "error": "x", "valid": False})
    rows[-1].update(attacked=False, indicators=None)
    return pd.DataFrame(rows)


def _mann_whitney(pos, neg):
    return sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))


def test_the_board_auc_is_the_mann_whitney_count_over_valid_pairs(tmp_path):
    from bench.board.figures import render_roc
    from bench.board.indicators import best_indicator, indicator_table

    pairs = [(1.0, 3.0, True, True), (2.0, 1.5, True, False), (2.5, 4.0, True, True)]
    pairs.append((0.0, 9.0, False, True))  # invalid: enters no score
    table = indicator_table(_board(pairs))
    [row] = table.to_dict("records")
    f_d, f_r = [3.0, 1.5, 4.0], [1.0, 2.0, 2.5]
    assert row["auc_valid"] == pytest.approx(_mann_whitney(f_d, f_r)) and row["n_valid"] == 3
    assert row["auc_attacked"] == pytest.approx(1.0) and row["n_attacked"] == 2
    assert row["f_D_above_f_R"] == pytest.approx(2 / 3)  # paired: 3 > 1, 1.5 < 2, 4 > 2.5
    assert best_indicator(table) == "a"
    assert render_roc(_board(pairs), table, tmp_path / "roc.png").stat().st_size > 1000
    one = indicator_table(_board(pairs[:1]))
    assert one.auc_valid.isna().all() and best_indicator(one) is None  # one pair: no AUC


def test_the_auc_against_f_n_puts_the_shared_student_as_the_negative():
    from bench.board.indicators import indicator_table

    # (f_R, f_D, valid, attacked, f_N)
    pairs = [(1.0, 3.0, True, True, 3.5), (0.5, 1.5, True, False, 1.0)]
    pairs += [(2.5, 4.0, True, True, 2.0), (2.0, 2.2, True, True, None)]  # last: no f_N values
    [row] = indicator_table(_board(pairs)).to_dict("records")
    auc_r = _mann_whitney([3.0, 1.5, 4.0, 2.2], [1.0, 0.5, 2.5, 2.0])  # 13/16
    assert row["auc_valid"] == pytest.approx(auc_r) and row["n_valid"] == 4
    f_d, f_n = [3.0, 1.5, 4.0], [3.5, 1.0, 2.0]
    assert row["auc_valid_vs_f_N"] == pytest.approx(_mann_whitney(f_d, f_n))  # 6/9
    assert row["n_valid_vs_f_N"] == 3  # the record without f_N enters no f_N score
    assert row["auc_attacked_vs_f_N"] == pytest.approx(_mann_whitney([3.0, 4.0], [3.5, 2.0]))
    assert row["n_attacked_vs_f_N"] == 2 and row["n_attacked"] == 3


def test_the_page_shows_the_auc_table(tmp_path):
    from bench.board.page import _indicators

    pairs = [(1.0, 3.0, True, True), (2.0, 1.5, True, False), (2.5, 4.0, True, True)]
    text = "".join(_indicators(_board(pairs), tmp_path))
    assert "can a deployer tell f_D from f_R or f_N" in text
    assert '<td class="text">a</td><td>0.78 (3)</td><td>1.00 (2)</td><td>1.00 (3)</td>' in text
