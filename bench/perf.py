"""Speed benchmarks (``python -m bench perf WHICH``): JSON + Markdown under ``leaderboard/perf/``.

Timings interleave the variants being compared and report medians, so that load on a shared
machine hits both alike. Numbers are for the machine named in the output.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from dptq import knapsack
from dptq.models import QuantizableModel, create_model
from dptq.pair import PairConfig, pair_step
from dptq.policy import create_policy


def _median_times(fns: dict[str, Callable[[], object]], reps: int, warmup: int = 2) -> dict:
    """Median seconds per call of each fn, the fns run in turn ``reps`` times (interleaved)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


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


def _machine() -> dict:
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": "cpu",
        "python": platform.python_version(),
    }


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


def _pair_setup(size: int):
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


def bench_pair_step_fraction(quick: bool, size: int) -> dict:
    """Knapsack time as a share of one pair-training step (resnet18, batch 64)."""
    student, policy, cfg, budget, x, step = _pair_setup(size)
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


def bench_train_step(quick: bool, size: int) -> dict:
    """One pair-training step over one plain supervised step of the same student and batch."""
    student, _, _, _, x, pair = _pair_setup(size)
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


def _markdown_train(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# `python -m bench perf train`",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), torch {m['torch']} on {m['device']}, "
        f"{m['torch_threads']} threads. Medians of interleaved repetitions.",
        "",
        "One pair-training step (frozen f_N forward, policy, knapsack, student quantized and "
        "full-precision passes, backward, update) over one plain supervised step of the same "
        "student and batch (resnet18, B=64, options 3..10, budget 4 x L).",
        "",
        "| image | pair step (ms) | plain step (ms) | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for r in res["train_step"]:
        lines.append(
            f"| {r['image']}x{r['image']} | {r['pair_step_s'] * 1e3:.0f} | "
            f"{r['plain_step_s'] * 1e3:.0f} | {r['ratio']:.2f}x |"
        )
    return "\n".join(lines + [""])


def _pil_corrupt(img, name: str, degree: int, rng):
    """The same corruption on one PIL image (the per-image baseline of ``perf corruptions``)."""
    import io

    import numpy as np
    from PIL import Image, ImageEnhance, ImageFilter

    from dptq.corruptions import PARAMS

    p = PARAMS[name][degree]
    if name == "jpeg":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(p))
        return Image.open(buf).convert("RGB")
    if name == "blur":
        return img.filter(ImageFilter.GaussianBlur(p))
    if name == "brightness":
        return ImageEnhance.Brightness(img).enhance(p)
    if name == "contrast":
        return ImageEnhance.Contrast(img).enhance(p)
    if name == "rotation":
        return img.rotate(p * rng.choice([-1, 1]), resample=Image.BILINEAR)
    if name == "skew":
        s = np.tan(np.radians(p)) * rng.choice([-1, 1])
        return img.transform(
            img.size, Image.AFFINE, (1, s, -s * img.size[1] / 2, 0, 1, 0), Image.BILINEAR
        )
    a = np.asarray(img, dtype=np.float32) / 255
    h, w = a.shape[:2]
    if name == "noise":
        a = np.clip(a + rng.normal(0, p, a.shape), 0, 1)
    elif name == "erasing":
        eh, ew = max(1, int(round((p * h * w) ** 0.5))), max(1, int(round((p * h * w) ** 0.5)))
        t, l0 = rng.integers(0, h - eh + 1), rng.integers(0, w - ew + 1)
        a[t : t + eh, l0 : l0 + ew] = rng.normal(0.5, 0.25, (eh, ew, 3))
    elif name == "shift":
        a = a * (1 / (1 + 2 * p)) + rng.choice([-1, 1], 3) * p * 0.5
    return Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8))


def bench_corruptions(quick: bool) -> list[dict]:
    """Images per second: batched tensor corruptions vs the per-image PIL path, degree 3."""
    import numpy as np
    import torchvision.transforms.v2.functional as TF

    from dptq.corruptions import CORRUPTIONS, corrupt

    rows = []
    for size in (64, 224):
        imgs = torch.randint(
            0,
            256,
            (128, 3, size, size),
            dtype=torch.uint8,
            generator=torch.Generator().manual_seed(0),
        )
        pils = [TF.to_pil_image(im) for im in imgs]
        rng = np.random.default_rng(0)

        def batched(imgs=imgs):
            for name in CORRUPTIONS:
                corrupt(name, imgs, 3, seed=0)

        def per_image(pils=pils, rng=rng):
            for name in CORRUPTIONS:
                torch.stack([TF.pil_to_tensor(_pil_corrupt(p, name, 3, rng)) for p in pils])

        t = _median_times({"batched": batched, "pil": per_image}, reps=2 if quick else 5, warmup=1)
        n = 128 * len(CORRUPTIONS)
        rows.append(
            {
                "image": size,
                "B": 128,
                "corruptions": len(CORRUPTIONS),
                "batched_img_per_s": n / t["batched"],
                "pil_img_per_s": n / t["pil"],
                "speedup": t["pil"] / t["batched"],
            }
        )
    return rows


