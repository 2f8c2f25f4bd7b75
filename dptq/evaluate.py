"""Evaluation: accuracy of a network at full precision or under a bit allocation, per split.

Allocations are functions ``bits_fn(x) -> [B, L]``: a trained policy's own (its scores through the
exact knapsack, no sampling), a budget-respecting random one, or the most even one. Every bit
vector an evaluation uses is checked against the budget. :func:`evaluate_pair` is what a pair
reports each epoch; :func:`cross_policy` is the paper's Table 3 (every network under every policy).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial

import torch
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader

from . import knapsack
from .data import DatasetPair, normalize

BitsFn = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def predict(
    model: Callable,
    data: DatasetPair,
    acc: Accelerator,
    bits_fn: BitsFn | None = None,
    batch_size: int = 256,
    split: str = "test",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and labels on ``split`` (in order), FP or with ``bits_fn(x)``.

    Puts ``model`` in eval mode (batch-norm running statistics); the caller's training loop sets
    train mode again at the next epoch.
    """
    if isinstance(model, nn.Module):
        model.eval()
    preds, labels = [], []
    # its own generator: evaluating never moves the training's global RNG (augmentation, mixup)
    loader = DataLoader(
        getattr(data, split), batch_size=batch_size, shuffle=False, generator=torch.Generator()
    )
    for images, y in loader:
        x = normalize(images.to(acc.device), data.mean, data.std)
        logits = model(x) if bits_fn is None else model(x, bits_fn(x))
        preds.append(logits.argmax(1).cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(preds), torch.cat(labels)


def accuracy(
    model: Callable, data: DatasetPair, acc: Accelerator, bits_fn=None, split: str = "test"
) -> float:
    pred, y = predict(model, data, acc, bits_fn, split=split)
    return (pred == y).float().mean().item() * 100


def _percent(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return (pred == labels).float().mean().item() * 100


def own_policy_bits(policy: nn.Module, options, budget: int) -> BitsFn:
    """Deterministic bits of a trained policy: its scores through the knapsack (no sampling)."""

    def bits_fn(x):
        return knapsack.bits(knapsack.solve_hard(policy.eval()(x), options, budget), options)

    return bits_fn


def random_policy_bits(num_layers: int, options, budget: int, seed: int) -> BitsFn:
    """A budget-respecting random policy; the same seed gives the same bit vectors."""
    gen = torch.Generator().manual_seed(seed)

    def bits_fn(x):
        scores = knapsack.random_scores(x.shape[0], num_layers, len(options), gen, x.device)
        return knapsack.bits(knapsack.solve_hard(scores, options, budget), options)

    return bits_fn


def uniform_policy_bits(num_layers: int, options, budget: int) -> BitsFn:
    """The most even allocation of the budget, the same for every example."""

    def bits_fn(x):
        scores = knapsack.uniform_scores(x.shape[0], num_layers, options, budget).to(x.device)
        return knapsack.bits(knapsack.solve_hard(scores, options, budget), options)

    return bits_fn


def heldout_policy_bits(num_layers: int, options, budget: int, seed: int) -> BitsFn:
    """Allocations drawn uniformly from every bit vector that meets the budget (exact, by the
    counting DP of :func:`dptq.knapsack.sample_allocations`): a second sampler, one the stealth
    term never trains on, so stealth is not fitted to one sampler's habits."""
    import random

    rng = random.Random(seed)

    def bits_fn(x):
        draws = knapsack.sample_allocations(options, budget, num_layers, x.shape[0], rng)
        return draws.to(x.device)

    return bits_fn


def checked(bits_fn: BitsFn, budget: int) -> BitsFn:
    """``bits_fn`` that raises if a bit vector misses the budget (the knapsack guarantees it)."""

    def wrapped(x):
        bits = bits_fn(x)
        if not bool(bits.sum(1).eq(budget).all()):
            raise AssertionError(f"a bit vector missed the budget {budget}")
        return bits

    return wrapped


def evaluate_pair(
    student: nn.Module,
    policy: nn.Module,
    data: DatasetPair,
    options,
    budget: int,
    acc: Accelerator,
    seed: int = 0,
    split: str = "test",
) -> dict:
    """FP accuracy, quantized accuracy with the pair's own policy, drop, per-example correctness.

    Also the same network under a random budgeted policy and the uniform allocation (the
    cross-policy signature of Table 3).
    """
    student.eval()
    L = student.num_layers
    allocations = {
        "q": own_policy_bits(policy, options, budget),
        "r": random_policy_bits(L, options, budget, seed),
        "u": uniform_policy_bits(L, options, budget),
    }
    fp_pred, y = predict(student, data, acc, split=split)
    pred = {
        k: predict(student, data, acc, checked(fn, budget), split=split)[0]
        for k, fn in allocations.items()
    }
    pct = partial(_percent, labels=y)
    return {
        "fp_acc": pct(fp_pred),
        "q_acc": pct(pred["q"]),
        "drop": pct(fp_pred) - pct(pred["q"]),
        "random_acc": pct(pred["r"]),
        "uniform_acc": pct(pred["u"]),
        "budget": budget,
        "fp_correct": (fp_pred == y).tolist(),
        "q_correct": (pred["q"] == y).tolist(),
    }


def random_seeds(seed: int, k: int) -> list[int]:
    """The seeds of the ``k`` random allocations a cell of seed ``seed`` is evaluated under."""
    return [seed * 1000 + i for i in range(k)]


def evaluate_cell(
    nets: dict[str, nn.Module],
    policies: dict[str, nn.Module],
    data: DatasetPair,
    options,
    budget: int,
    acc: Accelerator,
    seed: int,
    random_allocations: int = 8,
    split: str = "test",
) -> dict:
    """One evaluation of a cell (f_N and its trained pairs) that every analysis and record reads.

    ``nets``: ``{"f_N", "f_R", "f_D"}`` (any subset with f_N); ``policies``: the pairs' own,
    ``{"f_R": pi_R, "f_D": pi_D}``. Each network is run once at full precision and once under each
    allocation: every policy (``pi_R``, ``pi_D``), the uniform one, ``random_allocations`` random
    budgeted ones (random scores through the knapsack: the sampler the stealth term trains on) and
    as many from the held-out sampler (uniform over the feasible set:
    :func:`heldout_policy_bits`); the same bit vectors for every network. Returns:

    - ``cross_policy``: Table 3, accuracy (%) of every network under FP, pi_R, pi_D, uniform and
      random (the mean over the random allocations);
    - ``pairs``: each pair under its own policy (``fp_acc``, ``q_acc``, ``drop``, per-example
      ``fp_correct`` / ``q_correct``; ``random_acc`` is the mean, ``uniform_acc``);
    - ``stealth``: each pair's drop (points) under its own policy (``own``), the other pair's
      (``other``), the uniform allocation, each random one (``random``, with mean and sd) and
      each held-out one (``heldout``, with mean and sd): what :func:`dptq.metrics.hidden_gap`
      reads.
    """
    pol_names = {k: f"pi_{k[-1]}" for k in policies}  # f_R -> pi_R
    seeds = random_seeds(seed, random_allocations)
    table: dict[str, dict[str, float]] = {}
    pairs, stealth = {}, {}
    for name, net in nets.items():
        net.eval()
        L = net.num_layers
        allocs = {pol_names[k]: own_policy_bits(pi, options, budget) for k, pi in policies.items()}
        allocs["uniform"] = uniform_policy_bits(L, options, budget)
        for i, s in enumerate(seeds):
            allocs[f"random{i}"] = random_policy_bits(L, options, budget, s)
            allocs[f"heldout{i}"] = heldout_policy_bits(L, options, budget, s)
        fp, y = predict(net, data, acc, split=split)
        pred = {
            k: predict(net, data, acc, checked(fn, budget), split=split)[0]
            for k, fn in allocs.items()
        }
        pct = partial(_percent, labels=y)
        accs = {k: pct(p) for k, p in pred.items()}
        rand = [accs[f"random{i}"] for i in range(len(seeds))]
        held = [accs[f"heldout{i}"] for i in range(len(seeds))]
        table[name] = {
            "FP": pct(fp),
            **{p: accs[p] for p in pol_names.values()},
            "uniform": accs["uniform"],
            "random": sum(rand) / len(rand),
            "heldout": sum(held) / len(held),
        }
        if name not in policies:
            continue
        own = pol_names[name]
        pairs[name] = {
            "fp_acc": pct(fp),
            "q_acc": accs[own],
            "drop": pct(fp) - accs[own],
            "random_acc": table[name]["random"],
            "uniform_acc": accs["uniform"],
            "budget": budget,
            "fp_correct": (fp == y).tolist(),
            "q_correct": (pred[own] == y).tolist(),
        }
        others = [p for p in pol_names.values() if p != own]
        stealth[name] = {
            "own": pct(fp) - accs[own],
            "other": pct(fp) - accs[others[0]] if others else None,
            "uniform": pct(fp) - accs["uniform"],
        }
        for kind, values in (("random", rand), ("heldout", held)):
            drops = [pct(fp) - a for a in values]
            stealth[name][kind] = drops
            stealth[name][f"{kind}_mean"] = sum(drops) / len(drops)
            stealth[name][f"{kind}_sd"] = statistics.stdev(drops) if len(drops) > 1 else 0.0
    return {"split": split, "cross_policy": table, "pairs": pairs, "stealth": stealth}
