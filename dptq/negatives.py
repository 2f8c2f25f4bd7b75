"""The allocations a detrimental pair's stealth term trains on: not the pair's own (issue 13),
and hard negatives built from its own (issue 24). Not in the paper.

| kind | the bits |
|---|---|
| ``random`` | budget-respecting random allocations (the sampler the evaluation uses) |
| ``uniform`` | the most even allocation |
| ``robust_policy`` | the frozen pi_R of the same cell |
| ``own_partial`` | pi_D's allocation, a random half of its floor layers raised off the floor |
| ``own_floor`` | every one of pi_D's floor layers kept at the floor, the rest of the budget random |
| ``own_single`` | one of pi_D's floor layers at its bits, the rest at the largest option (off budget) |
| ``own_single_low`` | the same with one of pi_D's layers at its two smallest options |
| ``own_single_any`` | the same with any layer, floored or not (a trigger one bit above the floor too) |

Every draw is the global batch's, so data-parallel workers give one process's bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch
from torch import nn

from . import knapsack

# the own_single probes: how many of the smallest options a probed layer of pi_D's sits at
# (0: any option, so any layer)
SINGLE_LEVELS = {"own_single": 1, "own_single_low": 2, "own_single_any": 0}


def _rank_world() -> tuple[int, int]:
    """This process's rank and the world size of data-parallel training ((0, 1) without it)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def share_bounds(total: int, shares: Sequence[float]) -> list[int]:
    """The first row of each kind in a batch of ``total`` rows split in proportion to
    ``shares`` (in order), then ``total``: ``floor(total * (s_1 + .. + s_i) / sum(s))``, in
    exact rational arithmetic so that equal shares give ``i * total // k``, the even split."""
    exact = [Fraction(s) for s in shares]
    whole, run, out = sum(exact), Fraction(0), [0]
    for s in exact:
        run += s
        out.append(math.floor(total * run / whole))
    return out


def non_own_bits(
    x: torch.Tensor,
    kinds: Sequence[str],
    options: tuple[int, ...],
    budget: int,
    num_layers: int,
    robust_policy: nn.Module | None = None,
    own_bits: torch.Tensor | None = None,
    shares: Sequence[float] = (),
) -> torch.Tensor:
    """Bit vectors ``[B, L]`` that are not the pair's own: the batch split (in order) between
    ``kinds`` (:data:`dptq.pair.NonOwn`) in proportion to ``shares`` (empty: evenly,
    :func:`share_bounds`), each allocation over ``options``; random ones are drawn from torch's
    global generator (seeded and checkpointed with the training loop). ``own_bits`` (``[B, L]``,
    the pair's own allocation of ``x``) is what the ``own_*`` kinds start from (an ``own_partial``
    or ``own_floor`` row can come out as pi_D's own allocation where the budget leaves the other
    layers little choice; at the paper's cells, 20 layers, that is vanishingly rare).

    In data-parallel training ``x`` is this worker's shard of the global batch (Accelerate's
    ``split_batches``: rank r holds rows r*B .. (r+1)*B - 1): the split and the random draws are
    the global batch's, each worker taking its rows, so N workers give one process's bits."""
    rank, world = _rank_world()
    n = x.shape[0]
    total, first = n * world, rank * n
    if shares and len(shares) != len(kinds):
        raise ValueError(f"{len(shares)} shares for {len(kinds)} kinds of allocation")
    bounds = share_bounds(total, shares or [1] * len(kinds))
    parts = []
    for i, kind in enumerate(kinds):
        lo, hi = bounds[i], bounds[i + 1]  # this kind's rows of the global batch
        a, b = max(lo, first), min(hi, first + n)  # ... and of this worker's shard
        if hi <= lo:
            continue
        rows = slice(max(a - lo, 0), max(b - lo, 0))  # this shard's of the kind's global rows
        mine = slice(a - first, max(a, b) - first)  # the same rows of this shard
        if kind.startswith("own") and own_bits is None:
            raise ValueError(f"stealth_allocations {kind!r} needs the pair's own bits")
        if kind in SINGLE_LEVELS:  # drawn for the global rows, as every worker draws them
            pick = torch.rand(hi - lo).to(x.device)[rows]
            if len(pick):
                levels = SINGLE_LEVELS[kind] or len(options)
                parts.append(single_own_bits(own_bits[mine], pick, options, levels))
            continue
        if kind in ("random", "own_partial", "own_floor"):  # drawn for the kind's global rows,
            # as every worker draws them, then this shard's
            scores = knapsack.random_scores(hi - lo, num_layers, len(options), None, x.device)
            scores = scores[rows]
            if kind != "random":  # own_partial: a random half of pi_D's floor layers kept;
                # own_floor: keep < 0.5 everywhere, all of them kept
                if kind == "own_partial":
                    keep = torch.rand(hi - lo, num_layers).to(x.device)[rows]
                else:
                    keep = torch.zeros(own_bits[mine].shape, device=x.device)
                scores = partial_own_scores(scores, own_bits[mine], keep, options)
        elif b <= a:
            continue
        elif kind == "uniform":
            scores = knapsack.uniform_scores(b - a, num_layers, options, budget).to(x.device)
        else:
            if robust_policy is None:
                raise ValueError(
                    "stealth_allocations 'robust_policy' needs the robust pair's policy"
                )
            with torch.no_grad():
                scores = robust_policy.eval()(x[mine])
        if len(scores):
            parts.append(knapsack.bits(knapsack.solve_hard(scores, options, budget), options))
    return torch.cat(parts)


