"""Exact-budget multiple-choice knapsack (MCKP), Eq. 11-14 and Sect. 3.4 of Frank & Ardis 2025.

Each of the L quantizable layers is a group; each group offers the same O bit-width options with
weight = bit-width and profit = the policy's score. We pick one option per layer so that the bits
sum **exactly** to the budget C (the paper's Eq. 12 says "<= C" and then chooses C so the sum is
exact; we enforce equality directly) and the summed scores are maximal.

The dynamic programme runs over layers with the whole batch as one tensor (no Python loop over
examples), on the scores' device. Hand-written because no library solves batched MCKP with
equality on a GPU; scipy's MILP is used only as the independent reference in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

import torch


def _reduce(options: Sequence[int], budget: int, num_layers: int) -> tuple[list[int], int, int]:
    """Shift weights to start at 0 and divide by their gcd: (unit weights, unit capacity, gcd)."""
    lo = min(options)
    shifted = [w - lo for w in options]
    g = math.gcd(*shifted) or 1
    return [w // g for w in shifted], (budget - num_layers * lo), g


@lru_cache(maxsize=256)
def _feasible(options: tuple[int, ...], budget: int, num_layers: int) -> str | None:
    """Why ``budget`` cannot be met exactly with one option per layer, or None if it can."""
    if len(set(options)) != len(options):
        return f"bit options must be distinct, got {list(options)}"
    lo, hi = min(options), max(options)
    if not num_layers * lo <= budget <= num_layers * hi:
        return (
            f"budget {budget} is outside [{num_layers * lo}, {num_layers * hi}] "
            f"(L={num_layers} layers x options {lo}..{hi})"
        )
    units, cap, g = _reduce(options, budget, num_layers)
    if cap % g:
        return f"budget {budget} is not reachable: with options {list(options)} sums step by {g}"
    cap //= g
    reach = 1  # bit c set <=> sum c reachable (Python int as a bitset)
    for _ in range(num_layers):
        reach = _or_shifts(reach, units, cap)
    if not (reach >> cap) & 1:
        return f"budget {budget} is not reachable with options {list(options)} over {num_layers} layers"
    return None


def _or_shifts(reach: int, units: list[int], cap: int) -> int:
    out = 0
    for u in units:
        out |= reach << u
    return out & ((1 << (cap + 1)) - 1)


def check_budget(options: Sequence[int], budget: int, num_layers: int) -> None:
    """Raise ``ValueError`` (one line, saying why) if no bit vector sums exactly to ``budget``."""
    reason = _feasible(tuple(int(o) for o in options), int(budget), int(num_layers))
    if reason:
        raise ValueError(reason)


def solve_hard(scores: torch.Tensor, options: Sequence[int], budget: int) -> torch.Tensor:
    """Exact MCKP (Eq. 11-14 with equality) for a batch: one-hot selection ``[B, L, O]``.

    ``scores`` is ``[B, L, O]`` (profits; logits or probabilities). The DP value table holds, for
    every example and every reachable partial sum c, the best score of the layers seen so far; the
    argmax option per (example, layer, c) is kept and followed back from c = C.
    """
    if scores.dim() != 3 or scores.shape[-1] != len(options):
        raise ValueError(f"scores must be [B, L, {len(options)}], got {list(scores.shape)}")
    batch, num_layers, num_opts = scores.shape
    check_budget(options, budget, num_layers)
    if not torch.isfinite(scores).all():
        raise ValueError("knapsack scores contain NaN or inf")
    units, cap, g = _reduce(options, budget, num_layers)
    cap //= g
    scores = scores.detach().float()
    device = scores.device
    neg = torch.finfo(torch.float32).min / 4  # finite "-inf": keeps arithmetic NaN-free
    # Max-plus convolution: new[c] = max_k padded[c + k] + prof[k], with k = pad - unit weight and
    # ``padded`` the value table shifted right by ``pad``; ``unfold`` gives the windows as a view.
    pad = max(units)
    prof = torch.full((batch, num_layers, pad + 1), neg, device=device)
    prof[:, :, [pad - u for u in units]] = scores
    k_to_opt = torch.zeros(pad + 1, dtype=torch.long, device=device)
    k_to_opt[[pad - u for u in units]] = torch.arange(num_opts, device=device)
    padded = torch.full((batch, pad + cap + 1), neg, device=device)
    padded[:, pad] = 0
    choice = torch.zeros((num_layers, batch, cap + 1), dtype=torch.uint8, device=device)
    for layer in range(num_layers):
        # only sums reachable after this layer that can still reach the budget
        lo = max(0, cap - (num_layers - layer - 1) * pad)
        hi = min(cap, (layer + 1) * pad)
        windows = padded[:, lo : hi + pad + 1].unfold(1, pad + 1, 1)  # [B, hi - lo + 1, pad + 1]
        best, k = (windows + prof[:, layer, None, :]).max(dim=2)
        choice[layer, :, lo : hi + 1] = k
        padded[:, pad + lo : pad + hi + 1] = best
        if lo:
            padded[:, pad : pad + lo] = neg
    # follow the choices back from the full budget
    c = torch.full((batch, 1), cap, dtype=torch.long, device=device)
    ks = torch.empty((batch, num_layers), dtype=torch.long, device=device)
    for layer in range(num_layers - 1, -1, -1):
        k = choice[layer].gather(1, c).long()
        ks[:, layer : layer + 1] = k
        c = c + k - pad
    picks = k_to_opt[ks]
    return torch.nn.functional.one_hot(picks, num_opts).to(scores.dtype)


def solve(scores: torch.Tensor, options: Sequence[int], budget: int) -> torch.Tensor:
    """Budgeted selection with the straight-through estimator of Sect. 3.4.

    Forward: the exact one-hot MCKP selection G. Backward (when ``scores`` requires grad): the
    gradient goes to ``scores`` unchanged, i.e. ``(G - p).detach() + p``. Read bit-widths with
    :func:`bits`, which uses the hard selection, never the value of this sum (for large scores
    ``(G - p) + p`` is not exactly G in floating point).
    """
    hard = solve_hard(scores, options, budget).to(scores.dtype)
    if not scores.requires_grad:
        return hard
    return (hard - scores).detach() + scores


def bits(selection: torch.Tensor, options: Sequence[int]) -> torch.Tensor:
    """Bit-widths ``[B, L]`` (int64) of a selection ``[B, L, O]``."""
    table = torch.as_tensor(list(options), device=selection.device)
    return table[selection.detach().argmax(dim=-1)]


def random_scores(
    batch: int,
    num_layers: int,
    num_options: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Scores for the random budget-respecting baseline policy (i.i.d. uniform per entry).

    Through :func:`solve_hard` every bit vector sums to the budget; the distribution over feasible
    vectors is that induced by random profits, not uniform over the feasible set.
    """
    return torch.rand((batch, num_layers, num_options), generator=generator).to(device)


