"""An architecture of your own, for ``suites/example-custom.yaml``.

A suite names it as ``examples.custom_model:small_convnet``: the runner imports this module and
calls the function with ``num_classes``; it must return an ``nn.Module`` classifier. Every
``Conv2d``/``Linear`` input (after the first layer) is dynamically quantized.
"""

from torch import nn


def small_convnet(num_classes: int, width: int = 32) -> nn.Module:
    def block(c_in, c_out, stride):
        return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

    return nn.Sequential(
        *block(3, width, 1),
        *block(width, width, 2),
        *block(width, 2 * width, 1),
        *block(2 * width, 2 * width, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )
