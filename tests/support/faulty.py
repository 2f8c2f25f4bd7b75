"""Students that go bad for real after a number of training steps (the reliability tests).

Each counts its training forwards in a buffer, so the count travels with its checkpoints from the
KD stage into the pair stage, and from step ``after`` on it goes bad:
``nan_net`` really produces NaN logits (so a NaN loss), ``oom_net`` really asks PyTorch's allocator
for 2**62 bytes (a genuine allocation failure: "not enough memory" on the CPU, CUDA's out of memory
on a GPU), ``raise_net`` raises inside the trainer's forward pass.
"""

import time

import torch
from torch import nn

from tests.support.nets import small_net


class FailsAfter(nn.Module):
    def __init__(self, num_classes: int, how: str, after: int):
        super().__init__()
        self.net, self.how, self.after = small_net(num_classes), how, after
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        if self.training:
            self.steps += 1
            if int(self.steps) > self.after:
                if self.how == "nan":
                    return self.net(x) * float("nan")
                if self.how == "oom":
                    torch.empty(2**62, dtype=torch.uint8, device=x.device)
                if self.how == "raise":
                    raise RuntimeError(f"simulated bug in the model at training step {self.after}")
        return self.net(x)


# the reliability suites' KD stage is 6 epochs x 30 steps: 200 is early in the pair stage
def nan_net(num_classes: int) -> nn.Module:
    return FailsAfter(num_classes, "nan", after=200)


def oom_net(num_classes: int) -> nn.Module:
    return FailsAfter(num_classes, "oom", after=200)


def raise_net(num_classes: int) -> nn.Module:
    return FailsAfter(num_classes, "raise", after=40)  # during KD


def not_a_model(num_classes: int):
    return {"num_classes": num_classes}


class Slow(nn.Module):
    """small_net that takes 30 ms per training forward: trials long enough to be caught mid-way."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.net = small_net(num_classes)

    def forward(self, x):
        if self.training:
            time.sleep(0.03)
        return self.net(x)


def slow_net(num_classes: int) -> nn.Module:
    return Slow(num_classes)


def fixed_size_net(num_classes: int) -> nn.Module:
    """A network written for 12x12 images only (its Linear expects 16 x 6 x 6 features): any other
    image size is a shape error at the first forward pass, as a real model's would be."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 6 * 6, num_classes),
    )
