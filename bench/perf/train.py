"""``python -m bench perf train``: one pair-training step over one plain supervised step of the
same student and batch (resnet18, batch 64, at 32 and 64 px), as training runs it (f_N's answers
from :class:`dptq.teacher_cache.TeacherCache`) and with f_N's forward pass in every step (as
before the cache); each step's peak memory; the same steps under ``torch.compile`` where it
works; and where the pair step's time goes (:func:`profile_pair_step`). The results are kept per
machine kind (``train-<vector extension>.md``: the AVX2 and AVX-512 figures side by side).

One job: the train benchmark's variants share one setup (:func:`pair_setup`) and one
interleaved timing loop, so that every ratio it reports compares steps measured the same way."""

from __future__ import annotations

import threading
import time

import torch

from dptq.models import QuantizableModel, create_model
from dptq.pair import PairConfig, pair_step
from dptq.policy import create_policy
from dptq.tables import markdown_table

from .run import _median_times, header

B = 64


def pair_setup(size: int, cached: bool = True, compiled: bool = False):
    """resnet18 student, frozen f_N, policy and a batch of 64; returns them and one pair step
    (``cached``: f_N's logits computed once, as :class:`dptq.teacher_cache.TeacherCache` serves
    them in training; else f_N's forward pass inside the step; ``compiled``: the student under
    ``torch.compile``, returned in its place)."""
    torch.manual_seed(0)
    student = QuantizableModel(create_model("resnet18", 10))
    net = torch.compile(student) if compiled else student
    teacher = QuantizableModel(create_model("resnet18", 10)).eval()
    cfg = PairConfig()
    budget = cfg.resolve_budget(student.num_layers)
    policy = create_policy("small_cnn", student.num_layers, len(cfg.options))
    opt = torch.optim.Adam([*student.parameters(), *policy.parameters()], lr=1e-5)
    x = torch.randn(B, 3, size, size)
    with torch.no_grad():
        table = teacher(x)
    bn = [m for m in student.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    def pair():
        for m in bn:  # as dptq-v1 trains a pair (PairConfig.bn_eval): f_N's statistics
            m.train(not cfg.bn_eval)
        opt.zero_grad(set_to_none=True)
        if cached:
            t_logits = table
        else:
            with torch.no_grad():
                t_logits = teacher(x)
        pair_step(net, policy, t_logits, x, cfg, budget)[0].backward()
        opt.step()

    return net, policy, cfg, budget, x, pair


def _plain(student, x):
    opt = torch.optim.Adam(student.parameters(), lr=1e-5)
    y = torch.randint(0, 10, (x.shape[0],))

    def plain():
        student.train()  # a supervised step: batch norm on the batch's statistics
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(student(x), y).backward()
        opt.step()

    return plain


def _first_step_peak(size: int, variant: str) -> float:
    """In a fresh process: the resident memory (MiB) one step of ``variant`` adds at its peak
    over the process's before it, its first step (nothing yet reused from an earlier one): RSS
    sampled every millisecond (psutil)."""
    import psutil

    torch.set_num_threads(2)
    student, _, _, _, x, pair = pair_setup(size, cached=variant != "pair_uncached")
    fn = _plain(student, x) if variant == "plain" else pair
    proc = psutil.Process()
    base, peak, running = proc.memory_info().rss, [0], [True]

    def sample():
        while running[0]:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.001)

    t = threading.Thread(target=sample)
    t.start()
    fn()
    running[0] = False
    t.join()
    return (max(peak[0], proc.memory_info().rss) - base) / 2**20


def peak_memory(size: int, variant: str) -> float:
    """:func:`_first_step_peak` of ``variant`` (``pair``, ``pair_uncached``, ``plain``) at
    ``size`` px, measured in a process of its own (``spawn``)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        return pool.submit(_first_step_peak, size, variant).result()


def bench_train_step(quick: bool, size: int) -> dict:
    """One pair-training step (f_N cached, and f_N in the step) over one plain supervised step
    of the same student and batch, with each one's peak memory."""
    student, _, _, _, x, pair = pair_setup(size, cached=True)
    _, _, _, _, _, uncached = pair_setup(size, cached=False)
    student.train()
    plain = _plain(student, x)
    steps = {"pair": pair, "pair_uncached": uncached, "plain": plain}
    t = _median_times(steps, reps=3 if quick else 9)
    return {
        "model": "resnet18",
        "image": size,
        "B": B,
        "L": student.num_layers,
        "pair_step_s": t["pair"],
        "pair_uncached_s": t["pair_uncached"],
        "plain_step_s": t["plain"],
        "ratio": t["pair"] / t["plain"],
        "ratio_uncached": t["pair_uncached"] / t["plain"],
        "peak_mib": {k: peak_memory(size, k) for k in steps},
    }


def bench_compiled(quick: bool, size: int = 32) -> dict:
    """The pair and plain steps with the student under ``torch.compile`` (default mode): step
    times, the first (compiling) steps' seconds, or why it is not available here."""
    try:
        student, _, _, _, x, pair = pair_setup(size, cached=True, compiled=True)
        plain = _plain(student, x)
        began = time.perf_counter()
        pair()
        plain()
        warmup = time.perf_counter() - began
        t = _median_times({"pair": pair, "plain": plain}, reps=3 if quick else 5)
    except Exception as e:  # no compiler, a graph it cannot take: said, not fatal
        return {"available": False, "why": " ".join(f"{type(e).__name__}: {e}".split())[:300]}
    return {
        "available": True,
        "image": size,
        "warmup_s": warmup,
        "pair_step_s": t["pair"],
        "plain_step_s": t["plain"],
        "ratio": t["pair"] / t["plain"],
    }


