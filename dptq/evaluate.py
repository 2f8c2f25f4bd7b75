"""Evaluation: which examples a network gets right, at full precision or under a bit allocation.

One loop (:func:`predict`) serves every evaluation of the project: the per-epoch validation of a
stage, a cell's evaluation on the test split, the sweeps, corruptions, trigger curves, audit,
quantizer transfer and defenses. Accuracies come from integer counts (correct of total), never
from a float32 mean.

Allocations are functions ``bits_fn(x) -> [B, L]``: a trained policy's own (its scores through
the exact knapsack, no sampling), a budget-respecting random one, one drawn uniformly from the
feasible set, or the most even one. Every bit vector a cell's evaluation uses is checked against
the budget. :func:`evaluate_pair` is what a pair reports each epoch; :func:`evaluate_cell` is a
cell's one evaluation that its record and every analysis read (Table 3 included).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import knapsack
from .data import DatasetPair, normalize
from .scores import CellCounts, NetCounts, percent, points

BitsFn = Callable[[torch.Tensor], torch.Tensor]
Transform = Callable[[torch.Tensor, int], torch.Tensor]  # (uint8 batch, batch index) -> input


@torch.no_grad()
def predict(
    model: Callable,
    data: DatasetPair,
    device,
    bits_fn: BitsFn | None = None,
    *,
    split: str = "test",
    dataset: Dataset | None = None,
    mask: torch.Tensor | None = None,
    transform: Transform | None = None,
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted classes and labels of ``split`` (or of ``dataset``, e.g. a subset), in order.

    Full precision, or quantized with ``bits_fn(x)`` (only the layers ``mask`` keeps, when
    given). ``transform(images, batch_index)`` replaces the normalisation (corruptions).
    Puts ``model`` in eval mode (batch-norm running statistics); a training loop sets train mode
    again at its next epoch.
    """
    if isinstance(model, nn.Module):
        model.eval()
    ds = getattr(data, split) if dataset is None else dataset
    preds, labels = [], []
    # its own generator: evaluating never moves the training's global RNG (augmentation, mixup)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, generator=torch.Generator())
    for i, (images, y) in enumerate(loader):
        images = images.to(device)
        x = transform(images, i) if transform else normalize(images, data.mean, data.std)
        if bits_fn is None:
            logits = model(x)
        elif mask is None:
            logits = model(x, bits_fn(x))
        else:
            logits = model(x, bits_fn(x), mask=mask)
        preds.append(logits.argmax(1).cpu())
        labels.append(torch.as_tensor(y))
    return torch.cat(preds), torch.cat(labels)


@torch.no_grad()
def allocations(
    bits_fn: BitsFn, data: DatasetPair, device, *, split: str = "test", batch_size: int = 256
) -> torch.Tensor:
    """Each example's bit vector under ``bits_fn`` (``[N, L]``, in :func:`predict`'s order): what
    a policy gives the examples of ``split``, with no network run."""
    ds = getattr(data, split)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, generator=torch.Generator())
    out = [bits_fn(normalize(x.to(device), data.mean, data.std)).cpu() for x, _ in loader]
    return torch.cat(out)


def correct(model: Callable, data: DatasetPair, device, bits_fn=None, **kw) -> torch.Tensor:
    """Per example, whether ``model`` classifies it correctly (bool ``[N]``); as :func:`predict`."""
    pred, y = predict(model, data, device, bits_fn, **kw)
    return pred == y


def count(model: Callable, data: DatasetPair, device, bits_fn=None, **kw) -> tuple[int, int]:
    """(correct, total) of ``model`` on a split, FP or under ``bits_fn``; as :func:`predict`."""
    right = correct(model, data, device, bits_fn, **kw)
    return int(right.sum()), len(right)


def accuracy(model: Callable, data: DatasetPair, device, bits_fn=None, **kw) -> float:
    """Accuracy in percent (from the exact count); as :func:`predict`."""
    c, n = count(model, data, device, bits_fn, **kw)
    return points(percent(c, max(n, 1)))


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
    rng = random.Random(seed)

    def bits_fn(x):
        draws = knapsack.sample_allocations(options, budget, num_layers, x.shape[0], rng)
        return draws.to(x.device)

    return bits_fn


