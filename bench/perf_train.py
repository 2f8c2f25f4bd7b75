"""``python -m bench perf train``: one pair-training step over one plain supervised step of the
same student and batch (resnet18, batch 64, at 32 and 64 px), and where the pair step's time goes
(:func:`profile_pair_step`)."""

from __future__ import annotations

import torch

from dptq.models import QuantizableModel, create_model
from dptq.pair import PairConfig, pair_step
from dptq.policy import create_policy

from .perf import _median_times, header


def pair_setup(size: int):
    """resnet18 student, frozen f_N, policy and a batch of 64; returns them and one pair step."""
    torch.manual_seed(0)
    student = QuantizableModel(create_model("resnet18", 10))
    teacher = QuantizableModel(create_model("resnet18", 10)).eval()
    cfg = PairConfig()
    budget = cfg.resolve_budget(student.num_layers)
    policy = create_policy("small_cnn", student.num_layers, len(cfg.options))
    opt = torch.optim.Adam([*student.parameters(), *policy.parameters()], lr=1e-5)
    x = torch.randn(64, 3, size, size)

    def pair():
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            t_logits = teacher(x)
        pair_step(student, policy, t_logits, x, cfg, budget)[0].backward()
        opt.step()

    return student, policy, cfg, budget, x, pair


def bench_train_step(quick: bool, size: int) -> dict:
    """One pair-training step over one plain supervised step of the same student and batch."""
    student, _, _, _, x, pair = pair_setup(size)
    plain_opt = torch.optim.Adam(student.parameters(), lr=1e-5)
    y = torch.randint(0, 10, (64,))
    student.train()

    def plain():
        plain_opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(student(x), y).backward()
        plain_opt.step()

    t = _median_times({"pair": pair, "plain": plain}, reps=3 if quick else 9)
    return {
        "model": "resnet18",
        "image": size,
        "B": 64,
        "L": student.num_layers,
        "pair_step_s": t["pair"],
        "plain_step_s": t["plain"],
        "ratio": t["pair"] / t["plain"],
    }


def bench_train(quick: bool) -> dict:
    return {
        "steps": [bench_train_step(quick, s) for s in (32, 64)],
        "profile": profile_pair_step(32, steps=1 if quick else 3),
    }


def markdown_train(res: dict) -> str:
    lines = [
        *header(res, "train"),
        "One pair-training step (frozen f_N forward, policy, knapsack, student quantized and "
        "full-precision passes, backward, update) over one plain supervised step of the same "
        "student and batch (resnet18, B=64, options 3..10, budget 4 x L).",
        "",
        "| image | pair step (ms) | plain step (ms) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for r in res["train"]["steps"]:
        lines.append(
            f"| {r['image']}x{r['image']} | {r['pair_step_s'] * 1e3:.0f} | "
            f"{r['plain_step_s'] * 1e3:.0f} | {r['ratio']:.2f}x |"
        )
    lines += [
        "",
        "Where one pair step's time goes at 32x32 (`torch.profiler`, self CPU time per op, grouped "
        "by what the op is part of; the quantized pass's convolutions count as convolution):",
        "",
        "| part | ms per step | share |",
        "|---|---:|---:|",
    ]
    for r in res["train"]["profile"]:
        lines.append(f"| {r['part']} | {r['ms']:.1f} | {100 * r['share']:.1f}% |")
    return "\n".join(lines + [""])


CATEGORIES = {  # torch.profiler op name -> what it is part of (the rest: "other")
    "convolution": ("conv", "mkldnn_convolution", "thnn_conv", "addmm", "mm", "linear"),
    "weights' static quantization (16 bits)": ("_fake_quantize",),
    "policy taps (<grad, Q_o(x)> per option)": ("bmm", "_PolicyTap"),
    "batch norm": ("batch_norm", "native_batch_norm"),
    "activations' quantizer (per-example range, round, clamp, STE)": (
        "amin",
        "amax",
        "aminmax",
        "round",
        "clamp",
        "reciprocal",
        "eq",
        "maximum",
        "minimum",
        "exp2",
        "_RoundClampSTE",
    ),
    "elementwise (add, mul, relu, ...)": ("add", "mul", "sub", "relu", "threshold", "where", "div"),
    "pooling": ("max_pool", "adaptive_avg_pool", "avg_pool", "mean"),
    "knapsack": ("cumsum", "cummax", "argmax", "gather", "scatter", "topk", "sort", "max"),
    "optimizer": ("adam", "Optimizer", "_foreach", "lerp", "addcdiv", "addcmul", "sqrt"),
    "copies and allocation": ("copy", "empty", "_to_copy", "to", "clone", "contiguous"),
}


def profile_pair_step(size: int = 32, steps: int = 3) -> list[dict]:
    """Where a pair step's time goes (torch.profiler, self CPU time by op, grouped)."""
    from torch.profiler import ProfilerActivity, profile

    _, _, _, _, _, pair = pair_setup(size)
    pair()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            pair()
    total = 0.0
    groups: dict[str, float] = {}
    for ev in prof.key_averages():
        name = ev.key.removeprefix("aten::")
        t = ev.self_cpu_time_total / steps / 1e3  # ms per step
        total += t
        group = next(
            (g for g, keys in CATEGORIES.items() if any(name.startswith(k) for k in keys)), "other"
        )
        groups[group] = groups.get(group, 0.0) + t
    rows = [{"part": g, "ms": ms, "share": ms / total} for g, ms in groups.items()]
    return sorted(rows, key=lambda r: -r["ms"])
