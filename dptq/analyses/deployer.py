"""The deployer's analyses (not in the paper).

| name | what | record fields |
|---|---|---|
| ``audit`` | a policy-only attack on f_N (:mod:`dptq.audit`) | :class:`AuditFields` |
| ``quantizer_transfer`` | each pair (and, after ``audit``, f_N under pi_A) under other activation quantizers (:mod:`dptq.transfer`) | :class:`TransferFields` |
| ``defenses`` | what a deployer can do without knowing which network is which (:mod:`dptq.defenses`) | :class:`DefenseFields` |

Counts are examples of the test split (``total``); every score is derived from them.
Torch-free at import (:mod:`dptq.analyses.registry`). One job: the deployer's three analyses,
each with the record fields it declares beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .registry import PAIRS, Analysis, TrainedCell, register_analysis


@dataclass(frozen=True)
class StarvedLayer:
    """A layer the adversary gives few bits: 1-based index, module name, mean bits."""

    layer: int
    name: str
    mean_bits: float


@dataclass(frozen=True)
class AuditFields:
    """f_N on ``total`` test examples: right at full precision (``fp``), under the adversarial
    policy pi_A, under the uniform allocation, under each random allocation (None where not
    recorded) and under the per-example oracle (None: not run); ``flipped``: right at FP, wrong
    under pi_A; ``mean_bits``: per layer under pi_A; ``starved``: the layers pi_A starves most."""

    total: int
    fp: int
    adversarial: int
    uniform: int
    random: list[int] | None
    oracle: int | None
    flipped: int
    mean_bits: list[float]
    starved: list[StarvedLayer]

    @property
    def policy_only_drop(self) -> float:
        """Points f_N loses under pi_A alone (its weights frozen)."""
        return 100 * (self.fp - self.adversarial) / self.total

    @property
    def oracle_drop(self) -> float | None:
        return None if self.oracle is None else 100 * (self.fp - self.oracle) / self.total


@dataclass(frozen=True)
class SchemeLoss:
    """One activation quantizer: the test examples each network (f_R, f_D, and f_N under pi_A
    when the audit ran) loses from full precision under its own bits (FP correct minus quantized
    correct)."""

    scheme: str
    lost: dict[str, int]


@dataclass(frozen=True)
class TransferFields:
    """Every quantizer scheme, in the order measured (ties go to the earlier one), of ``total``
    test examples."""

    total: int
    schemes: list[SchemeLoss]

    def gap(self, scheme: str) -> float:
        """f_D's drop minus f_R's under ``scheme`` (points)."""
        row = next(r.lost for r in self.schemes if r.scheme == scheme)
        return 100 * (row["f_D"] - row["f_R"]) / self.total

    def _gaps(self) -> list[tuple[int, str]]:
        return [(r.lost["f_D"] - r.lost["f_R"], r.scheme) for r in self.schemes]

    @property
    def gap_min_scheme(self) -> str:
        """The scheme that shrinks the gap most (the first of equals)."""
        low = min(g for g, _ in self._gaps())
        return next(s for g, s in self._gaps() if g == low)

    @property
    def gap_max_scheme(self) -> str:
        """The scheme that widens it most (the first of equals)."""
        high = max(g for g, _ in self._gaps())
        return next(s for g, s in self._gaps() if g == high)


@dataclass(frozen=True)
class DefenseRow:
    """One defense applied to both networks: examples each loses to quantization afterwards
    (FP correct minus quantized correct) and f_D's full-precision correct count afterwards."""

    name: str
    f_r_lost: int
    f_d_lost: int
    f_d_fp: int


