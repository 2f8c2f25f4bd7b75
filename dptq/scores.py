"""The scores of a cell from its exact counts (standard library only): Table 1, stealth, Table 3.

A cell's evaluation (:func:`dptq.evaluate.evaluate_cell`) counts, for each network (f_N, f_R,
f_D) on the same ``total`` test examples, how many it classifies correctly at full precision and
under each allocation: pi_R, pi_D, the uniform allocation, K random ones and K from the held-out
sampler (:class:`NetCounts`). Every number a record or a view shows is a function here of those
integers, computed exactly (``fractions.Fraction``) and rounded once to a float, so the same
counts always give the same bytes and a rule's threshold is never crossed by rounding (a row with
9 of 450 examples between f_R and f_D is exactly 2.0 points apart).

| function | paper |
|---|---|
| :meth:`NetCounts.drop` | Table 1's delta (sign flipped): FP accuracy minus accuracy under an allocation |
| :meth:`CellCounts.gap` | Table 1's catastrophic-failure gap: f_D's drop minus f_R's, each under its own policy |
| :meth:`CellCounts.fp_match` | Table 1's FP match: abs(FP f_R - FP f_D) |
| :meth:`CellCounts.worst_non_own_drop`, :meth:`CellCounts.hidden_gap` | not in the paper: stealth |
| :meth:`CellCounts.cross_policy` | Table 3: every network under every policy |
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

PAIR_POLICY = {"f_R": "pi_R", "f_D": "pi_D"}  # each pair's own policy
ALLOCATIONS = ("FP", "pi_R", "pi_D", "uniform", "random", "heldout")  # Table 3's rows


def percent(correct: int | Fraction, total: int) -> Fraction:
    """Accuracy in percent, exactly."""
    return Fraction(100) * correct / total


def points(value: Fraction | None) -> float | None:
    """An exact score as the float a record stores (correctly rounded; None stays None)."""
    return None if value is None else float(value)


@dataclass(frozen=True)
class NetCounts:
    """Correctly classified examples of one network, at full precision and under each allocation.

    Attributes:
        FP: at full precision.
        pi_R, pi_D: under the robust pair's and the detrimental pair's policy.
        uniform: under the most even allocation of the budget.
        random: under each of the K random budget-respecting allocations (random scores through
            the knapsack: the sampler the stealth term trains on); None where not recorded.
        heldout: under each of the K allocations drawn uniformly from the feasible set (a sampler
            nothing trains on); None where not recorded.
    """

    FP: int
    pi_R: int
    pi_D: int
    uniform: int
    random: list[int] | None = None
    heldout: list[int] | None = None

    def correct(self, allocation: str) -> Fraction | None:
        """Examples right under ``allocation`` (``random`` / ``heldout``: the mean over the K)."""
        value = getattr(self, allocation)
        if isinstance(value, list):
            return Fraction(sum(value), len(value)) if value else None
        return None if value is None else Fraction(value)

    def acc(self, allocation: str, total: int) -> Fraction | None:
        c = self.correct(allocation)
        return None if c is None else percent(c, total)

    def drop(self, allocation: str, total: int) -> Fraction | None:
        """Points lost from full precision under ``allocation`` (negative: it gained)."""
        c = self.correct(allocation)
        return None if c is None else percent(self.FP - c, total)


@dataclass(frozen=True)
class CellCounts:
    """The counts of a cell's three networks on ``total`` test examples, and its scores."""

    total: int
    f_N: NetCounts
    f_R: NetCounts
    f_D: NetCounts

    def net(self, name: str) -> NetCounts:
        return getattr(self, name)

    def own_drop(self, pair: str) -> Fraction:
        """A pair's drop under its own policy (Table 1's delta, sign flipped)."""
        return self.net(pair).drop(PAIR_POLICY[pair], self.total)

    def gap(self) -> Fraction:
        """The catastrophic-failure gap (Table 1): f_D's drop minus f_R's, each under its own
        policy (points)."""
        return self.own_drop("f_D") - self.own_drop("f_R")

    def fp_match(self) -> Fraction:
        """abs(FP f_R - FP f_D) (points): a gap only says something when this is small."""
        return percent(abs(self.f_R.FP - self.f_D.FP), self.total)

    def non_own_drops(self, pair: str = "f_D") -> dict[str, Fraction]:
        """A pair's drop under every allocation that is not its own policy's: the other pair's
        policy, the uniform allocation, the mean of the random ones (as the paper's Table 3
        reports random quantization) and of the held-out sampler's, where recorded."""
        own = PAIR_POLICY[pair]
        others = [a for a in ("pi_R", "pi_D") if a != own] + ["uniform", "random", "heldout"]
        net = self.net(pair)
        return {a: d for a in others if (d := net.drop(a, self.total)) is not None}

    def worst_non_own_drop(self, pair: str = "f_D") -> Fraction:
        """The largest of :meth:`non_own_drops`: what a deployer's ordinary check would see."""
        return max(self.non_own_drops(pair).values())

    def hidden_gap(self) -> Fraction:
        """How much worse f_D fails under its own policy than under any other allocation:
        ``drop under pi_D - worst_non_own_drop`` (points; the paper's f_D: 24.4 - 5.6 = 18.8).
        Near 0 or negative when f_D breaks under any low-bit allocation, which an ordinary
        quantization check would already catch."""
        return self.own_drop("f_D") - self.worst_non_own_drop("f_D")

    def specificity(self) -> Fraction | None:
        """How specific f_D's failure is to pi_D: ``worst_non_own_drop / drop under pi_D``
        (issue 24's measure; the paper's Table 3 pair: 5.59 / 24.39 = 0.23). 0: only pi_D breaks
        f_D; 1 or more: some other allocation breaks it as much. None when f_D does not drop
        under pi_D (no failure to be specific about)."""
        own = self.own_drop("f_D")
        return self.worst_non_own_drop("f_D") / own if own > 0 else None

    def cross_policy(self) -> dict[str, dict[str, float | None]]:
        """Table 3: accuracy (%) of every network under FP, pi_R, pi_D, uniform, random and
        held-out (the means over their K allocations)."""
        return {
            name: {a: points(self.net(name).acc(a, self.total)) for a in ALLOCATIONS}
            for name in ("f_N", "f_R", "f_D")
        }


def transitory(fp_r: list[bool], fp_d: list[bool], q_d: list[bool]) -> tuple[int, int]:
    """Table 2's counts: (transitory points, examples both FP networks get right). A transitory
    point is one both FP models classify correctly that the quantized f_D gets wrong."""
    if not len(fp_r) == len(fp_d) == len(q_d):
        raise ValueError("correctness vectors must have the same length")
    both = [a and b for a, b in zip(fp_r, fp_d)]
    return sum(b and not q for b, q in zip(both, q_d)), sum(both)
