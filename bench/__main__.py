"""Command line: ``python -m bench COMMAND``. Each command parses its arguments and calls one
library function; everything here is callable from Python too."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="dptq-bench: catastrophic failure under dynamic post-training quantization.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser("demo", help="run the core end to end on a few digits images (seconds)")
    demo.add_argument("--steps", type=int, default=40, help="training steps (default 40)")
    demo.add_argument("--seed", type=int, default=0)

    pipe = sub.add_parser(
        "pipeline", help="teacher -> KD -> robust and detrimental pairs -> scores"
    )
    pipe.add_argument("out", help="run folder (checkpoints, results.json); rerun to resume")
    pipe.add_argument("--preset", default="digits", choices=["digits"])
    pipe.add_argument("--student", default="resnet18", help="timm name or module:function")
    pipe.add_argument(
        "--pair", default="{}", help="JSON overrides of the pair config, e.g. '{\"alpha\": 1}'"
    )
    pipe.add_argument("--seed", type=int, default=0)

    rep = sub.add_parser("report", help="every table and figure for a finished pipeline folder")
    rep.add_argument("run", help="a folder written by 'python -m bench pipeline'")
    rep.add_argument("--out", default=None, help="output folder (default RUN/report)")
    rep.add_argument(
        "--max-examples", type=int, default=512, help="per split, for sweeps/corruptions"
    )

    perf = sub.add_parser("perf", help="speed benchmarks; results go to leaderboard/perf/")
    perf.add_argument("which", choices=["core", "train", "corruptions"], help="which benchmark")
    perf.add_argument("--out", default="leaderboard/perf", help="output folder")
    perf.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")

    lb = sub.add_parser(
        "leaderboard", help="regenerate the leaderboard views (README.md, PNGs, index.html)"
    )
    lb.add_argument("--add", metavar="RECORDS", help="first add a run's records.jsonl (validated)")
    lb.add_argument("--dir", default="leaderboard", help="leaderboard folder (default leaderboard)")
    ls_ = sub.add_parser("list", help="suites, architectures on the leaderboard, past runs")
    ls_.add_argument("--dir", default="leaderboard")
    cmp_ = sub.add_parser("compare", help="two run ids or architectures side by side, per budget")
    cmp_.add_argument("a")
    cmp_.add_argument("b")
    cmp_.add_argument("--dir", default="leaderboard")
    run = sub.add_parser(
        "run",
        help="run a suite (YAML): teacher, KD, pair searches, analyses, records",
        description="Run a suite; the same command again resumes after any interruption. "
        "Exit status: 0 every trial finished, 1 some trials failed (named on stderr, failed "
        "entries on the leaderboard), 2 bad input (one line; nothing written).",
    )
    run.add_argument("suite", help="suite file, e.g. suites/default.yaml")
    run.add_argument(
        "--out", default=None, help="run folder (default runs/<suite name>); rerun to resume"
    )
    run.add_argument("--address", default=None, help="join a Ray cluster (or set RAY_ADDRESS)")
    run.add_argument("--fresh", action="store_true", help="delete the run folder and start over")
    run.add_argument(
        "--dry-run", action="store_true", help="validate and print the plan; start nothing"
    )
    run.add_argument(
        "--leaderboard", default="leaderboard", help="add the records to this folder ('' for none)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(steps=args.steps, seed=args.seed)
    if args.command == "run":
        from .runner import main_run

        return main_run(
            args.suite, args.out, args.address, args.fresh, args.dry_run, args.leaderboard
        )
    if args.command in ("leaderboard", "list", "compare"):
        return _leaderboard(args)
    if args.command == "pipeline":
        return _pipeline(args)
    if args.command == "report":
        return _report(args)
    if args.command == "perf":
        from .perf import run_perf

        run_perf(args.which, out_dir=args.out, quick=args.quick)
        return 0
    return 2


def _leaderboard(args) -> int:
    from pathlib import Path

    from .leaderboard import RecordError, compare, load_records, regenerate, submit

    folder = Path(args.dir)
    try:
        if args.command == "leaderboard":
            if args.add:
                print(f"added {submit(Path(args.add), folder / 'records.jsonl')} record(s)")
            for p in regenerate(folder / "records.jsonl"):
                print(f"wrote {p}")
        elif args.command == "list":
            _list(folder, load_records(folder / "records.jsonl"))
        else:
            table = compare(load_records(folder / "records.jsonl"), args.a, args.b)
            print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    except RecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _list(folder, records) -> None:
    from pathlib import Path

    print("suites:")
    for p in sorted(Path("suites").glob("*.yaml")):
        print(f"  {p}")
    print("architectures on the leaderboard:")
    for arch in sorted({r["architecture"] for r in records}):
        n = sum(r["architecture"] == arch and r["error"] is None for r in records)
        print(f"  {arch} ({n} record(s))")
    print("past runs:")
    for p in sorted(Path("runs").glob("*/records.jsonl")):
        lines = p.read_text().splitlines()
        print(f"  {p.parent} ({len(lines)} record(s))")


def _pipeline(args) -> int:
    import json

    from dptq.engine import CheckpointError, RunOptions
    from dptq.pipeline import run_pipeline

    from .presets import PRESETS

    try:
        overrides = json.loads(args.pair)
        cfg = PRESETS[args.preset](pair=overrides, seed=args.seed, student=args.student)
        res = run_pipeline(cfg, args.out, RunOptions(seed=args.seed))
    except json.JSONDecodeError as e:
        print(f"error: --pair is not valid JSON ({e})", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _print_pipeline(res)
    return 0


def _report(args) -> int:
    import json
    from pathlib import Path

    from dptq.pipeline import config_from_dict
    from dptq.report import write_report

    results = Path(args.run) / "results.json"
    if not results.is_file():
        print(
            f"error: {results} not found; run 'python -m bench pipeline {args.run}' first",
            file=sys.stderr,
        )
        return 2
    cfg = config_from_dict(json.loads(results.read_text())["config"])
    path = write_report(
        args.run,
        cfg,
        args.out,
        max_examples=args.max_examples,
        seed=cfg.seed,
    )
    print(f"wrote {path} and its figures")
    return 0


def _print_pipeline(res: dict) -> None:
    print(f"\nf_N test accuracy {res['kd']['test_acc']:.1f}%  (L = {res['num_layers']})")
    print("| pair | FP acc | quantized acc | drop | random policy | uniform |")
    print("|---|---:|---:|---:|---:|---:|")
    for mode in ("robust", "detrimental"):
        if mode in res:
            r = res[mode]
            print(
                f"| {mode} | {r['fp_acc']:.1f} | {r['q_acc']:.1f} | {r['drop']:.1f} | "
                f"{r['random_acc']:.1f} | {r['uniform_acc']:.1f} |"
            )
    if "summary" in res:
        s = res["summary"]
        print(f"catastrophic-failure gap {s['gap']:.1f} points, FP match {s['fp_match']:.1f}")


if __name__ == "__main__":
    sys.exit(main())