def uniform_scores(
    batch: int, num_layers: int, options: Sequence[int], budget: int
) -> torch.Tensor:
    """Scores whose knapsack optimum is the most even allocation (the "uniform" baseline).

    Profit ``-(w - C/L)^2`` per layer: the selection puts every layer as close as the options and
    the exact budget allow to the average ``C / L`` bits.
    """
    w = torch.tensor(list(options), dtype=torch.float32)
    prof = -((w - budget / num_layers) ** 2)
    # a tiny layer-dependent tie-break keeps the allocation deterministic
    tie = torch.linspace(0, 1e-3, num_layers)[:, None] * w[None, :]
    return (prof[None, :] + tie).expand(batch, num_layers, len(options)).contiguous()


def _ways(options: tuple[int, ...], budget: int, num_layers: int) -> list[list[int]]:
    """``ways[l][c]``: how many choices for layers l..L-1 sum to c (exact Python integers)."""
    ways = [[0] * (budget + 1) for _ in range(num_layers + 1)]
    ways[num_layers][0] = 1
    for layer in range(num_layers - 1, -1, -1):
        nxt, row = ways[layer + 1], ways[layer]
        for c in range(budget + 1):
            row[c] = sum(nxt[c - w] for w in options if w <= c)
    return ways


@lru_cache(maxsize=256)
def _ways_cached(options: tuple[int, ...], budget: int, num_layers: int) -> list[list[int]]:
    return _ways(options, budget, num_layers)


