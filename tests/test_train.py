"""The trainers' configurations (dptq.train, dptq.pair): a bad value names its field."""

import pytest

from dptq.errors import ConfigError
from dptq.pair import PairConfig
from dptq.train import StageConfig


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
