"""Layer by layer: the float network against its int8 twin on one example where they disagree
(docs/int8.md). Run: ``python docs/research/int8_layers.py [x86|fbgemm]`` (about a minute).

Prints, for each module name found in both graphs, the relative error of the int8 output
(dequantized) against the float one. Names of fused modules do not always line up between the two
graphs (a fused conv + BN + ReLU reports under its conv's name), so read the ``.conv`` rows.
"""

import sys
import warnings

import torch

import dptq.int8
from bench.perf.int8 import _train
from dptq.data import load_dataset, normalize
from dptq.int8 import Int8Runner
from dptq.models import create_model


def main() -> None:

    warnings.filterwarnings("ignore")
    ENGINE = sys.argv[1] if len(sys.argv) > 1 else "x86"
    dptq.int8.int8_engine = lambda: ENGINE
    data = load_dataset("digits", image_size=32)
    torch.manual_seed(0)
    m = create_model("regnetx_016", 10)
    _train(m, data, 8, lr=3e-3)
    m.eval()
    x = normalize(torch.stack([data.test[i][0] for i in range(40)]), data.mean, data.std)
    r = Int8Runner(m, x[:1])
    with torch.no_grad():
        wrong = [i for i in range(40) if r(x[i : i + 1]).argmax(1) != m(x[i : i + 1]).argmax(1)]
    print("engine", ENGINE, "disagreements among the first 40:", wrong)
    if not wrong:
        sys.exit(0)
    xi = x[wrong[0] : wrong[0] + 1]
    r(xi)  # this example's ranges
    outputs: dict[str, dict] = {"float": {}, "int8": {}}

    def keep(store: dict, name: str):
        def hook(mod, args, out):
            if isinstance(out, torch.Tensor):
                store[name] = out.dequantize() if out.is_quantized else out.detach()

        return hook

    hooks = []
    for kind, net in (("float", r.prepared), ("int8", r.converted)):
        for n, mod in net.named_modules():
            if n and "activation_post_process" not in n and not list(mod.children()):
                hooks.append(mod.register_forward_hook(keep(outputs[kind], n)))
    with torch.no_grad():
        r.prepared(xi)
        r.converted(xi)
    for h in hooks:
        h.remove()
    for n, a in outputs["float"].items():
        b = outputs["int8"].get(n)
        if b is not None and a.shape == b.shape:
            rel = ((a - b).norm() / (a.norm() + 1e-12)).item()
            print(f"{n:40s} rel err {rel:.4f}")


if __name__ == "__main__":
    main()
