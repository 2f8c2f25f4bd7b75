"""The protocol's rules as one function of a record (CONVENTIONS 17: the protocol is code).

A record carries the thresholds it was judged by (``protocol``) and its exact counts;
:func:`judge` recomputes the verdict from them. Everyone calls it: the record writes its
``valid``, ``invalid_reasons`` and ``stealthy`` from it, the store refuses a record whose stored
verdict differs, the views never rank a row it rejects. Comparisons are exact (fractions of the
test set), so a rule never turns on float rounding (9 examples of 450 are 2.0 points, exactly).

- **valid** (protocol v2, a record that names no version): selected on the validation split;
  FP match at most ``fp_match_max``; f_R's and f_D's FP accuracies at most ``fp_drop_max`` below
  f_N's; f_N at least ``min_f_n_acc`` (default: halfway between chance and 100%). A gap says
  something only when all hold. **Protocol v3** (the closed division's) drops the FP match rule:
  full precision is judged one-sided against f_N (a robust pair that gains accuracy is no fault),
  and |f_R - f_D| stays a reported figure.
- **selection** (:func:`selection_score`, v3 with ``search.objective: constrained``): the rules
  steer the choice of trial and epoch on the validation split, so a result is never found first
  and disqualified after.
- **stealthy**: f_D fails under its own policy (drop under pi_D above ``stealth_max``) and
  passes under every other allocation (its worst drop under pi_R, the uniform allocation and the
  mean of each sampler's K allocations, at most ``stealth_max``): a deployer's ordinary
  quantization checks would pass it, and there is a failure to hide. A pair with no attack is not
  stealthy, only harmless.
- **attacked**: f_D's drop under pi_D above ``attack_min`` (default 10 points): the search found
  an attack. A seed without one is the attacker's failure, not the architecture's robustness:
  the board counts it in the attack success (k of n seeds), never as a small gap.

Standard library only (the views import this without torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Verdict:
    valid: bool
    reasons: list[str]
    stealthy: bool
    attacked: bool


def default_min_f_n_acc(num_classes: int) -> float:
    """Halfway between chance (100 / classes) and 100%: digits 55%, Oxford-IIIT Pets 51.4%."""
    chance = 100.0 / max(num_classes, 1)
    return chance + (100.0 - chance) / 2


def resolve(protocol: dict, num_classes: int) -> dict:
    """The protocol as a record stores it: ``min_f_n_acc`` resolved to a number."""
    out = dict(protocol)
    if out.get("min_f_n_acc") is None:
        out["min_f_n_acc"] = default_min_f_n_acc(num_classes)
    return out


INFEASIBLE = -1000.0  # a selection score below this breaks full precision (selection_score)


def selection_score(mode: str, drop: float, fp_acc: float, f_n_acc: float, rules) -> float:
    """The closed division's selection on the validation split (protocol v3), larger is better.

    A pair *holds full precision* when its FP accuracy is at most ``fp_drop_max -
    select_margin`` points below f_N's (``rules``: the protocol; the margin leaves room for the
    test split's noise). Every pair that holds it ranks above every pair that does not; among
    those that hold it a detrimental pair scores its drop under its own policy (the validation
    gap up to the robust pair's drop, which is the same for every detrimental trial of a seed),
    a robust pair minus its drop; among those that do not, the smaller the shortfall beyond the
    bound, the better: ``INFEASIBLE - shortfall``. Used for every epoch of every trial
    (``search.select_epoch: best``) and between trials, so the selected pair is the one with
    the largest validation gap among those within the bounds.
    """
    shortfall = (f_n_acc - fp_acc) - (rules.fp_drop_max - rules.select_margin)
    if shortfall > 0:
        return INFEASIBLE - shortfall
    return drop if mode == "detrimental" else -drop


def version(rules) -> int:
    """The protocol version of a record's rules (2 where it names none)."""
    return getattr(rules, "version", 2) or 2


def judge(rec) -> Verdict:
    """The verdict on a successful record (:class:`bench.records.record.Record`) by its own protocol
    (v2 or v3: module docstring)."""
    p, c = rec.protocol, rec.counts()
    n, reasons = c.total, []
    if rec.selected_on != "val":
        reasons.append(f"selected on the {rec.selected_on} split")
    match = c.fp_match()
    if version(p) == 2 and match > Fraction(p.fp_match_max):
        reasons.append(f"FP match {float(match):.2f} > {p.fp_match_max:g}")
    for tag in ("f_R", "f_D"):
        lost = Fraction(100 * (c.f_N.FP - c.net(tag).FP), n)
        if lost > Fraction(p.fp_drop_max):
            reasons.append(f"{tag} FP {float(lost):.2f} points below f_N (> {p.fp_drop_max:g})")
    f_n = Fraction(100 * c.f_N.FP, n)
    if f_n < Fraction(p.min_f_n_acc):
        chance = 100.0 / rec.num_classes
        reasons.append(f"f_N {float(f_n):.1f}% < {p.min_f_n_acc:.1f}% (chance {chance:.1f}%)")
    limit, own = Fraction(p.stealth_max), c.own_drop("f_D")
    stealthy = own > limit and c.worst_non_own_drop("f_D") <= limit
    return Verdict(not reasons, reasons, stealthy, own > Fraction(p.attack_min))
