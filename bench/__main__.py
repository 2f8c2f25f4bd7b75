"""Command line: ``python -m bench COMMAND``. Each command parses its arguments and calls one
library function; everything here is callable from Python too. One job, over 300 lines: the
command line, its ten commands' arguments and the one call each makes."""

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

    perf = sub.add_parser("perf", help="speed benchmarks; results go to leaderboard/perf/")
    perf.add_argument(
        "which", choices=["core", "train", "corruptions", "int8", "gpu"], help="which benchmark"
    )
    perf.add_argument("--out", default="leaderboard/perf", help="output folder")
    perf.add_argument("--quick", action="store_true", help="fewer repetitions (smoke test)")

    au = sub.add_parser(
        "audit",
        help="audit a trained model: the worst bit allocation at a budget (weights untouched)",
        description="Train only an adversarial bit-allocation policy against a frozen model "
        "and report how far it drops the model's accuracy at an exact budget (test split), "
        "beside the uniform and random allocations. Exit 2 on bad input (one line).",
    )
    au.add_argument("--model", required=True, help="timm name or package.module:function")
    au.add_argument("--checkpoint", required=True, help="state_dict file (weights_only load)")
    au.add_argument("--dataset", default="digits", help="registered dataset (default digits)")
    au.add_argument(
        "--dataset-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dataset option, e.g. image_size=32 or root=data/pets (repeatable)",
    )
    au.add_argument("--options", default="3-10", help="bit-width options: 3-10 or 4,6,8")
    au.add_argument("--avg-bits", type=float, default=4.0, help="budget as average bits x L")
    au.add_argument("--budget", type=int, default=None, help="absolute budget (overrides)")
    au.add_argument("--epochs", type=int, default=5, help="epochs of the adversary (default 5)")
    au.add_argument("--lr", type=float, default=1e-2, help="its learning rate (default 0.01)")
    au.add_argument(
        "--oracle-steps", type=int, default=0, help="also N steps of a per-image oracle"
    )
    au.add_argument("--seed", type=int, default=0)
    au.add_argument("--out", default=None, help="report folder (default runs/audit/<model>)")

    lb = sub.add_parser(
        "leaderboard", help="regenerate the leaderboard views (README.md, PNGs, index.html)"
    )
    lb.add_argument(
        "--add",
        metavar="RUN",
        help="first add the records of a run folder (or another board), verified",
    )
    lb.add_argument("--dir", default="leaderboard", help="leaderboard folder (default leaderboard)")
    lb.add_argument(
        "--trusted",
        action="store_true",
        help="also write the views of the checked rows only to DIR/trusted: reproduced on another machine or re-evaluated from their networks (any machine; the row says which), no check outside tolerance or differing",
    )
    lb.add_argument(
        "--readme",
        metavar="FILE",
        help="also regenerate FILE's results section (between its markers) from the records",
    )
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
    run.add_argument("--out", help="run folder (default runs/<suite name>); rerun to resume")
    run.add_argument("--address", default=None, help="join a Ray cluster (or set RAY_ADDRESS)")
    run.add_argument(
        "--local",
        action="store_true",
        help="run every stage in this process, without Ray (same run folder, same records)",
    )
    run.add_argument(
        "--workers",
        type=int,
        help="with --local: a wave's searches and the cells' analyses in N processes "
        "(default 1; with --smoke one per core)",
    )
    run.add_argument(
        "--seeds",
        help="run only these of the suite's seeds, e.g. '0' or '0,1': the same run folder and "
        "the same records as the whole run; the command without it later runs the rest",
    )
    run.add_argument(
        "--cells",
        help="run only the cells whose key matches one of these comma-separated globs, e.g. "
        "'resnet18-*' or '*-II-130-*' (keys: <student>-<version>-<budget>-s<seed>, as --dry-run "
        "lists them): a grid in parts, each with the whole run's records",
    )
    run.add_argument("--fresh", action="store_true", help="delete the run folder and start over")
    run.add_argument(
        "--dry-run", action="store_true", help="validate, print the plan; start nothing"
    )
    run.add_argument(
        "--smoke",
        action="store_true",
        help="every cell, stage and analysis for a couple of steps on synthetic images at the "
        "suite's size and class count (runs/<name>-smoke; never the leaderboard)",
    )
    run.add_argument(
        "--leaderboard",
        default="leaderboard",
        help="the leaderboard folder: its rows are shown beside the run's in RUN/board ('' for none)",
    )
    run.add_argument(
        "--submit",
        action="store_true",
        help="also add the run's records to the leaderboard folder (otherwise it is not touched)",
    )
    rep = sub.add_parser(
        "reproduce",
        help="rerun a board's record on this machine from its suite text; keep it beside the "
        "record as a reproduction (the record is never touched)",
    )
    rep.add_argument("record", help="the record's id, e.g. default/b0107eab9688/resnet18-I-80-s0")
    rep.add_argument("--dir", default="leaderboard", help="the board (default leaderboard)")
    rep.add_argument("--out", help="the rerun's folder (default runs/reproduce-<suite>)")
    rep.add_argument("--ray", action="store_true", help="run on Ray (default: in this process)")
    rep.add_argument("--address", help="a Ray cluster to join (with --ray)")
    rep.add_argument("--suite", help="the record's suite file, for a record without its suite text")
    exp = sub.add_parser(
        "export",
        help="write a run's submission bundle: its records, per-example files and networks "
        "(safetensors, with a manifest of their hashes)",
    )
    exp.add_argument("run", help="the run folder")
    exp.add_argument("--to", required=True, help="the bundle's folder")
    ver = sub.add_parser(
        "verify",
        help="check a board's record: --rerun re-evaluates it from its networks (a bundle) and keeps the result beside it (reevaluations/)",
    )
    ver.add_argument("record", help="the record's id")
    ver.add_argument("--dir", default="leaderboard", help="the board (default leaderboard)")
    ver.add_argument("--rerun", action="store_true", help="re-evaluate it from --checkpoints")
    ver.add_argument("--checkpoints", help="the bundle (bench export) holding its networks")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from .tools.demo import run_demo

        return run_demo(steps=args.steps, seed=args.seed)
    if args.command == "run":
        return _run(args)
    if args.command == "audit":
        return _audit(args)
    if args.command == "reproduce":
        return _reproduce(args)
    if args.command in ("export", "verify"):
        return _bundle(args)
    if args.command in ("leaderboard", "list", "compare"):
        return _leaderboard(args)
    if args.command == "perf":
        from .perf.run import run_perf

        run_perf(args.which, out_dir=args.out, quick=args.quick)
        return 0
    return 2