def table_bits(table: torch.Tensor) -> BitsFn:
    """The rows of a precomputed allocation table ``[N, L]``, batch after batch, for an
    evaluation of the same N examples in order (:func:`predict` never shuffles)."""
    start = 0

    def bits_fn(x):
        nonlocal start
        rows = table[start : start + x.shape[0]].to(x.device)
        start += x.shape[0]
        return rows

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
    device,
    seed: int = 0,
    split: str = "test",
) -> dict:
    """What a pair reports each epoch on ``split``: FP accuracy, accuracy under its own policy,
    the drop, and the same network under a random budgeted allocation and the uniform one (the
    cross-policy signature of Table 3), in percent from exact counts; ``total`` examples."""
    L = student.num_layers
    allocations = {
        "q": own_policy_bits(policy, options, budget),
        "random": random_policy_bits(L, options, budget, seed),
        "uniform": uniform_policy_bits(L, options, budget),
    }
    fp, n = count(student, data, device, split=split)
    c = {
        k: count(student, data, device, checked(fn, budget), split=split)[0]
        for k, fn in allocations.items()
    }
    return {
        "fp_acc": points(percent(fp, n)),
        "q_acc": points(percent(c["q"], n)),
        "drop": points(percent(fp - c["q"], n)),
        "random_acc": points(percent(c["random"], n)),
        "uniform_acc": points(percent(c["uniform"], n)),
        "budget": budget,
        "total": n,
    }


def random_seeds(seed: int, k: int) -> list[int]:
    """The seeds of the ``k`` random allocations a cell of seed ``seed`` is evaluated under."""
    return [seed * 1000 + i for i in range(k)]


@dataclass
class CellEvaluation:
    """Per example, whether each network of a cell is right under each allocation.

    ``correct[net][allocation]``: bool ``[N]`` for net in f_N, f_R, f_D and allocation in
    ``FP``, ``pi_R``, ``pi_D``, ``uniform``, ``random0..K-1``, ``heldout0..K-1``.
    """

    split: str
    correct: dict[str, dict[str, torch.Tensor]]
    k: int

    @property
    def total(self) -> int:
        return len(self.correct["f_N"]["FP"])

    def _n(self, net: str, a: str) -> int:
        return int(self.correct[net][a].sum())

    def counts(self) -> CellCounts:
        """The integers every score is computed from (:mod:`dptq.scores`)."""
        nets = {
            net: NetCounts(
                **{a: self._n(net, a) for a in ("FP", "pi_R", "pi_D", "uniform")},
                random=[self._n(net, f"random{i}") for i in range(self.k)],
                heldout=[self._n(net, f"heldout{i}") for i in range(self.k)],
            )
            for net in ("f_N", "f_R", "f_D")
        }
        return CellCounts(self.total, **nets)

    def per_example(self) -> dict:
        """``{net: {allocation: "0110..."}}`` (``random``, ``heldout``: a list of K strings): one
        character per test example, in order, ``1`` when it is classified correctly."""

        def bits(t: torch.Tensor) -> str:
            return "".join("1" if v else "0" for v in t.tolist())

        out = {}
        for net, by in self.correct.items():
            out[net] = {a: bits(by[a]) for a in ("FP", "pi_R", "pi_D", "uniform")}
            for kind in ("random", "heldout"):
                out[net][kind] = [bits(by[f"{kind}{i}"]) for i in range(self.k)]
        return out


def evaluate_cell(
    nets: dict[str, nn.Module],
    policies: dict[str, nn.Module],
    data: DatasetPair,
    options,
    budget: int,
    device,
    seed: int,
    random_allocations: int = 8,
    split: str = "test",
) -> CellEvaluation:
    """One evaluation of a cell (f_N and its trained pairs) that every analysis and record reads.

    ``nets``: ``{"f_N", "f_R", "f_D"}``; ``policies``: the pairs' own, ``{"f_R": pi_R, "f_D":
    pi_D}``. Each network is run once at full precision and once under each allocation: both
    policies, the uniform one, ``random_allocations`` random budgeted ones (random scores through
    the knapsack: the sampler the stealth term trains on) and as many from the held-out sampler
    (uniform over the feasible set: :func:`heldout_policy_bits`); the same bit vectors for every
    network.
    """
    seeds = random_seeds(seed, random_allocations)
    right: dict[str, dict[str, torch.Tensor]] = {}
    for name, net in nets.items():
        L = net.num_layers
        allocs = {f"pi_{k[-1]}": own_policy_bits(pi, options, budget) for k, pi in policies.items()}
        allocs["uniform"] = uniform_policy_bits(L, options, budget)
        for i, s in enumerate(seeds):
            allocs[f"random{i}"] = random_policy_bits(L, options, budget, s)
            allocs[f"heldout{i}"] = heldout_policy_bits(L, options, budget, s)
        right[name] = {"FP": correct(net, data, device, split=split)}
        for k, fn in allocs.items():
            right[name][k] = correct(net, data, device, checked(fn, budget), split=split)
    return CellEvaluation(split, right, len(seeds))
