"""Every registered analysis on a random-init tiny cell (parametrized over the registry), the
registry's order, and the record fields each declares."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from dptq.analyses import ANALYSES, AuditFields, TrainedCell, order, register_analysis
from dptq.analyses.registry import Analysis
from dptq.audit import AuditConfig
from dptq.defenses import DefenseConfig
from dptq.evaluate import evaluate_cell
from dptq.policy import create_policy
from tests.support.nets import tiny_data, tiny_q

OPTIONS, BUDGET = (3, 4, 6), 8  # two quantized layers of tiny_q


def _cell() -> TrainedCell:
    torch.manual_seed(0)
    data = tiny_data()
    f_n = tiny_q()
    nets = {"f_N": f_n, "f_R": copy.deepcopy(f_n), "f_D": copy.deepcopy(f_n)}
    pol = {
        k: create_policy(
            "small_cnn", f_n.num_layers, len(OPTIONS), width=4, depth=1, input_size=None
        )
        for k in ("f_R", "f_D")
    }
    ev = evaluate_cell(nets, pol, data, OPTIONS, BUDGET, "cpu", seed=0, random_allocations=2)
    return TrainedCell(
        nets,
        pol,
        data,
        OPTIONS,
        BUDGET,
        ev,
        f_n_acc=50.0,
        max_examples=8,
        sweep_layers=2,
        corruption_degrees=(0, 5),
        audit=AuditConfig(epochs=1, batch_size=8),
        defenses=DefenseConfig(finetune_steps=1, finetune_batch_size=8, noise_scales=(0.01,)),
        random_allocations=2,
    )


@pytest.mark.parametrize("name", list(ANALYSES))
def test_every_analysis_runs_and_returns_its_declared_fields(name, tmp_path):
    spec = ANALYSES[name]
    cell = _cell()
    for used in spec.uses:  # what it reads from an earlier analysis, as the runner orders it
        cell.results[used] = ANALYSES[used].run(cell, tmp_path)
    with torch.no_grad():
        result = spec.run(cell, tmp_path)
    assert isinstance(result, Analysis) and result.title and result.markdown().startswith("## ")
    for fig in result.figures:
        assert (tmp_path / fig).stat().st_size > 1000, fig
    if spec.fields is None:
        assert result.fields is None
    else:
        assert isinstance(result.fields, spec.fields)
        json.dumps(dataclasses.asdict(result.fields), allow_nan=False)  # a record can hold it
    for bits in result.per_example.values():
        assert len(bits) == len(cell.data.test) and set(bits) <= {"0", "1"}


def test_order_runs_what_an_analysis_uses_first():
    assert ANALYSES["quantizer_transfer"].uses == ("audit",)
    assert order(["quantizer_transfer", "audit"]) == ["audit", "quantizer_transfer"]
    assert order(["defenses", "pair_scores"]) == ["pair_scores", "defenses"]  # registry order
    with pytest.raises(ValueError, match="unknown analyses \\['nope'\\]; known: "):
        order(["nope"])


def test_a_late_registered_analysis_still_runs_after_what_it_uses():
    @register_analysis("_reads_audit", uses=("audit",))
    def reads_audit(cell, out):  # registered first in a user's module, before audit is chosen
        return Analysis("reads audit")

    try:
        first = {"_reads_audit": ANALYSES.pop("_reads_audit")}
        ANALYSES.update({**first, **{k: ANALYSES.pop(k) for k in list(ANALYSES)}})
        assert list(ANALYSES)[0] == "_reads_audit"
        assert order(["_reads_audit", "audit"]) == ["audit", "_reads_audit"]
    finally:
        ANALYSES.pop("_reads_audit", None)


def test_fields_derive_their_scores():
    a = AuditFields(100, 90, 60, 88, [85, 87], None, 31, [3.0, 5.0], [])
    assert a.policy_only_drop == 30.0 and a.oracle_drop is None