def bench_fused(quick: bool, size: int) -> dict:
    """The pair step with the policy's option inner products as one compiled kernel
    (:mod:`dptq.fused_taps`, ``resources.compile_taps``) against the same pair step eager and a
    plain step, interleaved; the first (compiling) step's seconds."""
    from dptq import fused_taps

    student, _, _, _, x, pair = pair_setup(size, cached=True)
    plain = _plain(student, x)

    def fused():
        fused_taps.enable(True)
        try:
            pair()
        finally:
            fused_taps.enable(False)

    began = time.perf_counter()
    fused()
    warmup = time.perf_counter() - began
    t = _median_times({"pair": pair, "fused": fused, "plain": plain}, reps=3 if quick else 7)
    return {
        "image": size,
        "status": fused_taps.status(),
        "warmup_s": warmup,
        "pair_step_s": t["pair"],
        "fused_step_s": t["fused"],
        "plain_step_s": t["plain"],
        "ratio": t["pair"] / t["plain"],
        "ratio_fused": t["fused"] / t["plain"],
    }


def bench_train(quick: bool) -> dict:
    return {
        "steps": [bench_train_step(quick, s) for s in (32, 64)],
        "fused": [bench_fused(quick, s) for s in (32, 64)],
        "compiled": bench_compiled(quick),
        "profile": profile_pair_step(32, steps=1 if quick else 3),
        "profile_uncached": profile_pair_step(32, steps=1 if quick else 3, cached=False),
    }


def markdown_train(res: dict) -> str:
    lines = [
        *header(res, "train"),
        "One pair-training step as dptq-v1 trains it (policy, knapsack, student quantized and "
        "full-precision passes with batch norm on f_N's statistics, backward, update; f_N's "
        "answers from the training cache, `dptq/teacher_cache.py`) over one plain supervised "
        "step of the same student and batch (batch norm on the batch; resnet18, B=64, options "
        "3..10, budget 4 x L); beside it the same pair step with f_N's forward pass in it (as "
        "before the cache). Peak memory: the resident memory one step adds at its peak, its "
        "first step in a fresh process, sampled every millisecond.",
        "",
    ]
    rows = []
    for r in res["train"]["steps"]:
        ms = lambda k, r=r: f"{r[k] * 1e3:.0f}"  # noqa: E731
        peak = r.get("peak_mib")
        peaks = (
            " / ".join(f"{peak[k]:.0f}" for k in ("pair", "pair_uncached", "plain"))
            if peak
            else "-"
        )
        uncached = (
            [ms("pair_uncached_s"), f"{r['ratio_uncached']:.2f}x"]
            if "pair_uncached_s" in r
            else ["-", "-"]
        )
        image = f"{r['image']}x{r['image']}"
        ratio = f"{r['ratio']:.2f}x"
        rows.append([image, ms("pair_step_s"), ms("plain_step_s"), ratio, *uncached, peaks])
    head = ["image", "pair step (ms)", "plain step (ms)", "ratio", "with f_N in the step (ms)"]
    head += ["ratio", "peak MiB: pair / with f_N / plain"]
    lines += markdown_table(head, rows, "r" * len(head))
    fused = res["train"].get("fused")
    if fused:
        lines += [
            "",
            "With the policy's option inner products as one compiled kernel "
            "(`resources.compile_taps`, `dptq/fused_taps.py`), interleaved with the same pair "
            "step eager and a plain step:",
            "",
        ]
        rows = [
            [
                f"{r['image']}x{r['image']}",
                f"{r['pair_step_s'] * 1e3:.0f}",
                f"{r['fused_step_s'] * 1e3:.0f}",
                f"{r['plain_step_s'] * 1e3:.0f}",
                f"{r['ratio']:.2f}x",
                f"{r['ratio_fused']:.2f}x",
                f"{r['warmup_s']:.0f}",
            ]
            for r in fused
        ]
        head = ["image", "pair step eager (ms)", "fused (ms)", "plain (ms)", "ratio eager"]
        head += ["ratio fused", "first step, compiling (s)"]
        lines += markdown_table(head, rows, "r" * len(head))
    c = res["train"].get("compiled")
    if c is not None:
        lines.append("")
        if c["available"]:
            lines.append(
                f"Under `torch.compile` (the student, default mode, {c['image']} px): pair step "
                f"{c['pair_step_s'] * 1e3:.0f} ms, plain step {c['plain_step_s'] * 1e3:.0f} ms "
                f"({c['ratio']:.2f}x); the first two steps (compiling) took {c['warmup_s']:.0f} s."
            )
        else:
            lines.append(f"`torch.compile` is not available for these steps here: {c['why']}")
    for key, what in (("profile", "as training runs it"), ("profile_uncached", "with f_N in it")):
        if key not in res["train"]:
            continue
        lines += [
            "",
            f"Where one pair step's time goes at 32x32, {what} (`torch.profiler`, self CPU time "
            "per op, grouped by what the op is part of; the quantized pass's convolutions count as "
            "convolution):",
            "",
        ]
        rows = [
            [r["part"], f"{r['ms']:.1f}", f"{100 * r['share']:.1f}%"] for r in res["train"][key]
        ]
        lines += markdown_table(["part", "ms per step", "share"], rows, "lrr")
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


def profile_pair_step(size: int = 32, steps: int = 3, cached: bool = True) -> list[dict]:
    """Where a pair step's time goes (torch.profiler, self CPU time by op, grouped)."""
    from torch.profiler import ProfilerActivity, profile

    _, _, _, _, _, pair = pair_setup(size, cached)
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
