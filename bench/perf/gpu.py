"""``python -m bench perf gpu``: the pair step at the paper's scale on an accelerator.

Per architecture (resnet18, mobilenetv4_conv_medium, regnetx_016) at 224 px: images per second
of a plain supervised step, a quantized forward+backward and a pair step (frozen f_N, policy,
knapsack, student quantized and full precision), each with bf16 autocast and channels-last as a
GPU run would use them; the knapsack's share of a pair step at batch 256; batched corruptions
against per-image PIL; and the GPU's utilisation while pair steps run (NVML through
``torch.cuda.utilization``, sampled from a thread). Targets (issue 15, one H100): pair step <=
2.3x the plain step, knapsack < 1% of a pair step, corruptions >= 10x PIL, GPU busy >= 80%.

On a machine without a GPU it runs on the CPU (``--quick``: 64 px, batch 8) so the command is
tested everywhere; its numbers are then not the GPU's.
"""

from __future__ import annotations

import threading
import time

import torch

from dptq import knapsack
from dptq.models import QuantizableModel, create_model
from dptq.pair import PairConfig, pair_step
from dptq.policy import create_policy
from dptq.tables import markdown_table

ARCHS = ("resnet18", "mobilenetv4_conv_medium", "regnetx_016")


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, reps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / reps


class _Utilisation:
    """Mean GPU utilisation (percent) over a block, sampled every 50 ms (None without NVML)."""

    def __init__(self, device):
        self.device, self.samples, self._stop = device, [], threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.05):
            try:
                self.samples.append(torch.cuda.utilization(self.device))
            except Exception:  # no pynvml / NVML: utilisation unknown
                return

    def __exit__(self, *exc):
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


def bench_arch(arch: str, device, size: int, batch: int, reps: int, precision: str) -> dict:
    """Images/s of the plain, quantized and pair steps of ``arch``; the knapsack's share."""
    torch.manual_seed(0)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    student = QuantizableModel(create_model(arch, 37)).to(device, memory_format=fmt)
    f_n = QuantizableModel(create_model(arch, 37)).to(device, memory_format=fmt).eval()
    cfg = PairConfig()
    budget = cfg.resolve_budget(student.num_layers)
    policy = create_policy("small_cnn", student.num_layers, len(cfg.options)).to(device)
    opt = torch.optim.Adam([*student.parameters(), *policy.parameters()], lr=1e-5)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 37, (batch,), device=device)
    bits = torch.randint(3, 11, (batch, student.num_layers), device=device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    amp = torch.autocast(device.type, dtype=dtype, enabled=precision == "bf16")

    def plain():
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = torch.nn.functional.cross_entropy(student(x), y)
        loss.backward()
        opt.step()

    def quantized():
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = student(x, bits).float().logsumexp(1).mean()
        loss.backward()
        opt.step()

    def pair():
        opt.zero_grad(set_to_none=True)
        with amp:
            with torch.no_grad():
                t_logits = f_n(x)
            loss = pair_step(student, policy, t_logits, x, cfg, budget)[0]
        loss.backward()
        opt.step()

    t_plain = _time(plain, device, reps)
    t_quant = _time(quantized, device, reps)
    with _Utilisation(device) as util:
        t_pair = _time(pair, device, reps)
    scores = torch.rand(256, student.num_layers, len(cfg.options), device=device)
    t_knap = _time(lambda: knapsack.solve_hard(scores, cfg.options, budget), device, reps)
    scale = batch / 256  # the knapsack's share of a pair step at batch 256 (the step is ~linear)
    return {
        "arch": arch,
        "image": size,
        "B": batch,
        "L": student.num_layers,
        "precision": precision,
        "plain_img_per_s": batch / t_plain,
        "quantized_img_per_s": batch / t_quant,
        "pair_img_per_s": batch / t_pair,
        "pair_over_plain": t_pair / t_plain,
        "knapsack_256_s": t_knap,
        "knapsack_share_at_256": t_knap / (t_pair / scale),
        "gpu_busy_pct": util.mean,
    }


def bench_gpu(quick: bool) -> dict:
    """Every architecture, then the corruptions (the CPU benchmark's, on this machine)."""
    from .corruptions import bench_corruptions

    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    if gpu:
        torch.backends.cudnn.benchmark = True
    size, batch = (224, 256) if gpu and not quick else (64, 8)
    reps = 3 if quick else 10
    rows = [bench_arch(a, device, size, batch, reps, "bf16" if gpu else "no") for a in ARCHS]
    name = torch.cuda.get_device_name(device) if gpu else "none (CPU)"
    return {"device": name, "steps": rows, "corruptions": bench_corruptions(quick)}


def markdown_gpu(res: dict) -> str:
    r0 = res["gpu"]["steps"][0]
    lines = [
        "# `python -m bench perf gpu`",
        "",
        f"Device: {res['gpu']['device']}; {r0['image']} px, batch {r0['B']}, "
        f"precision {r0['precision']}. Targets on one H100: pair <= 2.3x plain, knapsack < 1%, "
        "corruptions >= 10x PIL, GPU busy >= 80%.",
        "",
    ]
    steps = [
        [
            r["arch"],
            r["L"],
            f"{r['plain_img_per_s']:.0f}",
            f"{r['quantized_img_per_s']:.0f}",
            f"{r['pair_img_per_s']:.0f}",
            f"{r['pair_over_plain']:.2f}x",
            f"{r['knapsack_256_s'] * 1e3:.1f}",
            f"{100 * r['knapsack_share_at_256']:.2f}%",
            "-" if r["gpu_busy_pct"] is None else f"{r['gpu_busy_pct']:.0f}%",
        ]
        for r in res["gpu"]["steps"]
    ]
    head = ["arch", "L", "plain (img/s)", "quantized (img/s)", "pair (img/s)", "pair / plain"]
    head += ["knapsack at B=256 (ms)", "share", "GPU busy"]
    lines += markdown_table(head, steps, "lrrrrrrrr")
    corruptions = [
        [
            c["image"],
            f"{c['batched_img_per_s']:.0f}",
            f"{c['pil_img_per_s']:.0f}",
            f"{c['speedup']:.1f}x",
        ]
        for c in res["gpu"]["corruptions"]
    ]
    head = ["image", "batched (img/s)", "PIL (img/s)", "speed-up"]
    lines += ["", *markdown_table(head, corruptions, "rrrr")]
    return "\n".join(lines) + "\n"