@dataclass(frozen=True)
class DefenseFields:
    """Every defense (``none`` first), in the order measured, of ``total`` test examples; the best
    one is the defense leaving the smallest gap (ties: the earlier one) among those costing f_D at
    most ``fp_cost_max`` points at full precision."""

    total: int
    fp_cost_max: float
    rows: list[DefenseRow]

    def row(self, name: str) -> DefenseRow:
        return next(r for r in self.rows if r.name == name)

    def gap(self, name: str) -> float:
        r = self.row(name)
        return 100 * (r.f_d_lost - r.f_r_lost) / self.total

    def fp_cost(self, name: str) -> float:
        return 100 * (self.row("none").f_d_fp - self.row(name).f_d_fp) / self.total

    @property
    def best(self) -> str | None:
        from fractions import Fraction

        limit, fp = Fraction(self.fp_cost_max), self.row("none").f_d_fp
        ok = [
            r
            for r in self.rows
            if r.name != "none" and Fraction(100 * (fp - r.f_d_fp), self.total) <= limit
        ]
        best = min(ok, key=lambda r: r.f_d_lost - r.f_r_lost, default=None)  # first of equals
        return None if best is None else best.name

    @property
    def best_gap(self) -> float | None:
        return None if self.best is None else self.gap(self.best)


@register_analysis("audit", fields=AuditFields)
def audit(cell: TrainedCell, out: Path) -> Analysis:
    """A policy-only attack on f_N: the worst allocation an adversarial policy finds."""
    import torch

    from ..audit import AuditConfig, audit_scores, train_adversary
    from ..engine import RunOptions

    f_n = cell.nets["f_N"]
    cfg = cell.audit or AuditConfig()
    run = RunOptions(seed=cell.seed, progress=False)
    with torch.enable_grad():
        policy, _ = train_adversary(
            f_n,
            cell.data,
            cell.options,
            cell.budget,
            cfg,
            None,
            run,
            cell.accelerator(),
            cell.policy,
            cell.policy_options,
        )
    scores = audit_scores(
        f_n,
        policy,
        cell.data,
        cell.options,
        cell.budget,
        cell.device,
        cell.seed,
        cell.random_allocations,
        cfg=cfg,
    )
    result = audit_analysis(f_n, policy, scores, cell, out)
    result.extras["policy"] = policy
    return result


def audit_analysis(
    f_n, policy, scores: dict, cell: TrainedCell, out: Path, name: str = "f_N"
) -> Analysis:
    """The audit's report section and record fields (shared with ``bench audit``)."""
    import torch

    from .. import report, sweeps
    from ..audit import audit_table, starved_layers
    from ..evaluate import own_policy_bits, uniform_policy_bits
    from ..io import write_atomic

    uniform = uniform_policy_bits(f_n.num_layers, cell.options, cell.budget)
    uni = uniform(torch.zeros(1, 3, 8, 8, device=cell.device))[0].float().tolist()
    report.plot_bits_per_layer(
        scores["mean_bits"],
        uni,
        out / "audit_bits.png",
        f"Audit: bits per layer the adversary gives (budget {cell.budget})",
    )
    sweep = sweeps.layer_sweep(
        f_n,
        own_policy_bits(policy, cell.options, cell.budget),
        cell.data,
        cell.device,
        splits=("test",),
        max_examples=cell.max_examples,
        sample_seed=cell.sample_seed,
        max_layers=cell.sweep_layers,
    ).assign(network=f"{name} under pi_A")
    write_atomic(out / "audit_sweep.csv", sweep.to_csv(index=False))
    report.plot_layer_sweep(sweep, out / "audit_sweep.png", "Audit: layer sweep under pi_A")
    starved = [StarvedLayer(**s) for s in starved_layers(scores["mean_bits"], f_n.layer_names)]
    fields = AuditFields(
        **{k: scores[k] for k in ("total", "fp", "adversarial", "uniform", "random", "oracle")},
        flipped=scores["flipped"],
        mean_bits=scores["mean_bits"],
        starved=starved,
    )
    names = ", ".join(f"{s.layer} ({s.name}, {s.mean_bits:.2f} bits)" for s in starved)
    lowest = min(cell.options)
    at_min = sum(b <= lowest + 1e-9 for b in scores["mean_bits"])
    right = max(fields.fp, 1)
    text = (
        f"An adversarial policy pi_A alone (network frozen) at the exact budget: the drop is "
        f"{fields.policy_only_drop:.2f} points; {fields.flipped} test examples "
        f"({100 * fields.flipped / right:.2f}% of those right at full precision) flip. "
        f"Layers it starves most: {names}; {at_min} of {len(scores['mean_bits'])} layers "
        f"always get the lowest option ({lowest} bits)."
    )
    if fields.oracle_drop is not None:
        text += (
            f" Searching each test example's own allocation instead (an attacker not limited to "
            f"a policy; the true worst case is at least this bad): {fields.oracle_drop:.2f} points."
        )
    bits = "".join("1" if v else "0" for v in scores["adversarial_correct"].tolist())
    return Analysis(
        f"Audit: a policy-only attack on {name}",
        audit_table(scores),
        text,
        ["audit_bits.png", "audit_sweep.png"],
        fields,
        per_example={"pi_A": bits},
    )


