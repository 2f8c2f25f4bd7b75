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

    perf = sub.add_parser("perf", help="speed benchmarks; results go to leaderboard/perf/")
    perf.add_argument("which", choices=["core"], help="which benchmark")
    perf.add_argument("--out", default="leaderboard/perf", help="output folder")
    perf.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")

    for name, text in NOT_YET.items():
        sub.add_parser(name, help=f"{text} [not implemented yet]")
    run = sub.add_parser("run", help="run a suite (YAML) [not implemented yet: issue 5]")
    run.add_argument("suite", nargs="?")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(steps=args.steps, seed=args.seed)
    if args.command == "perf":
        from .perf import run_perf

        run_perf(args.which, out_dir=args.out, quick=args.quick)
        return 0
    print(f"python -m bench {args.command}: not implemented yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
