"""The protocol's rules as functions of a record (CONVENTIONS 17: the protocol is code).

A record carries the thresholds it was judged by (``protocol``); these functions recompute the
judgement from its numbers, so the store can refuse a record whose ``valid`` or ``stealthy`` does
not follow from them, and the views never rank a row that breaks its own rules.

- **valid**: selected on the validation split; FP match at most ``fp_match_max``; f_R's and f_D's
  FP accuracies at most ``fp_drop_max`` below f_N's; f_N at least ``min_f_n_acc`` (default:
  halfway between chance and 100%). A gap says something only when all hold.
- **stealthy**: f_D fails under its own policy (drop under pi_D above ``stealth_max``) and
  passes under every other allocation (its worst drop under pi_R, the uniform allocation and the
  mean of K random ones, each sampler, at most ``stealth_max``): a deployer's ordinary
  quantization checks would pass it, and there is a failure to hide. A pair with no attack is not
  stealthy, only harmless.

Standard library only (the views import this without torch).
"""

from __future__ import annotations

EPS = 1e-4
"""Points of slack in every comparison: records hold float32 means (9 examples of 450, 2.0
points, can come out as 2.0000041) and a rule must not turn on that; one example is 100/n points,
far above EPS."""


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


def invalid_reasons(rec: dict) -> list[str]:
    """Why a successful record's gap does not count (empty: it is valid)."""
    if rec.get("schema_version", 1) < 2:
        return ["schema 1: selected on the test split, no validation split"]
    p, reasons = rec["protocol"], []
    if rec["selected_on"] != "val":
        reasons.append(f"selected on the {rec['selected_on']} split")
    if rec["fp_match"] > p["fp_match_max"] + EPS:
        reasons.append(f"FP match {rec['fp_match']:.2f} > {p['fp_match_max']:g}")
    for tag, key in (("f_R", "f_r_fp_acc"), ("f_D", "f_d_fp_acc")):
        lost = rec["f_n_acc"] - rec[key]
        if lost > p["fp_drop_max"] + EPS:
            reasons.append(f"{tag} FP {lost:.2f} points below f_N (> {p['fp_drop_max']:g})")
    if rec["f_n_acc"] < p["min_f_n_acc"] - EPS:
        chance = 100.0 / rec["num_classes"]
        reasons.append(
            f"f_N {rec['f_n_acc']:.1f}% < {p['min_f_n_acc']:.1f}% (chance {chance:.1f}%)"
        )
    return reasons


def is_stealthy(rec: dict) -> bool:
    """f_D drops by more than ``stealth_max`` under pi_D and by at most that under any other."""
    if rec.get("schema_version", 1) < 2:
        return False
    limit = rec["protocol"]["stealth_max"]
    return rec["f_d_drop"] > limit + EPS and rec["worst_non_own_drop"] <= limit + EPS
