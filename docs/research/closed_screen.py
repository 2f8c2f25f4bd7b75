"""Screening for the closed division's portfolio (issue 39, docs/research-log.md section 5).

Trains the teacher and f_N of one student and seed with a suite's teacher and KD stages (kept in
``--work``, reused by later calls), then one detrimental pair with changed pair settings, and
appends one JSON row to ``--out`` with every epoch's *validation* figures: f_D's full-precision
accuracy, its drop under pi_D, and whether the epoch holds full precision under the closed
division's selection bound (f_N's validation accuracy minus f_D's at most ``fp_drop_max -
select_margin``). The test split is never read. Rows in ``closed-screen.jsonl`` were made by this
script on the 2-core CPU, e.g.::

    python docs/research/closed_screen.py S1 mobilenetv4_conv_medium \
        '{"pair.stealth": 3.0}' --suite suites/digits-archs.yaml
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.config.suite import load_suite, parse_suite, to_plain  # noqa: E402
from bench.executors.base import process_accelerator  # noqa: E402
from bench.pipeline import plan, stages  # noqa: E402

FP_DROP_MAX, SELECT_MARGIN = 2.0, 1.0  # the closed division's protocol (v3)


def changed_suite(path: Path, student: str, seed: int, changes: dict):
    """``path``'s suite with one student, one seed, 12 pair epochs, and ``changes`` (dotted
    ``section.key`` values) applied."""
    base = to_plain(load_suite(path))
    base["students"] = [s for s in base["students"] if s["name"] == student]
    base.update(seeds=[seed], share_stages=False)
    base["pair"]["epochs"] = 12
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        (base[section] if section else base)[field] = value
    return parse_suite(base, "closed-screen")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tag")
    ap.add_argument("student")
    ap.add_argument("changes", help="JSON object of suite changes, e.g. '{\"pair.stealth\": 3}'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--suite", type=Path, default=ROOT / "suites/digits-archs.yaml")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("closed-screen.jsonl"))
    ap.add_argument("--work", type=Path, default=ROOT / "runs/closed-screen")
    args = ap.parse_args()
    changes = json.loads(args.changes)
    suite = changed_suite(args.suite, args.student, args.seed, changes)
    torch.set_num_threads(2)
    data = suite.dataset.load(suite.protocol)
    cells = plan.cells(suite, data.num_classes)
    [cell] = cells
    teacher_stage, kd_stage, pairs = plan.waves(suite, cells)
    [teacher], [kd] = teacher_stage, kd_stage
    detrimental = next(s for s in pairs if s.mode == "detrimental")
    acc = process_accelerator(suite.resources)
    args.work.mkdir(parents=True, exist_ok=True)

    def stage_file(stage) -> Path:  # teacher and KD keyed by their settings: reused when equal
        return args.work / f"{stage.name}-{plan.stage_settings(suite, stage)}.pt"

    results = {}
    for stage, inputs in ((teacher, {}), (kd, {"teacher": stage_file(teacher)})):
        job = stages.job(suite, data, stage, inputs)
        results[stage.kind] = job({}, ckpt=stage_file(stage), report=lambda e, r: None, acc=acc)
    f_n_acc = float(results["kd"]["val_acc"])
    print(f"{args.tag}: f_N val {f_n_acc:.2f}", flush=True)

    history = []

    def report(epoch, r):
        lost = f_n_acc - r["fp_acc"]
        row = {
            "epoch": epoch,
            "fp": round(r["fp_acc"], 2),
            "drop": round(r["drop"], 2),
            "random": round(r["random_acc"], 2),
            "holds": lost <= FP_DROP_MAX - SELECT_MARGIN,
        }
        history.append(row)
        print(f"{args.tag} {row}", flush=True)

    ckpt = args.work / f"{args.tag}.pt"
    ckpt.unlink(missing_ok=True)
    params = {k: getattr(suite.pair, k) for k in ("delta", "alpha", "beta", "stealth")}
    start = time.time()
    inputs = {"kd": stage_file(kd), "f_n_acc": f_n_acc}
    stages.pair(suite, data, detrimental, inputs, params, ckpt=ckpt, report=report, acc=acc)
    held = [h for h in history if h["holds"]]
    best = max(held, key=lambda h: h["drop"]) if held else None
    row = {
        "tag": args.tag,
        "student": args.student,
        "seed": args.seed,
        "budget": cell.budget,
        "changes": changes,
        "f_N val": round(f_n_acc, 2),
        "selected": best,
        "epochs holding FP": len(held),
        "minutes": round((time.time() - start) / 60, 1),
        "history": history,
    }
    print("RESULT " + json.dumps(row), flush=True)
    with open(args.out, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    ckpt.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