def count_allocations(options: Sequence[int], budget: int, num_layers: int) -> int:
    """How many bit vectors (one option per layer) sum exactly to ``budget``: a DP over layers.

    1 means the cell is degenerate: every example gets the same bits, no policy has a choice.
    """
    opts = tuple(sorted({int(o) for o in options}))
    if budget < 0 or num_layers < 1:
        return 0
    return _ways_cached(opts, int(budget), int(num_layers))[0][int(budget)]


def floor_probability(
    options: Sequence[int], budget: int, num_layers: int, k: int = 1, every: bool = False
) -> Fraction:
    """The probability that at least one of ``k`` given layers (``every``: all ``k`` at once) sits
    at the floor (the smallest option) under an allocation drawn uniformly from every one that
    meets the budget (the held-out sampler, :func:`sample_allocations`); exact.

    Counted by the DP of :func:`count_allocations`: all ``k`` at the floor leaves the other
    ``L - k`` layers ``budget - k x floor``; none of them at the floor means the ``k`` layers take
    the other options (summing to some ``c``) while the rest make up ``budget - c``. Issue 24's
    law: f_D's mean drop under that sampler is about the probability that its trigger is hit x
    its drop under pi_D (single-layer triggers: any of them; a joint trigger: every one).
    """
    opts = tuple(sorted({int(o) for o in options}))
    if not 0 <= k <= num_layers:
        raise ValueError(f"k: must lie in 0..{num_layers} layers, got {k}")
    total = count_allocations(opts, budget, num_layers)
    if total == 0:
        raise ValueError(f"budget {budget}: no allocation of {num_layers} layers meets it")
    rest = num_layers - k

    def ways(o, b, n):  # allocations of n layers from options o summing to b (n = 0: one, b = 0)
        return count_allocations(o, b, n) if n else int(b == 0)

    if every:
        return Fraction(ways(opts, budget - k * opts[0], rest), total)
    if k == 0:
        return Fraction(0)
    above = opts[1:]
    none = (
        sum(
            ways(above, c, k) * ways(opts, budget - c, rest)
            for c in range(k * above[0], k * above[-1] + 1)
        )
        if above
        else 0
    )
    return 1 - Fraction(none, total)


def sample_allocations(
    options: Sequence[int], budget: int, num_layers: int, n: int, rng
) -> torch.Tensor:
    """``n`` bit vectors ``[n, L]`` drawn uniformly from every vector that meets the budget.

    Exact: layer by layer, option o is taken with probability (ways to finish with the rest) /
    (ways from here), from the counting DP of :func:`count_allocations`; ``rng`` is a seeded
    ``random.Random`` (exact big-integer draws). A different distribution from the random-score
    policy (:func:`random_scores` through the knapsack), which favours some vectors.
    """
    opts = tuple(sorted({int(o) for o in options}))
    check_budget(opts, budget, num_layers)
    ways = _ways_cached(opts, int(budget), int(num_layers))
    out = torch.empty((n, num_layers), dtype=torch.long)
    for i in range(n):
        c = int(budget)
        for layer in range(num_layers):
            r = rng.randrange(ways[layer][c])
            for w in opts:
                k = ways[layer + 1][c - w] if w <= c else 0
                if r < k:
                    out[i, layer] = w
                    c -= w
                    break
                r -= k
    return out


def nearest_allocation(targets: torch.Tensor, options: Sequence[int], budget: int) -> torch.Tensor:
    """The exact-budget bit vectors ``[B, L]`` closest (squared error) to real-valued ``targets``.

    The knapsack with profit ``-(w - target_l)^2`` per layer: rounds e.g. a blend of two
    allocations, or an allocation plus noise, to one that still sums exactly to ``budget``.
    """
    w = torch.tensor(list(options), dtype=torch.float32, device=targets.device)
    scores = -((w[None, None, :] - targets.float()[..., None]) ** 2)
    return bits(solve_hard(scores, options, budget), options)


def budget_from_average(avg_bits: float, num_layers: int) -> int:
    """Absolute budget from an average bit-width (the paper's budgets are about 4, 5.5, 7 x L)."""
    return int(round(avg_bits * num_layers))
