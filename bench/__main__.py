"""Command line: ``python -m bench COMMAND``. Each command parses its arguments and calls one
library function; everything here is callable from Python too."""

from __future__ import annotations

import argparse
import sys

NOT_YET = {
    "leaderboard": "regenerate the leaderboard views from the records (issue 6)",
    "list": "show suites, registered architectures and past runs (issue 6)",
    "compare": "compare two runs or architectures side by side (issue 6)",
}


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

    for name, text in NOT_YET.items():
        sub.add_parser(name, help=f"{text} [not implemented yet]")
    run = sub.add_parser(
        "run", help="run a suite (YAML): teacher, KD, pair searches, analyses, records"
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(steps=args.steps, seed=args.seed)
    if args.command == "run":
        from .runner import main_run

        return main_run(args.suite, args.out, args.address, args.fresh, args.dry_run)
    if args.command == "pipeline":
        return _pipeline(args)
    if args.command == "report":
        return _report(args)
    if args.command == "perf":
        from .perf import run_perf

        run_perf(args.which, out_dir=args.out, quick=args.quick)
        return 0
    print(f"python -m bench {args.command}: not implemented yet", file=sys.stderr)
    return 2


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
