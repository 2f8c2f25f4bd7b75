"""Fig. 4 (dptq.robustness): corruption curves, reproducible, with exact counts."""

import pandas as pd
import pytest

from dptq import robustness
from dptq.evaluate import own_policy_bits
from dptq.policy import create_policy
from tests.support.nets import tiny_data, tiny_q


def test_corruption_robustness_frame_and_summary():
    data = tiny_data()
    f = tiny_q()
    bits_fn = own_policy_bits(
        create_policy("small_cnn", f.num_layers, 2, width=4, depth=1, input_size=None),
        (3, 4),
        3 * f.num_layers,
    )
    models = {"f_R FP": (f, None), "f_R quantized": (f, bits_fn)}
    frame = robustness.corruption_robustness(
        models, data, corruptions=("blur", "noise"), degrees=(0, 2)
    )
    assert len(frame) == 2 * 2 * 2
    assert (frame.total == 24).all() and (frame.accuracy == 100 * frame.correct / 24).all()
    again = robustness.corruption_robustness(
        models, data, corruptions=("blur", "noise"), degrees=(0, 2)
    )
    pd.testing.assert_frame_equal(frame, again)
    summary = robustness.corruption_summary(frame)
    assert summary.loc["f_R quantized", "quantized - FP"] == pytest.approx(
        summary.loc["f_R quantized", "mean corrupted acc"]
        - summary.loc["f_R FP", "mean corrupted acc"]
    )
