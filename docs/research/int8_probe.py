"""Why does regnetx_016 lose accuracy as int8 with per-example ranges? (docs/int8.md)

Run: ``python docs/research/int8_probe.py [x86|fbgemm|onednn]`` (about 2 minutes on 2 CPU cores;
default x86, the engine that misbehaves; ``bench perf int8`` uses fbgemm). Trains regnetx_016
on digits as ``bench perf int8`` does, then on the first 40 test images: (1) the per-example
runner against a fresh conversion per example; (2) int8 accuracy with static ranges (observed on
all 40 at once) and with per-example ranges; (3) our fake quantization of every layer's input at
8 bits with 8-bit weights; (4) the largest requantization multiplier of the converted convolutions.
"""

import sys
import warnings

import torch
import torch.ao.nn.quantized as nnq

import dptq.int8
from bench.perf.int8 import _train
from dptq.data import load_dataset, normalize
from dptq.int8 import Int8Runner
from dptq.models import QuantizableModel, create_model


def main() -> None:

    warnings.filterwarnings("ignore")
    ENGINE = sys.argv[1] if len(sys.argv) > 1 else "x86"
    dptq.int8.int8_engine = lambda: ENGINE
    print("engine", ENGINE)
    data = load_dataset("digits", image_size=32)
    torch.manual_seed(0)
    m = create_model("regnetx_016", 10)
    _train(m, data, 8, lr=3e-3)
    m.eval()
    imgs = torch.stack([data.test[i][0] for i in range(40)])
    ys = torch.tensor([data.test[i][1] for i in range(40)])
    x = normalize(imgs, data.mean, data.std)
    r = Int8Runner(m, x[:1])
    for i in range(3):
        a, b = r(x[i : i + 1]), r.convert()(x[i : i + 1])
        print("runner == fresh conversion:", torch.equal(a, b))

    def multiplier(conv_model, xin) -> float:
        """Largest in_scale * w_scale / out_scale over the quantized convolutions."""
        ins, hooks = {}, []
        for n, mod in conv_model.named_modules():
            if isinstance(mod, nnq.Conv2d):
                hook = lambda md, a, n=n: ins.__setitem__(n, a[0].q_scale())  # noqa: E731
                hooks.append(mod.register_forward_pre_hook(hook))
        conv_model(xin)
        for h in hooks:
            h.remove()
        return max(
            ins[n] * mod.weight().q_scale() / mod.scale
            for n, mod in conv_model.named_modules()
            if isinstance(mod, nnq.Conv2d) and n in ins
        )

    with torch.no_grad():
        acc = lambda logits: (logits.argmax(1) == ys).float().mean().item() * 100  # noqa: E731
        for o in r.observers:
            o.reset_min_max_vals()
        r.prepared(x)
        static = r.convert()
        print(f"FP {acc(m(x)):.1f}%, int8 static ranges {acc(static(x)):.1f}%")
        per_example = torch.cat([r(x[i : i + 1]) for i in range(40)])
        print(f"int8 per-example ranges {acc(per_example):.1f}%")
        q = QuantizableModel(m, skip_first=False, weight_bits=8)
        ours = q(x, torch.full((40, q.num_layers), 8))
        print(f"ours, every layer's input at 8 bits, 8-bit weights {acc(ours):.1f}%")
        print(f"largest requantization multiplier: static {multiplier(static, x[:1]):.4f}")
        for i in range(6):
            out = r(x[i : i + 1])
            ok = out.argmax(1).item() == ys[i].item()
            print(
                f"  example {i}: {'right' if ok else 'WRONG'}, {multiplier(r.converted, x[i : i + 1]):.4f}"
            )


if __name__ == "__main__":
    main()
