"""The trigger's narrowness (dptq.trigger): curves start at the own allocation, the radius
interpolates."""

import pandas as pd
import pytest

from dptq import trigger
from dptq.evaluate import accuracy, own_policy_bits, uniform_policy_bits
from dptq.policy import create_policy
from tests.support.nets import tiny_data, tiny_q


def test_trigger_curves_start_at_the_own_allocation_and_end_at_the_uniform_one():
    data = tiny_data()
    f = tiny_q()
    options, budget = (2, 3, 4, 6), 3 * f.num_layers
    pi = create_policy("small_cnn", f.num_layers, len(options), width=4, depth=1, input_size=None)
    own = own_policy_bits(pi, options, budget)
    curves = trigger.trigger_curves(f, own, data, options, budget, batch_size=10)
    at = curves.set_index(["family", "step"])
    own_acc = accuracy(f, data, "cpu", own)
    uni_acc = accuracy(f, data, "cpu", uniform_policy_bits(f.num_layers, options, budget))
    for start in (("toward uniform", 0.0), ("random distance", 0.0)):
        assert at.loc[start, "bits_moved"] == 0 and at.loc[start, "accuracy"] == own_acc
    assert at.loc[("toward uniform", 1.0), "accuracy"] == uni_acc
    assert (curves.total == 24).all()
    moved = curves[curves.family == "random distance"].sort_values("step").bits_moved.tolist()
    assert moved[0] == 0 < moved[-1]  # no noise: the own allocation; more noise: farther away


def test_trigger_radius_hand_made():
    curve = pd.DataFrame(
        {
            "family": ["random distance"] * 4,
            "step": [0, 1, 2, 3],
            "bits_moved": [0.0, 2.0, 4.0, 8.0],
            "accuracy": [10.0, 30.0, 70.0, 90.0],
        }
    )
    assert trigger.trigger_radius(curve, fp_acc=90.0) == pytest.approx(3.0)  # half: 50%
    assert trigger.trigger_radius(curve.assign(accuracy=[10.0] * 4), 90.0) is None
