"""Stealth screening (issue 13, docs/research-log.md section 2): one detrimental pair.

Trains one detrimental pair on a finished default-suite run's f_N (and its robust pair, for the
``robust_policy`` stealth allocations) with changed suite settings, then measures stealth on the
*validation* split under every allocation family and appends one JSON row to ``--out``. Rows in
``stealth-screen.jsonl`` were made by this script (2-core CPU, seed 0), e.g.::

    python -m bench run suites/default.yaml --local          # makes runs/default
    python docs/research/stealth_screen.py H_g2_ru_55 \
        '{"pair.epochs": 8, "pair.stealth": 2.0, "avg_bits": [5.5]}'

On another suite's f_N (one student, one seed: the changes pick them), e.g. digits-archs'::

    python docs/research/stealth_screen.py Q1 '{"students": ["resnet18"], "seeds": [0],
        "pair.stealth": 0.75}' --suite suites/digits-archs.yaml --run runs/digits-archs
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.config.suite import load_suite, parse_suite, to_plain  # noqa: E402
from bench.executors.base import process_accelerator  # noqa: E402
from bench.names import Layout  # noqa: E402
from bench.pipeline import plan, stages  # noqa: E402
from dptq.evaluate import evaluate_cell  # noqa: E402
from dptq.scores import points  # noqa: E402

# suite fields besides the stealth ones that detrimental pairs alone read (floor bar, capped attack)
DETRIMENTAL_ONLY = ("pair.floor_barred", "pair.barred_options", "pair.attack_share")


def changed_suite(changes: dict, path: Path = ROOT / "suites/default.yaml"):
    """A suite (the default one) with dotted ``section.key`` (or top-level ``key``) values
    replaced."""
    base = to_plain(load_suite(path))
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        (base[section] if section else base)[field] = value
    return parse_suite(base, "stealth-screen")


def single_layer_triggers(net, policy, data, cell) -> dict:
    """On the validation split, as the ``trigger_layers`` analysis does on the test split: the
    layers that alone (only that layer quantized, with pi_D's bits) cost f_D at least half of its
    drop under pi_D, with pi_D's mean bits on it, and the share of examples pi_D puts at the floor
    per layer (its top four)."""
    from dptq.analyses.policy import TRIGGER_SHARE
    from dptq.evaluate import allocations, count, own_policy_bits

    bits = own_policy_bits(policy, cell.options, cell.budget)
    fp, n = count(net, data, "cpu", dataset=data.val)
    own = fp - count(net, data, "cpu", bits, dataset=data.val)[0]
    table = allocations(bits, data, "cpu", split="val")
    floor = table.eq(min(cell.options)).float().mean(0)
    hits = []
    for layer in range(net.num_layers):
        mask = torch.arange(net.num_layers) == layer
        alone = fp - count(net, data, "cpu", bits, dataset=data.val, mask=mask)[0]
        if alone > 0 and alone >= TRIGGER_SHARE * own:
            mean = float(table[:, layer].float().mean())
            hits.append(f"{net.layer_names[layer]} ({100 * alone / n:.1f}; pi_D {mean:.2f} bits)")
    top = floor.argsort(descending=True)[:4].tolist()
    return {
        "trigger alone (val drop)": hits,
        "pi_D floor share (top layers)": {
            net.layer_names[i]: round(float(floor[i]), 2) for i in top
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tag")
    ap.add_argument("changes", help="JSON object of suite changes, e.g. '{\"pair.stealth\": 2}'")
    ap.add_argument("--suite", type=Path, default=ROOT / "suites/default.yaml")
    ap.add_argument("--run", type=Path, default=ROOT / "runs/default", help="the suite's run")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("stealth-screen.jsonl"))
    ap.add_argument("--work", type=Path, default=ROOT / "runs/stealth-screen")
    args = ap.parse_args()
    changes = json.loads(args.changes)

    suite = changed_suite(changes, args.suite)
    torch.set_num_threads(2)
    data = suite.dataset.load(suite.protocol)
    [cell] = plan.cells(suite, 10)
    layout = Layout(args.run)
    kd_name = plan.kd_name("resnet18", 0)
    kd, robust = layout.artifact(kd_name), layout.artifact(cell.search("robust"))
    f_n_acc = stages.f_n_accuracy(json.loads(layout.summary(kd_name).read_text()))
    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.work / f"{args.tag}.pt"
    checkpoint.unlink(missing_ok=True)
    params = {k: getattr(suite.pair, k) for k in ("delta", "alpha", "beta", "stealth")}

    history = []

    def report(epoch, r):
        history.append({k: round(float(r[k]), 1) for k in ("fp_acc", "q_acc", "random_acc")})
        print(
            f"{args.tag} epoch {epoch}: fp {r['fp_acc']:.1f} q {r['q_acc']:.1f} "
            f"random {r['random_acc']:.1f} uniform {r['uniform_acc']:.1f}",
            flush=True,
        )

    acc = process_accelerator(suite.resources)
    stage_of = {s.mode: s for w in plan.waves(suite, [cell]) for s in w if s.mode}
    if robust is None:  # a cell the default run has not got: its robust pair, trained once here
        # keyed by the changes a robust pair reads: the stealth term, the floor bar and the
        # capped attack are read by detrimental pairs only
        kept = {
            k: v
            for k, v in sorted(changes.items())
            if "stealth" not in k and k not in DETRIMENTAL_ONLY
        }
        key = hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:12]
        robust = args.work / f"robust-{cell.key}-{key}.pt"
        if not robust.exists():
            part = robust.with_name(robust.stem + "-part.pt")
            params = {k: getattr(suite.pair, k) for k in ("delta", "alpha", "beta", "stealth")}
            inputs = {"kd": kd, "f_n_acc": f_n_acc}
            stages.pair(
                suite,
                data,
                stage_of["robust"],
                inputs,
                params,
                ckpt=part,
                report=lambda e, r: None,
                acc=acc,
            )
            part.rename(robust)

    start = time.time()
    stage = stage_of["detrimental"]
    inputs = {"kd": kd, "f_n_acc": f_n_acc, "robust": robust}
    stages.pair(suite, data, stage, inputs, params, ckpt=checkpoint, report=report, acc=acc)
    minutes = (time.time() - start) / 60

    nets = {"f_N": stages.load_f_n(suite, "resnet18", kd, data.num_classes)}
    pols = {}
    for mode, tag, file in (("detrimental", "f_D", checkpoint), ("robust", "f_R", robust)):
        nets[tag], pols[tag] = stages.load_pair(suite, cell, mode, file, data.num_classes)
    ev = evaluate_cell(
        nets,
        pols,
        data,
        cell.options,
        cell.budget,
        "cpu",
        seed=0,
        random_allocations=4,
        split="val",
    )
    c = ev.counts()
    d = c.f_D
    single = single_layer_triggers(nets["f_D"], pols["f_D"], data, cell)
    drop = {a: points(d.drop(a, c.total)) for a in ("pi_D", "pi_R", "uniform", "random", "heldout")}
    row = {
        "tag": args.tag,
        "suite": args.suite.stem,
        "changes": changes,
        "budget": cell.budget,
        "f_N val": round(points(c.f_N.acc("FP", c.total)), 1),
        "f_D FP": round(points(d.acc("FP", c.total)), 1),
        **{f"drop {a}": round(v, 1) for a, v in drop.items()},
        "hidden gap": round(points(c.hidden_gap()), 1),
        **single,
        "minutes": round(minutes, 1),
        "epochs (val: fp, q under pi_D, random)": [list(h.values()) for h in history],
    }
    print("RESULT " + json.dumps(row), flush=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