def _run(args) -> int:
    """``python -m bench run``: :func:`bench.run`, its outcome printed. Exit 0: every trial
    finished; 1: some failed (each named on stderr, and a failed entry in the run's records); 2:
    bad input (one line: file, what is wrong, what to do; nothing written)."""
    from dptq.data import DataError
    from dptq.engine import CheckpointError

    from .config.suite import SuiteError, load_suite
    from .executors.events import ClusterError, to_stdout
    from .pipeline.run import run
    from .records import store

    to_stdout()
    try:
        res = run(
            load_suite(args.suite),
            args.out,
            address=args.address,
            fresh=args.fresh,
            dry_run=args.dry_run,
            local=args.local,
            workers=args.workers,
            leaderboard=args.leaderboard or None,
            submit=args.submit,
            smoke=args.smoke,
            seeds=_seed_list(args.seeds),
            cells=tuple(args.cells.split(",")) if args.cells is not None else None,
        )
    except (
        SuiteError,
        FileNotFoundError,
        CheckpointError,
        store.RecordError,
        DataError,
        ClusterError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if res.board is not None:
        print(f"board: {res.board} (the run's rows beside the board's)")
    if args.submit and res.records:
        print(f"leaderboard: {res.added} new record(s) in {args.leaderboard}/{store.RECORDS}")
    for line in res.notes:
        print(line)
    for line in [] if res.smoke else res.invalid():
        print(line)
    for f in res.failed:
        print(f"FAILED {f.stage}: {f.error}", file=sys.stderr)
    if res.smoke and not args.dry_run:
        print(res.smoke_verdict())
    return res.exit_code


def _reproduce(args) -> int:
    """``python -m bench reproduce RECORD``: one line and exit 2 on bad input."""
    from pathlib import Path

    from .config.suite import SuiteError
    from .executors.events import to_stdout
    from .pipeline.reproduce import reproduce
    from .records.record import RecordError

    to_stdout()
    try:
        res, notes = reproduce(
            args.record,
            Path(args.dir),
            args.out,
            local=not args.ray,
            address=args.address,
            suite_file=Path(args.suite) if args.suite else None,
        )
    except (RecordError, SuiteError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for line in notes or ["the rerun made no record of that cell (its failures are above)"]:
        print(line)
    return res.exit_code


def _bundle(args) -> int:
    """``bench export RUN --to DIR`` and ``bench verify RECORD --rerun --checkpoints DIR``: one
    line and exit 2 on bad input; verify exits 1 when the re-evaluation does not agree with the
    record (identical with the record's own arithmetic, within the tolerance with other
    arithmetic: another machine, or other vector kernels on the same one)."""
    from pathlib import Path

    from dptq.bundle import BundleError

    from .config.suite import SuiteError
    from .pipeline import bundle
    from .records.record import RecordError

    try:
        if args.command == "export":
            ids = bundle.export(Path(args.run), Path(args.to))
            print(f"exported {len(ids)} record(s) with their networks to {args.to}")
            return 0
        if not args.rerun or not args.checkpoints:
            print(
                "error: verify needs --rerun --checkpoints DIR (the record's bundle)",
                file=sys.stderr,
            )
            return 2
        result = bundle.rerun(args.record, Path(args.dir), Path(args.checkpoints))
    except (RecordError, BundleError, SuiteError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(bundle.describe(args.record, result))
    kept = bundle.keep(Path(args.dir), result)
    print(f"kept as a re-evaluation: {kept}" if kept else "not kept: the record names no networks")
    return 0 if result["agrees"] else 1


def _seed_list(text: str | None) -> tuple[int, ...] | None:
    """``--seeds 0,2`` as integers (None: every seed); one line when it is not a list of them."""
    if text is None:
        return None
    from .config.suite import SuiteError

    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise SuiteError(
            f"--seeds: {text[:40]!r} is not a comma-separated list of integers, e.g. 0,1"
        ) from None


def _audit(args) -> int:
    """``python -m bench audit``: one line and exit 2 on bad input, nothing written."""
    from pathlib import Path

    from .names import slug
    from .tools.audit import AuditError, parse_dataset_options, parse_options, run_audit, summary

    try:
        from dptq.audit import AuditConfig

        cfg = AuditConfig(epochs=args.epochs, lr=args.lr, oracle_steps=args.oracle_steps)
        out = Path(args.out) if args.out else Path("runs/audit") / slug(args.model)
        result = run_audit(
            args.model,
            Path(args.checkpoint),
            args.dataset,
            parse_options(args.options),
            args.avg_bits,
            args.budget,
            parse_dataset_options(args.dataset_option),
            out,
            cfg,
            args.seed,
        )
    except (AuditError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(result))
    print(f"report: {out / 'report.md'}")
    return 0


def _leaderboard(args) -> int:
    from pathlib import Path

    from .board.leaderboard import compare, regenerate, submit, update_readme
    from .records import store

    folder = Path(args.dir)
    try:
        if args.command == "leaderboard":
            if args.add:
                notes: list[str] = []
                print(f"added {submit(Path(args.add), folder, notes)} record(s)")
                for line in notes:
                    print(line)
            for p in regenerate(folder):
                print(f"wrote {p}")
            if args.trusted:
                for p in regenerate(folder, folder / "trusted", trusted=True):
                    print(f"wrote {p}")
            if args.readme:
                changed = update_readme(Path(args.readme), folder)
                print(f"{'updated' if changed else 'unchanged'}: {args.readme} (results section)")
        elif args.command == "list":
            _list(folder, store.load(folder))
        else:
            table = compare(store.load(folder), args.a, args.b)
            print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    except store.RecordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _list(folder, records) -> None:
    from pathlib import Path

    from .names import RUNS
    from .records import store

    print("suites:")
    for p in sorted(Path("suites").glob("*.yaml")):
        print(f"  {p}")
    print("architectures on the leaderboard:")
    for arch in sorted({r.architecture for r in records}):
        n = sum(r.architecture == arch and r.error is None for r in records)
        print(f"  {arch} ({n} record(s))")
    print("past runs:")
    for p in sorted(RUNS.glob(f"*/{store.RECORDS}")):
        print(f"  {p.parent} ({len(store.load(p.parent))} record(s))")


if __name__ == "__main__":
    sys.exit(main())
