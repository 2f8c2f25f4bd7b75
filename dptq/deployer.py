"""The deployer's analyses (not in the paper), registered after the paper's ones.

``audit``: a policy-only attack on f_N (:mod:`dptq.audit`); ``quantizer_transfer``: each pair (and
the audited f_N) under other activation quantizers (:mod:`dptq.transfer`); ``defenses``: what a
deployer can do to a cell without knowing which network is which (:mod:`dptq.defenses`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import metrics, report
from .analyses import PAIRS, Analysis, TrainedCell, register_analysis
from .audit import audit_scores, audit_table, starved_layers, train_adversary
from .defenses import best_defense, defense_table
from .engine import RunOptions, make_accelerator
from .evaluate import own_policy_bits, uniform_policy_bits
from .io import write_atomic
from .transfer import SCHEMES, gap_by_scheme, transfer_matrix


@register_analysis("audit")
def audit(cell: TrainedCell, out: Path) -> Analysis:
    f_n = cell.nets["f_N"]
    run = RunOptions(seed=cell.seed, cpu=cell.device == "cpu", progress=False)
    acc = make_accelerator(run)
    with torch.enable_grad():
        policy, _ = train_adversary(
            f_n,
            cell.data,
            cell.options,
            cell.budget,
            cell.audit,
            None,
            run,
            acc,
            cell.policy,
            cell.policy_options,
        )
    cell.extras["audit_policy"] = policy
    scores = audit_scores(
        f_n,
        policy,
        cell.data,
        cell.options,
        cell.budget,
        acc,
        cell.seed,
        cell.random_allocations,
        cfg=cell.audit,
    )
    return audit_analysis(f_n, policy, scores, cell, out)


def audit_analysis(
    f_n, policy, scores: dict, cell: TrainedCell, out: Path, name: str = "f_N"
) -> Analysis:
    """The audit's report section and record fields (shared with ``bench audit``)."""
    uniform = uniform_policy_bits(f_n.num_layers, cell.options, cell.budget)
    uni = uniform(torch.zeros(1, 3, 8, 8, device=cell.device))[0].float().tolist()
    report.plot_bits_per_layer(
        scores["mean_bits"],
        uni,
        out / "audit_bits.png",
        f"Audit: bits per layer the adversary gives (budget {cell.budget})",
    )
    sweep = metrics.layer_sweep(
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
    starved = starved_layers(scores["mean_bits"], f_n.layer_names)
    names = ", ".join(f"{s['layer']} ({s['name']}, {s['mean_bits']:.2f} bits)" for s in starved)
    lowest = min(cell.options)
    at_min = sum(b <= lowest + 1e-9 for b in scores["mean_bits"])
    text = (
        f"An adversarial policy pi_A alone (network frozen) at the exact budget: the drop is "
        f"{scores['policy_only_drop']:.2f} points; {scores['flipped']} test examples "
        f"({scores['flipped_rate_fp_correct']:.2f}% of those right at full precision) flip. "
        f"Layers it starves most: {names}; {at_min} of {len(scores['mean_bits'])} layers "
        f"always get the lowest option ({lowest} bits)."
    )
    keep = ("fp_acc", "adv_acc", "uniform_acc", "random_mean", "random_sd", "flipped_rate_test")
    keep += tuple(k for k in ("oracle_acc", "oracle_drop") if k in scores)
    if "oracle_drop" in scores:
        text += (
            f" Searching each test example's own allocation instead (an attacker not limited to "
            f"a policy; the true worst case is at least this bad): "
            f"{scores['oracle_drop']:.2f} points."
        )
    record = {
        "policy_only_drop": scores["policy_only_drop"],
        "audit": {
            **{k: scores[k] for k in keep},
            "mean_bits": scores["mean_bits"],
            "starved": starved,
        },
    }
    return Analysis(
        f"Audit: a policy-only attack on {name}",
        audit_table(scores),
        text,
        ["audit_bits.png", "audit_sweep.png"],
        record,
    )


@register_analysis("quantizer_transfer")
def quantizer_transfer(cell: TrainedCell, out: Path) -> Analysis:
    nets = {k: (cell.nets[k], cell.bits(k)) for k in PAIRS}
    if "audit_policy" in cell.extras:
        adv = own_policy_bits(cell.extras["audit_policy"], cell.options, cell.budget)
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
    lo, hi = table["gap"].idxmin(), table["gap"].idxmax()
    text = "Schemes: " + "; ".join(f"``{k}``: {v}" for k, v in SCHEMES.items()) + "."
    record = {
        "quantizer_transfer": {
            s: {c.replace(" ", "_"): float(v) for c, v in row.items()}
            for s, row in table.to_dict("index").items()
        },
        "transfer_gap_min": float(table.loc[lo, "gap"]),
        "transfer_gap_min_scheme": lo,
        "transfer_gap_max": float(table.loc[hi, "gap"]),
        "transfer_gap_max_scheme": hi,
    }
    return Analysis(
        "Quantizer transfer (drop in points, own bits)", table, text, ["transfer.png"], record
    )


@register_analysis("defenses")
def defenses(cell: TrainedCell, out: Path) -> Analysis:
    pairs = {k: (cell.nets[k], cell.bits(k)) for k in PAIRS}
    uniform = uniform_policy_bits(cell.nets["f_D"].num_layers, cell.options, cell.budget)
    with torch.enable_grad():
        table = defense_table(pairs, uniform, cell.data, cell.defenses, cell.device, cell.seed)
    write_atomic(out / "defenses.csv", table.to_csv())
    report.plot_grouped(
        table[["gap", "FP cost"]],
        out / "defenses.png",
        "Defenses: the gap that remains and f_D's full-precision cost",
        "points",
    )
    best, best_gap = best_defense(table, cell.fp_cost_max)
    text = (
        f"Applied alike to f_R and f_D. Best defense costing f_D at most {cell.fp_cost_max:g} "
        f"points at full precision: {best or 'none qualifies'}"
        + (f" (remaining gap {best_gap:.2f})." if best else ".")
    )
    record = {
        "defenses": {
            d: {
                "gap": float(r["gap"]),
                "fp_cost": float(r["FP cost"]),
                "f_d_drop": float(r["f_D drop"]),
                "f_r_drop": float(r["f_R drop"]),
            }
            for d, r in table.iterrows()
        },
        "best_defense": best,
        "best_defense_gap": best_gap,
    }
    return Analysis("Defenses (points)", table, text, ["defenses.png"], record)
