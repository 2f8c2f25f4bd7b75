"""One quantized convolution per engine and group count, run three times with activation scales
A, B, A: relative error against the float convolution of the same quantized input (docs/int8.md).
Run: ``python docs/research/int8_grouped_conv.py`` (seconds)."""

import torch
import torch.ao.nn.quantized as nnq


def main() -> None:

    torch.manual_seed(0)

    def run(engine, groups):
        torch.backends.quantized.engine = engine
        f = torch.nn.Conv2d(48, 48, 3, padding=1, groups=groups).eval()
        qc = nnq.Conv2d(48, 48, 3, padding=1, groups=groups)
        w = torch.quantize_per_tensor(
            f.weight.detach(), f.weight.abs().max().item() / 127.5, 0, torch.qint8
        )
        qc.set_weight_bias(w, f.bias.detach())
        x1 = torch.rand(1, 48, 8, 8) * 4
        x2 = torch.rand(1, 48, 8, 8) * 0.5
        errs = []
        for x in (x1, x2, x1):
            s = x.max().item() / 255
            qx = torch.quantize_per_tensor(x, s, 0, torch.quint8)
            ref = f(qx.dequantize())
            qc.scale, qc.zero_point = (
                (ref.max() - ref.min()).item() / 255,
                int(round(-ref.min().item() / ((ref.max() - ref.min()).item() / 255))),
            )
            out = qc(qx).dequantize()
            errs.append(round(((out - ref).norm() / ref.norm()).item(), 4))
        return errs

    for eng in ("fbgemm", "x86", "onednn"):
        for g in (1, 2, 16, 48):
            print(eng, "groups", g, "rel err per call (scales A, B, A):", run(eng, g))


if __name__ == "__main__":
    main()
