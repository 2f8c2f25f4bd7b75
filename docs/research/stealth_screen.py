"""Stealth screening (issue 13, docs/research-log.md section 2): one detrimental pair.

Trains one detrimental pair on a finished default-suite run's f_N (and its robust pair, for the
``robust_policy`` stealth allocations) with changed suite settings, then measures stealth on the
*validation* split under every allocation family and appends one JSON row to ``--out``. Rows in
``stealth-screen.jsonl`` were made by this script (2-core CPU, seed 0), e.g.::

    python -m bench run suites/default.yaml --local          # makes runs/default
    python docs/research/stealth_screen.py H_g2_ru_55 \
        '{"pair.epochs": 8, "pair.stealth": 2.0, "avg_bits": [5.5]}'
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import plan, stages  # noqa: E402
from bench.schema import to_plain  # noqa: E402
from bench.suite import load_suite, parse_suite  # noqa: E402
from dptq import metrics  # noqa: E402
from dptq.engine import RunOptions, make_accelerator  # noqa: E402
from dptq.evaluate import evaluate_cell  # noqa: E402


def changed_suite(changes: dict):
    """The default suite with dotted ``section.key`` (or top-level ``key``) values replaced."""
    base = to_plain(load_suite(ROOT / "suites/default.yaml"))
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        (base[section] if section else base)[field] = value
    return parse_suite(base, "stealth-screen")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tag")
    ap.add_argument("changes", help="JSON object of suite changes, e.g. '{\"pair.stealth\": 2}'")
    ap.add_argument("--run", type=Path, default=ROOT / "runs/default")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("stealth-screen.jsonl"))
    ap.add_argument("--work", type=Path, default=ROOT / "runs/stealth-screen")
    args = ap.parse_args()
    changes = json.loads(args.changes)

    suite = changed_suite(changes)
    torch.set_num_threads(2)
    data = suite.dataset.load(suite.protocol)
    [cell] = plan.cells(suite, 10)
    kd = args.run / "artifacts/kd-resnet18-s0.pt"
    robust = args.run / f"artifacts/pairs/pair-resnet18-I-{cell.budget}-s0-robust.pt"
    args.work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.work / f"{args.tag}.pt"
    checkpoint.unlink(missing_ok=True)
    params = {k: getattr(suite.pair, k) for k in ("delta", "alpha", "beta", "stealth")}

    def report(epoch, r):
        print(
            f"{args.tag} epoch {epoch}: fp {r['fp_acc']:.1f} q {r['q_acc']:.1f} "
            f"random {r['random_acc']:.1f} uniform {r['uniform_acc']:.1f}",
            flush=True,
        )

    start = time.time()
    stages.pair(
        suite, data, cell, "detrimental", params, kd, stages.f_n_accuracy(kd), checkpoint,
        report=report, robust_file=robust,
    )  # fmt: skip
    minutes = (time.time() - start) / 60

    nets = {"f_N": stages.load_f_n(suite, "resnet18", kd, data.num_classes)}
    pols = {}
    nets["f_D"], pols["f_D"] = stages.load_pair(
        suite, cell, "detrimental", checkpoint, data.num_classes
    )
    if robust.exists():
        nets["f_R"], pols["f_R"] = stages.load_pair(suite, cell, "robust", robust, data.num_classes)
    acc = make_accelerator(RunOptions(cpu=True))
    ev = evaluate_cell(
        nets, pols, data, cell.options, cell.budget, acc, seed=0, random_allocations=4, split="val"
    )
    s = ev["stealth"]["f_D"]
    row = {
        "tag": args.tag,
        "changes": changes,
        "budget": cell.budget,
        "f_N val": round(ev["cross_policy"]["f_N"]["FP"], 1),
        "f_D FP": round(ev["pairs"]["f_D"]["fp_acc"], 1),
        "drop pi_D": round(s["own"], 1),
        "drop pi_R": None if s["other"] is None else round(s["other"], 1),
        "drop uniform": round(s["uniform"], 1),
        "drop random": round(s["random_mean"], 1),
        "drop heldout": round(s["heldout_mean"], 1),
        "hidden gap": round(metrics.hidden_gap(s), 1),
        "minutes": round(minutes, 1),
    }
    print("RESULT " + json.dumps(row), flush=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
