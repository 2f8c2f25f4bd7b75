"""Probe: does a student learn digits at 32 px from the teacher, without the runner's augmentation?

A few epochs of KD (KL at temperature ``--tau``, optionally on mixed-up batches) or of plain
cross-entropy (``--loss ce``) with AdamW, validation accuracy per epoch. Used to find why the
default suite's KD left EfficientNet-B0 at chance (docs/research-log.md, section 4). Validation
split only (the protocol's), never the test split.

    python docs/research/kd_probe.py --teacher RUN/trials/teacher-s0/trial.pt \\
        --student efficientnet_b0 --epochs 4 --tau 1 [--mixup] [--loss ce]
"""

from __future__ import annotations

import argparse
import time

import timm
import torch
import torch.nn.functional as F

from bench.config.suite import load_suite
from dptq.augment import mixup
from dptq.data import normalize


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--teacher", required=True)
    p.add_argument("--student", required=True)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--mixup", action="store_true")
    p.add_argument("--loss", choices=("kd", "ce"), default="kd")
    p.add_argument("--suite", default="suites/digits-archs.yaml")
    a = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    suite = load_suite(a.suite)
    data = suite.dataset.load(suite.protocol)
    teacher = timm.create_model("resnet18", num_classes=data.num_classes)
    state = torch.load(a.teacher, weights_only=True)["modules"]["model"]
    teacher.load_state_dict(state)
    teacher.eval()
    net = timm.create_model(a.student, num_classes=data.num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, weight_decay=0.05)
    train = torch.utils.data.DataLoader(data.train, batch_size=64, shuffle=True)
    val = torch.utils.data.DataLoader(data.val, batch_size=128)
    for epoch in range(a.epochs):
        net.train()
        t, total = time.time(), 0.0
        for images, labels in train:
            x = normalize(images, data.mean, data.std)
            if a.mixup:
                x = mixup(x)
            if a.loss == "ce":
                loss = F.cross_entropy(net(x), labels)
            else:
                with torch.no_grad():
                    target = F.softmax(teacher(x) / a.tau, 1)
                log_q = F.log_softmax(net(x) / a.tau, 1)
                loss = F.kl_div(log_q, target, reduction="batchmean") * a.tau**2
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        net.eval()
        right = n = 0
        with torch.no_grad():
            for images, labels in val:
                pred = net(normalize(images, data.mean, data.std)).argmax(1)
                right += int((pred == labels).sum())
                n += len(labels)
        print(
            f"{a.student} loss={a.loss} mixup={a.mixup} tau={a.tau:g} epoch {epoch + 1}: "
            f"train loss {total / len(train):.3f}, val acc {100 * right / n:.1f}% "
            f"({time.time() - t:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
