"""``python -m bench demo``: the core (quantizer, policy, knapsack, losses) end to end in seconds.

Trains a small resnet18 on 512 digits images for a few steps to get f_N, then trains a
detrimental pair (f_D, pi_D) from it for a few steps and prints what happened. It is a smoke run
of the method, not a result: ``python -m bench run`` produces results.
"""

from __future__ import annotations

import copy

import torch
from torch.nn import functional as F
from tqdm import tqdm

from dptq import knapsack
from dptq.data import load_dataset, normalize
from dptq.models import QuantizableModel, create_model
from dptq.pair import PairConfig, pair_step
from dptq.policy import create_policy
from dptq.tables import markdown_table


def run_demo(steps: int = 40, seed: int = 0) -> int:
    torch.manual_seed(seed)
    data = load_dataset("digits", image_size=32)
    x_all = normalize(data.train.images[:512], data.mean, data.std)
    y_all = data.train.labels[:512]
    f_n = QuantizableModel(create_model("resnet18", data.num_classes))
    opt = torch.optim.Adam(f_n.parameters(), lr=2e-3)
    for _ in tqdm(range(steps), desc="f_N (supervised)"):
        idx = torch.randint(0, len(y_all), (64,))
        opt.zero_grad()
        F.cross_entropy(f_n(x_all[idx]), y_all[idx]).backward()
        opt.step()
    f_n.eval()
    cfg = PairConfig(mode="detrimental")
    f_d = copy.deepcopy(f_n)
    budget = cfg.resolve_budget(f_d.num_layers)
    pi_d = create_policy("small_cnn", f_d.num_layers, len(cfg.options))
    opt = torch.optim.Adam(
        [
            {"params": f_d.parameters(), "lr": cfg.lr_student},
            {"params": pi_d.parameters(), "lr": cfg.lr_policy},
        ]
    )
    for _ in (bar := tqdm(range(steps), desc="f_D, pi_D (detrimental)")):
        idx = torch.randint(0, len(y_all), (64,))
        with torch.no_grad():
            t_logits = f_n(x_all[idx])
        opt.zero_grad()
        loss, m = pair_step(f_d, pi_d, t_logits, x_all[idx], cfg, budget)
        loss.backward()
        opt.step()
        bar.set_postfix(hinge=f"{m['hinge']:.2f}", q_agree=f"{m['q_agree']:.2f}")
    x_te = normalize(data.test.images, data.mean, data.std)
    y_te = data.test.labels
    with torch.no_grad():
        sel = knapsack.solve(pi_d(x_te), cfg.options, budget)
        bits = knapsack.bits(sel, cfg.options)
        acc = {
            name: (logits.argmax(1) == y_te).float().mean().item() * 100
            for name, logits in [
                ("f_N FP", f_n(x_te)),
                ("f_D FP", f_d(x_te)),
                ("f_D quantized by pi_D", f_d(x_te, bits)),
            ]
        }
    print(
        f"\nL = {f_d.num_layers} layers, options {list(cfg.options)}, budget {budget} bits "
        f"(every test example: {bits.sum(1).min().item()}..{bits.sum(1).max().item()})"
    )
    rows = [[k, f"{v:.1f}"] for k, v in acc.items()]
    print("\n".join(markdown_table(["model", "test accuracy (%)"], rows, "lr")))
    return 0
