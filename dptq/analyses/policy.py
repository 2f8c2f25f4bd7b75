"""What the policies allocate, and where f_D's trigger sits: two analyses the paper lacks.

| name | what | figure | record fields |
|---|---|---|---|
| ``allocations`` | each policy's bits per layer over the test split (issue 22) | ``bits_per_layer.png`` | :class:`AllocationFields` |
| ``trigger_layers`` | the layers that alone break f_D under pi_D's bits, and the law that predicts its random drop from them (issue 24) | - | :class:`TriggerLayerFields` |

**The law** (issue 24, read off the committed records): when quantizing one layer alone with
pi_D's bits breaks f_D, f_D breaks under any allocation that puts that layer at the floor, so its
mean drop under the held-out sampler (uniform over the feasible allocations) is about
P(a trigger layer at the floor) x its drop under pi_D. :func:`dptq.knapsack.floor_probability`
gives that probability exactly; ``trigger_layers`` sets the prediction beside the measured drop.

Torch-free at import (:mod:`dptq.analyses.registry`): each analysis imports its tools inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .registry import PAIRS, Analysis, TrainedCell, register_analysis

TRIGGER_SHARE = 0.5  # a layer breaks f_D alone when it costs at least this share of pi_D's drop


@dataclass(frozen=True)
class PolicyBits:
    """One policy's allocation over the test split, per layer in order (bits).

    Attributes:
        mean, sd: mean and standard deviation over the examples, per layer (4 decimals).
        at_floor: share of the examples given the floor (the smallest option), per layer.
        distinct: how many different bit vectors the policy gives the examples.
    """

    mean: list[float]
    sd: list[float]
    at_floor: list[float]
    distinct: int


@dataclass(frozen=True)
class AllocationFields:
    """``f_R``'s policy pi_R and ``f_D``'s pi_D on the ``total`` test examples."""

    total: int
    f_R: PolicyBits
    f_D: PolicyBits


@dataclass(frozen=True)
class TriggerLayerFields:
    """The layers that alone break f_D, on ``examples`` test examples (the analyses' subset).

    Attributes:
        examples: the subset's size.
        own_drop: f_D's drop under pi_D's whole allocation on the subset (points).
        layers: 1-based layers whose quantization alone, with pi_D's bits and every other layer
            at full precision, costs f_D at least half of ``own_drop`` (empty: none does).
        names: their module names.
        single_drops: f_D's drop with each of them alone quantized (points).
        floor_share: share of the subset pi_D gives each of them the floor.
        floor_probability: P(at least one of ``layers`` at the floor) under the held-out sampler
            (exact); None without a single-layer trigger.
        predicted_heldout_drop: ``floor_probability`` x f_D's drop under pi_D on the test split
            (points): the law's prediction; None without a single-layer trigger.
        measured_heldout_drop: f_D's mean drop under the held-out sampler's allocations on the
            test split (points).
    """

    examples: int
    own_drop: float
    layers: list[int]
    names: list[str]
    single_drops: list[float]
    floor_share: list[float]
    floor_probability: float | None
    predicted_heldout_drop: float | None
    measured_heldout_drop: float | None


def _policy_bits(table, floor: int) -> PolicyBits:
    t = table.float()
    sd = t.std(0, unbiased=False)
    return PolicyBits(
        mean=[round(float(v), 4) for v in t.mean(0)],
        sd=[round(float(v), 4) for v in sd],
        at_floor=[round(float(v), 4) for v in table.eq(floor).float().mean(0)],
        distinct=int(table.unique(dim=0).shape[0]),
    )


@register_analysis("allocations", fields=AllocationFields)
def allocations(cell: TrainedCell, out: Path) -> Analysis:
    """Each policy's bits per layer over the test split, the uniform allocation beside them."""
    import pandas as pd

    from .. import report
    from ..evaluate import allocations as bits_of
    from ..evaluate import uniform_policy_bits

    floor = min(cell.options)
    tables = {k: bits_of(cell.bits(k), cell.data, cell.device) for k in PAIRS}
    fields = {k: _policy_bits(t, floor) for k, t in tables.items()}
    net = cell.nets["f_D"]
    uniform = uniform_policy_bits(net.num_layers, cell.options, cell.budget)
    even = bits_of(uniform, cell.data, cell.device)[0].tolist()
    table = pd.DataFrame(
        {
            "layer": range(1, net.num_layers + 1),
            "name": net.layer_names,
            **{f"pi_{k[-1]} mean": fields[k].mean for k in PAIRS},
            **{f"pi_{k[-1]} sd": fields[k].sd for k in PAIRS},
            "uniform": even,
        }
    )
    report.plot_policy_bits(table, min(cell.options), max(cell.options), out / "bits_per_layer.png")
    text = (
        f"Bits per layer over the {len(tables['f_D'])} test examples (mean and sd); distinct "
        f"allocations: pi_R {fields['f_R'].distinct}, pi_D {fields['f_D'].distinct}."
    )
    return Analysis(
        "Bits per layer",
        table,
        text,
        ["bits_per_layer.png"],
        AllocationFields(len(tables["f_D"]), fields["f_R"], fields["f_D"]),
    )


@register_analysis("trigger_layers", fields=TriggerLayerFields)
def trigger_layers(cell: TrainedCell, out: Path) -> Analysis:
    """The layers that alone break f_D under pi_D's bits and the law's predicted random drop."""
    import pandas as pd
    import torch

    from ..evaluate import allocations as bits_of
    from ..evaluate import count
    from ..knapsack import floor_probability
    from ..scores import points
    from ..splits import subset
    from ..sweeps import sweep_layers

    net, bits, data = cell.nets["f_D"], cell.bits("f_D"), cell.data
    ds = subset(data.test, cell.max_examples, cell.sample_seed)
    n = len(ds)
    fp, _ = count(net, data, cell.device, dataset=ds)
    whole, _ = count(net, data, cell.device, bits, dataset=ds)
    own = 100 * (fp - whole) / n
    L, floor = net.num_layers, min(cell.options)
    table = bits_of(bits, data, cell.device)  # the test split's allocations under pi_D
    rows = []
    for layer in sweep_layers(L, cell.sweep_layers):
        mask = torch.arange(L) == layer
        right, _ = count(net, data, cell.device, bits, dataset=ds, mask=mask)
        rows.append(
            {
                "layer": layer + 1,
                "name": net.layer_names[layer],
                "drop alone": 100 * (fp - right) / n,
                "pi_D at floor": float(table[:, layer].eq(floor).float().mean()),
            }
        )
    sweep = pd.DataFrame(rows)
    hit = sweep[(sweep["drop alone"] >= TRIGGER_SHARE * own) & (sweep["drop alone"] > 0)]
    c = cell.counts
    test_own = points(c.own_drop("f_D"))
    measured = points(c.f_D.drop("heldout", c.total))
    p = None if hit.empty else float(floor_probability(cell.options, cell.budget, L, len(hit)))
    fields = TriggerLayerFields(
        examples=n,
        own_drop=round(own, 4),
        layers=[int(v) for v in hit.layer],
        names=list(hit.name),
        single_drops=[round(float(v), 4) for v in hit["drop alone"]],
        floor_share=[round(float(v), 4) for v in hit["pi_D at floor"]],
        floor_probability=p,
        predicted_heldout_drop=None if p is None else round(p * test_own, 4),
        measured_heldout_drop=measured,
    )
    if hit.empty:
        text = (
            f"No layer alone costs f_D half of its drop under pi_D ({own:.1f} points on {n} "
            "test examples): the trigger needs several layers at once."
        )
    else:
        text = (
            f"Layers that alone cost f_D at least half of its drop under pi_D ({own:.1f} points "
            f"on {n} test examples): {', '.join(fields.names)}. P(one of them at the floor) under "
            f"the held-out sampler = {p:.3f}; predicted held-out drop {p:.3f} x {test_own:.1f} = "
            f"{fields.predicted_heldout_drop:.1f} points, measured {measured:.1f}."
        )
    return Analysis("Single-layer triggers", sweep, text, [], fields)
