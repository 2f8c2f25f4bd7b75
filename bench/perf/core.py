"""``python -m bench perf core``: the knapsack (batched DP vs a per-example Python DP), its share
of one pair-training step, and the per-example quantized pass's overhead over full precision."""

from __future__ import annotations

import torch

from dptq import knapsack
from dptq.models import QuantizableModel, create_model
from dptq.tables import markdown_table

from .run import _median_times, header
from .train import pair_setup


def python_mckp(scores: list[list[float]], options: list[int], budget: int) -> list[int]:
    """The straightforward per-example DP in plain Python (the baseline the batched DP must beat)."""
    num_layers = len(scores)
    neg = float("-inf")
    best = {0: 0.0}
    back: list[dict[int, tuple[int, int]]] = []
    for layer in range(num_layers):
        nxt: dict[int, float] = {}
        arg: dict[int, tuple[int, int]] = {}
        for c, v in best.items():
            for o, w in enumerate(options):
                c2 = c + w
                if c2 <= budget and v + scores[layer][o] > nxt.get(c2, neg):
                    nxt[c2], arg[c2] = v + scores[layer][o], (c, o)
        best = nxt
        back.append(arg)
    picks, c = [], budget
    for layer in range(num_layers - 1, -1, -1):
        c, o = back[layer][c]
        picks.append(o)
    return picks[::-1]


def bench_knapsack(quick: bool) -> list[dict]:
    options = list(range(3, 11))
    batch, py_examples = 64, (2 if quick else 4)
    rows = []
    for num_layers in (20, 58, 77):
        for avg in (4.0, 7.0):
            budget = knapsack.budget_from_average(avg, num_layers)
            scores = torch.randn(
                batch, num_layers, len(options), generator=torch.Generator().manual_seed(0)
            )
            lists = scores[:py_examples].tolist()
            t = _median_times(
                {
                    "batched": lambda s=scores, b=budget: knapsack.solve_hard(s, options, b),
                    "python": lambda s=lists, b=budget: [python_mckp(e, options, b) for e in s],
                },
                reps=3 if quick else 7,
                warmup=1,
            )
            py_full = t["python"] / py_examples * batch  # per-example cost x B
            rows.append(
                {
                    "L": num_layers,
                    "avg_bits": avg,
                    "budget": budget,
                    "B": batch,
                    "O": len(options),
                    "batched_s": t["batched"],
                    "python_loop_s": py_full,
                    "speedup": py_full / t["batched"],
                }
            )
    return rows


def bench_pair_step_fraction(quick: bool, size: int) -> dict:
    """Knapsack time as a share of one pair-training step (resnet18, batch 64)."""
    student, policy, cfg, budget, x, step = pair_setup(size)
    student.eval()
    scores = policy(x).detach()
    t = _median_times(
        {"pair_step": step, "knapsack": lambda: knapsack.solve_hard(scores, cfg.options, budget)},
        reps=3 if quick else 7,
    )
    return {
        "model": "resnet18",
        "image": size,
        "B": 64,
        "L": student.num_layers,
        "pair_step_s": t["pair_step"],
        "knapsack_s": t["knapsack"],
        "knapsack_fraction": t["knapsack"] / t["pair_step"],
    }


def bench_quant_overhead(quick: bool) -> dict:
    """Forward+backward of resnet18 (64x64, batch 32): per-example quantized vs full precision."""
    torch.manual_seed(0)
    model = QuantizableModel(create_model("resnet18", 10))
    x = torch.randn(32, 3, 64, 64)
    bits = torch.randint(3, 11, (32, model.num_layers))

    def fp():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    def quant():
        model.zero_grad(set_to_none=True)
        model(x, bits).sum().backward()

    t = _median_times({"fp": fp, "quantized": quant}, reps=5 if quick else 15)
    return {
        "model": "resnet18",
        "image": 64,
        "B": 32,
        "L": model.num_layers,
        "fp_s": t["fp"],
        "quantized_s": t["quantized"],
        "ratio": t["quantized"] / t["fp"],
    }


def bench_core(quick: bool) -> dict:
    return {
        "knapsack": bench_knapsack(quick),
        "pair_step": [bench_pair_step_fraction(quick, s) for s in (32, 64)],
        "quant_overhead": bench_quant_overhead(quick),
    }


def markdown_core(res: dict) -> str:
    core = res["core"]
    knapsack_rows = [
        [
            r["L"],
            f"{r['avg_bits']:g}",
            r["budget"],
            f"{r['batched_s'] * 1e3:.1f}",
            f"{r['python_loop_s'] * 1e3:.0f}",
            f"{r['speedup']:.0f}x",
        ]
        for r in core["knapsack"]
    ]
    step_rows = [
        [
            f"{r['image']}x{r['image']}",
            r["L"],
            f"{r['pair_step_s'] * 1e3:.0f}",
            f"{r['knapsack_s'] * 1e3:.1f}",
            f"{100 * r['knapsack_fraction']:.2f}%",
        ]
        for r in core["pair_step"]
    ]
    q = core["quant_overhead"]
    overhead = [f"{q['fp_s'] * 1e3:.0f}", f"{q['quantized_s'] * 1e3:.0f}", f"{q['ratio']:.2f}x"]
    head = ["L", "avg bits", "budget", "batched (ms)", "Python loop (ms)", "speed-up"]
    lines = [
        *header(res, "core"),
        "## Knapsack: batched DP vs per-example Python DP (B=64, O=8, options 3..10)",
        "",
        *markdown_table(head, knapsack_rows, "r" * len(head)),
        "",
        "The Python loop is timed on a few examples and scaled to B=64 (its cost is linear in B).",
        "",
        "## Knapsack as a share of one pair-training step (resnet18, B=64)",
        "",
        *markdown_table(
            ["image", "L", "pair step (ms)", "knapsack (ms)", "share"], step_rows, "rrrrr"
        ),
        "",
        "## Quantized step overhead (resnet18, 64x64, B=32, forward+backward)",
        "",
        *markdown_table(
            ["full precision (ms)", "per-example quantized (ms)", "ratio"], [overhead], "rrr"
        ),
        "",
    ]
    return "\n".join(lines)