def _markdown_corruptions(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# `python -m bench perf corruptions`",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), torch {m['torch']} on {m['device']}, "
        f"{m['torch_threads']} threads. Medians of interleaved repetitions.",
        "",
        "All nine corruptions at degree 3 on a batch of 128 uint8 images: the batched tensor "
        "path (`dptq.corruptions`) vs the same operations image by image through PIL.",
        "",
        "| image | batched (img/s) | per-image PIL (img/s) | speed-up |",
        "|---:|---:|---:|---:|",
    ]
    for r in res["corruptions"]:
        lines.append(
            f"| {r['image']}x{r['image']} | {r['batched_img_per_s']:.0f} | "
            f"{r['pil_img_per_s']:.0f} | {r['speedup']:.1f}x |"
        )
    return "\n".join(lines + [""])


def _markdown_core(res: dict) -> str:
    m = res["machine"]
    lines = [
        "# `python -m bench perf core`",
        "",
        f"Machine: {m['cores']} cores ({m['cpu']}), torch {m['torch']} on {m['device']}, "
        f"{m['torch_threads']} threads. Medians of interleaved repetitions.",
        "",
        "## Knapsack: batched DP vs per-example Python DP (B=64, O=8, options 3..10)",
        "",
        "| L | avg bits | budget | batched (ms) | Python loop (ms) | speed-up |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["knapsack"]:
        lines.append(
            f"| {r['L']} | {r['avg_bits']:g} | {r['budget']} | {r['batched_s'] * 1e3:.1f} | "
            f"{r['python_loop_s'] * 1e3:.0f} | {r['speedup']:.0f}x |"
        )
    lines += [
        "",
        "The Python loop is timed on a few examples and scaled to B=64 (its cost is linear in B).",
        "",
        "## Knapsack as a share of one pair-training step (resnet18, B=64)",
        "",
        "| image | L | pair step (ms) | knapsack (ms) | share |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in res["pair_step"]:
        lines.append(
            f"| {r['image']}x{r['image']} | {r['L']} | {r['pair_step_s'] * 1e3:.0f} | "
            f"{r['knapsack_s'] * 1e3:.1f} | {100 * r['knapsack_fraction']:.2f}% |"
        )
    q = res["quant_overhead"]
    lines += [
        "",
        "## Quantized step overhead (resnet18, 64x64, B=32, forward+backward)",
        "",
        "| full precision (ms) | per-example quantized (ms) | ratio |",
        "|---:|---:|---:|",
        f"| {q['fp_s'] * 1e3:.0f} | {q['quantized_s'] * 1e3:.0f} | {q['ratio']:.2f}x |",
        "",
    ]
    return "\n".join(lines)


def run_perf(which: str, out_dir: str = "leaderboard/perf", quick: bool = False) -> dict:
    """Run benchmark ``which`` and write ``<out_dir>/<which>.json`` and ``.md``."""
    res = {"benchmark": which, "machine": _machine(), "quick": quick}
    if which == "core":
        res["knapsack"] = bench_knapsack(quick)
        res["pair_step"] = [bench_pair_step_fraction(quick, s) for s in (32, 64)]
        res["quant_overhead"] = bench_quant_overhead(quick)
        md = _markdown_core(res)
    elif which == "train":
        res["train_step"] = [bench_train_step(quick, s) for s in (32, 64)]
        md = _markdown_train(res)
    elif which == "corruptions":
        res["corruptions"] = bench_corruptions(quick)
        md = _markdown_corruptions(res)
    elif which in ("int8", "gpu"):  # their own modules: torch.ao / CUDA only when asked
        mod = importlib.import_module(f".perf_{which}", __package__)
        res[which] = getattr(mod, f"bench_{which}")(quick)
        md = getattr(mod, f"markdown_{which}")(res)
    else:
        raise ValueError(f"unknown benchmark {which!r}; known: core, train, corruptions, int8, gpu")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{which}.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / f"{which}.md").write_text(md)
    print(md)
    return res