@register_analysis("quantizer_transfer", fields=TransferFields, uses=("audit",))
def quantizer_transfer(cell: TrainedCell, out: Path) -> Analysis:
    """Each pair's gap under six activation quantizers (f_N under pi_A when audited)."""
    from .. import report
    from ..evaluate import own_policy_bits
    from ..io import write_atomic
    from ..transfer import SCHEMES, gap_by_scheme, transfer_matrix

    nets = {k: (cell.nets[k], cell.bits(k)) for k in PAIRS}
    if "audit" in cell.results:
        adv = own_policy_bits(cell.results["audit"].extras["policy"], cell.options, cell.budget)
        nets["f_N"] = (cell.nets["f_N"], adv)
    frame = transfer_matrix(nets, cell.data, cell.device, seed=cell.sample_seed)
    write_atomic(out / "transfer.csv", frame.to_csv(index=False))
    table = gap_by_scheme(frame)
    report.plot_grouped(
        table,
        out / "transfer.png",
        "Quantizer transfer: drop under each network's own bits (f_N: under pi_A)",
        "drop (points)",
    )
    lost: dict[str, dict[str, int]] = {}
    for r in frame.itertuples():
        lost.setdefault(r.scheme, {})[r.network] = int(r.fp_correct - r.q_correct)
    ordered = [SchemeLoss(k, lost[k]) for k in SCHEMES if k in lost]
    fields = TransferFields(int(frame.total.iloc[0]), ordered)
    text = "Schemes: " + "; ".join(f"``{k}``: {v}" for k, v in SCHEMES.items()) + "."
    return Analysis(
        "Quantizer transfer (drop in points, own bits)", table, text, ["transfer.png"], fields
    )


@register_analysis("defenses", fields=DefenseFields)
def defenses(cell: TrainedCell, out: Path) -> Analysis:
    """Fine-tuning, weight noise, percentile scaling and ignoring the policy, on both networks."""
    import torch

    from .. import report
    from ..defenses import DefenseConfig, defense_table
    from ..evaluate import uniform_policy_bits
    from ..io import write_atomic

    pairs = {k: (cell.nets[k], cell.bits(k)) for k in PAIRS}
    uniform = uniform_policy_bits(cell.nets["f_D"].num_layers, cell.options, cell.budget)
    cfg = cell.defenses or DefenseConfig()
    with torch.enable_grad():
        table = defense_table(pairs, uniform, cell.data, cfg, cell.device, cell.seed)
    shown = table[[c for c in table.columns if not c.endswith("correct") and c != "total"]]
    write_atomic(out / "defenses.csv", shown.to_csv())
    report.plot_grouped(
        table[["gap", "FP cost"]],
        out / "defenses.png",
        "Defenses: the gap that remains and f_D's full-precision cost",
        "points",
    )
    rows = [
        DefenseRow(
            str(d),
            int(r["f_R FP correct"] - r["f_R quantized correct"]),
            int(r["f_D FP correct"] - r["f_D quantized correct"]),
            int(r["f_D FP correct"]),
        )
        for d, r in table.iterrows()
    ]
    fields = DefenseFields(int(table["total"].iloc[0]), cell.fp_cost_max, rows)
    best = fields.best
    text = (
        f"Applied alike to f_R and f_D. Best defense costing f_D at most {cell.fp_cost_max:g} "
        f"points at full precision: {best or 'none qualifies'}"
        + (f" (remaining gap {fields.best_gap:.2f})." if best else ".")
    )
    return Analysis("Defenses (points)", shown, text, ["defenses.png"], fields)