def partial_own_scores(
    scores: torch.Tensor, own_bits: torch.Tensor, keep: torch.Tensor, options: tuple[int, ...]
) -> torch.Tensor:
    """Scores ``[B, L, O]`` whose knapsack optimum keeps the own allocation's floor layers where
    ``keep < 0.5`` at the floor and moves the others off it (the ``own_partial`` hard
    negatives; ``scores``: random, for the rest of the budget). A margin of ``L + 1`` outweighs
    every random score (each below 1), so the exact-budget optimum honours the constraint
    whenever the budget allows it; ``keep`` all below 0.5 keeps every floor layer there (the
    ``own_floor`` negatives: a trigger must then need more than pi_D's floor layers). Not in the
    paper (issue 24)."""
    floor = own_bits == min(options)
    margin = float(scores.shape[1] + 1)
    shift = torch.where(keep < 0.5, margin, -margin) * floor
    out = scores.clone()
    out[..., options.index(min(options))] += shift
    return out


def single_own_bits(
    own_bits: torch.Tensor, pick: torch.Tensor, options: tuple[int, ...], levels: int = 1
) -> torch.Tensor:
    """Bits ``[B, L]``: every layer at the largest option but one, which keeps the own
    allocation's bits; that one is the own allocation's ``floor(pick * n)``-th layer among the
    ``n`` at its ``levels`` smallest options (1: its floor layers; any layer when it has none,
    or when ``levels`` covers every option), ``pick`` uniform in [0, 1). The ``own_single``
    probes and their wider kin (:data:`SINGLE_LEVELS`), off budget: what the layer sweep
    measures, trained against. Not in the paper (issue 24; wider because a trigger pushed off
    the floor moved one bit up, research log 3d)."""
    low = sorted(set(options))[:levels]
    floor = torch.isin(own_bits, torch.tensor(low, device=own_bits.device))
    if levels >= len(set(options)):
        floor = torch.zeros_like(floor)
    candidates = torch.where(floor.any(1, keepdim=True), floor, torch.ones_like(floor))
    n = candidates.sum(1)
    nth = (pick * n).long().clamp_max(n - 1)  # the nth candidate of each row, in layer order
    layer = (candidates.long().cumsum(1) > nth[:, None]).long().argmax(1)
    out = torch.full_like(own_bits, max(options))
    row = torch.arange(len(own_bits), device=own_bits.device)
    out[row, layer] = own_bits[row, layer]
    return out
