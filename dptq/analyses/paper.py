"""The paper's analyses (Tables 1-3, Figs. 2-4) and the trigger's narrowness, registered by name.

| name | paper | figure | record fields |
|---|---|---|---|
| ``pair_scores`` | Table 1 | - | - (the record's own scores) |
| ``transitory`` | Table 2 | ``transitory.png`` (contact sheet) | :class:`TransitoryFields` |
| ``cross_policy`` | Table 3 | ``cross_policy.png`` | - (the record's evaluation) |
| ``layer_sweep`` | Fig. 2 | ``layer_sweep.png`` | - |
| ``histograms`` | Fig. 3 | ``histograms.png`` | - |
| ``corruptions`` | Fig. 4 | ``corruptions.png`` | :class:`CorruptionFields` |
| ``trigger`` | not in the paper: how narrow pi_D's trigger is | ``trigger.png`` | :class:`TriggerFields` |

Torch-free at import (:mod:`dptq.analyses.registry`): each analysis imports its tools inside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .registry import PAIRS, Analysis, TrainedCell, register_analysis


@dataclass(frozen=True)
class TransitoryFields:
    """Table 2's counts on the test split.

    Attributes:
        count: transitory points: examples both FP networks classify correctly that f_D gets
            wrong under pi_D.
        both_correct: examples both FP networks classify correctly.
        total: test examples.
    """

    count: int
    both_correct: int
    total: int

    @property
    def rate_of_test(self) -> float:
        """Transitory points as a share of the test set (%)."""
        return 100 * self.count / self.total

    @property
    def rate_of_both_correct(self) -> float | None:
        """... and of the examples both FP networks get right (%; the paper says neither)."""
        return 100 * self.count / self.both_correct if self.both_correct else None


@dataclass(frozen=True)
class CorruptionFields:
    """Fig. 4's summary, per model (``f_R FP``, ``f_R quantized``, ``f_D FP``, ``f_D
    quantized``): examples classified correctly, summed over every corruption and degree 1..5,
    out of ``total`` (examples x corrupted evaluations, the same for every model)."""

    correct: dict[str, int]
    total: int

    @property
    def mean_acc(self) -> dict[str, float]:
        """Mean accuracy (%) over corruptions and degrees 1..5."""
        return {k: 100 * c / self.total for k, c in self.correct.items()}


@dataclass(frozen=True)
class TriggerFields:
    """Attributes:
    radius: mean bits moved per example (random-distance family) at which f_D has recovered
        half of its drop under pi_D; None when it never does within the distances tried."""

    radius: float | None


@register_analysis("pair_scores")
def pair_scores(cell: TrainedCell, out: Path) -> Analysis:
    """Table 1: FP accuracies, quantized change, gap, FP match."""
    from .. import metrics

    table = metrics.pair_scores(cell.counts, cell.f_n_acc)
    return Analysis("Table 1: pair scores (accuracy %, delta = quantized - FP)", table)


@register_analysis("transitory", fields=TransitoryFields)
def transitory(cell: TrainedCell, out: Path) -> Analysis:
    """Table 2: transitory points and a contact sheet of them."""
    from .. import metrics, report

    c = cell.evaluation.correct
    trans = metrics.transitory_points(c["f_R"]["FP"], c["f_D"]["FP"], c["f_D"]["pi_D"])
    test = cell.data.test
    shown = trans["indices"][:64]
    images = {i: test[i][0] for i in shown}
    labels = {i: int(test[i][1]) for i in shown}
    report.contact_sheet(images, trans["indices"], out / "transitory.png", labels)
    fields = TransitoryFields(trans["count"], trans["both_correct"], trans["total"])
    both = fields.rate_of_both_correct
    text = (
        f"{fields.count} test examples: {fields.rate_of_test:.2f}% of the test set, "
        + (f"{both:.2f}%" if both is not None else "none")
        + " of the examples both FP models classify correctly."
    )
    return Analysis("Table 2: transitory points", None, text, ["transitory.png"], fields)


@register_analysis("cross_policy")
def cross_policy(cell: TrainedCell, out: Path) -> Analysis:
    """Table 3: every network under every policy."""
    from .. import metrics, report

    matrix = metrics.cross_policy_matrix(cell.counts)
    report.plot_cross_policy(matrix, out / "cross_policy.png")
    return Analysis("Table 3: cross-policy accuracy (%)", matrix, figures=["cross_policy.png"])


@register_analysis("layer_sweep")
def layer_sweep(cell: TrainedCell, out: Path) -> Analysis:
    """Fig. 2: accuracy quantizing only the layers before, after or at each layer."""
    import pandas as pd

    from .. import report, sweeps
    from ..io import write_atomic

    runs = [
        sweeps.layer_sweep(
            cell.nets[k],
            cell.bits(k),
            cell.data,
            cell.device,
            max_examples=cell.max_examples,
            sample_seed=cell.sample_seed,
            max_layers=cell.sweep_layers,
        ).assign(network=k)
        for k in PAIRS
    ]
    sweep = pd.concat(runs, ignore_index=True)
    write_atomic(out / "layer_sweep.csv", sweep.to_csv(index=False))
    report.plot_layer_sweep(sweep, out / "layer_sweep.png")
    inflect = pd.concat(
        [sweeps.inflection_layers(s).assign(network=s.network.iloc[0]) for s in runs]
    ).reset_index(drop=True)
    text = "Inflection layers (largest change between neighbouring layers):"
    return Analysis("Fig. 2: layer sweeps", inflect, text, ["layer_sweep.png"])


@register_analysis("histograms")
def histograms(cell: TrainedCell, out: Path) -> Analysis:
    """Fig. 3: activation histograms and the sparsity measure."""
    from .. import report, sweeps
    from ..io import write_atomic

    hists, sparsity = {}, {}
    for k in PAIRS:
        hists[k], sparsity[k] = sweeps.activation_histograms(
            cell.nets[k], cell.bits(k), cell.data, cell.device, cell.max_examples, cell.sample_seed
        )
    report.plot_histograms(hists, sparsity, out / "histograms.png")
    sp = (
        sparsity["f_R"]
        .merge(sparsity["f_D"], on="layer", suffixes=(" f_R", " f_D"))
        .set_index("layer")
    )
    write_atomic(out / "sparsity.csv", sp.to_csv())
    title = "Fig. 3: activation sparsity (% of values in the zero bin)"
    return Analysis(title, sp, figures=["histograms.png"])


@register_analysis("corruptions", fields=CorruptionFields)
def corruptions(cell: TrainedCell, out: Path) -> Analysis:
    """Fig. 4: accuracy under corruptions by degree, FP and quantized."""
    from .. import report, robustness
    from ..corruptions import DEGREES
    from ..io import write_atomic

    models = {}
    for k in PAIRS:
        models[f"{k} FP"] = (cell.nets[k], None)
        models[f"{k} quantized"] = (cell.nets[k], cell.bits(k))
    corr = robustness.corruption_robustness(
        models,
        cell.data,
        degrees=cell.corruption_degrees or DEGREES,
        device=cell.device,
        seed=cell.seed,
        max_examples=cell.max_examples,
        sample_seed=cell.sample_seed,
    )
    write_atomic(out / "corruptions.csv", corr.to_csv(index=False))
    report.plot_corruptions(corr, out / "corruptions.png")
    summary = robustness.corruption_summary(corr)
    corrupted = corr[corr.degree > 0]
    totals = corrupted.groupby("model", sort=False)["total"].sum()
    fields = None
    if len(corrupted):  # degree 0 only: nothing corrupted to summarise
        right = corrupted.groupby("model", sort=False)["correct"].sum()
        fields = CorruptionFields({k: int(v) for k, v in right.items()}, int(totals.iloc[0]))
    return Analysis(
        "Fig. 4: corruption robustness", summary, figures=["corruptions.png"], fields=fields
    )


@register_analysis("trigger", fields=TriggerFields)
def trigger(cell: TrainedCell, out: Path) -> Analysis:
    """Not in the paper: how far from pi_D's allocation f_D recovers."""
    import pandas as pd

    from .. import report
    from .. import trigger as trig
    from ..io import write_atomic

    curves = pd.concat(
        [
            trig.trigger_curves(
                cell.nets[k],
                cell.bits(k),
                cell.data,
                cell.options,
                cell.budget,
                cell.device,
                seed=cell.seed,
                max_examples=cell.max_examples,
                sample_seed=cell.sample_seed,
            ).assign(network=k)
            for k in PAIRS
        ],
        ignore_index=True,
    )
    write_atomic(out / "trigger.csv", curves.to_csv(index=False))
    report.plot_trigger(curves, out / "trigger.png")
    fp = 100 * cell.counts.f_D.FP / cell.counts.total
    radius = trig.trigger_radius(curves[curves.network == "f_D"], fp)
    table = curves.pivot_table(index=["family", "step"], columns="network", values="accuracy")
    shown = "never within the distances tried" if radius is None else f"{radius:.2f} bits"
    text = (
        "Accuracy (%) as each example's bits move from its own policy's allocation, the budget "
        f"held exactly. f_D recovers half of its drop after {shown} moved per example."
    )
    return Analysis(
        "Trigger narrowness", table.reset_index(), text, ["trigger.png"], TriggerFields(radius)
    )
