"""``run_suite``: a suite's stages in order, in this process (``local``) or on Ray.

Order: the teacher once per seed; KD once per student and seed (once in all with
``share_stages``); per cell (student, bit options, budget, seed) one search per mode
(:mod:`bench.search`), every trial evaluated and selected on the validation split; then each
cell's chosen pairs are analysed (the test split is read there, once) and become a record. The runner decides only *where* each stage runs
(:class:`bench.local.LocalExecutor` or :class:`bench.tuning.RayExecutor`); the stages themselves
are :mod:`bench.stages`. Safe to call again on the same run folder after any interruption:
finished stages are kept (``artifacts/``), unfinished searches resume (their trials from their
last epoch), and records already written are reused. Layout of the run folder:
:mod:`bench.plan`.
"""

from __future__ import annotations

import os
import shutil
from functools import partial
from pathlib import Path

import yaml

from dptq.io import write_atomic, write_json

from . import plan, records, search, stages, store
from .events import log_event, read_events, retries_of, say
from .suite import Suite, SuiteError, to_plain


def prepare(suite: Suite, run_dir: Path, dry_run: bool, out=say):
    """Load the data and plan the cells; everything that can be wrong fails here, in one line."""
    downloads = bool(getattr(suite.dataset.options, "download", False))
    # a dry run never downloads; otherwise a missing dataset fails here, before any stage
    data = None if (dry_run and downloads) else suite.dataset.load(suite.protocol)
    num_classes = data.num_classes if data is not None else 10  # L does not depend on it
    cells = plan.cells(suite, num_classes)
    out(plan.describe(suite, cells, run_dir))
    if data is not None and data.skipped:
        shown = ", ".join(data.skipped[:10]) + (" ..." if len(data.skipped) > 10 else "")
        out(
            f"warning: {len(data.skipped)} unreadable image(s) left out (bad_images: skip): {shown}"
        )
    return data, cells


def _claim(suite: Suite, layout: plan.Layout, fresh: bool) -> None:
    """Create the run folder for ``suite``; refuse one that holds another suite's run."""
    if fresh and layout.root.exists():
        shutil.rmtree(layout.root)
    layout.root.mkdir(parents=True, exist_ok=True)
    plain = to_plain(suite)
    if layout.suite_file.exists() and yaml.safe_load(layout.suite_file.read_text()) != plain:
        raise SuiteError(
            f"{layout.root}: holds a run of a different suite; use --fresh or another --out"
        )
    write_atomic(layout.suite_file, yaml.safe_dump(plain, sort_keys=False))
    log_event(layout.root, event="start", suite=suite.name, suite_hash=suite.digest())


def _executor(suite, run_dir: Path, local: bool, address: str | None, out, workers: int = 1):
    if local:
        from .local import LocalExecutor

        return LocalExecutor(suite, run_dir, out, workers)
    from .tuning import RayExecutor

    return RayExecutor(suite, run_dir, address, out)


def run_suite(
    suite: Suite,
    run_dir: str | Path,
    address: str | None = None,
    fresh: bool = False,
    dry_run: bool = False,
    local: bool = False,
    out=say,
    workers: int = 1,
    keep_checkpoints: bool = True,
) -> dict:
    """Run every stage of ``suite`` under ``run_dir``; returns {"records": [...], "failed": [...]}.

    ``keep_checkpoints=False`` (a smoke run): each search's trial checkpoints are deleted once its
    pair is chosen, and every checkpoint once the records are written (a 224 px grid keeps about
    12 GB otherwise); records, reports and events stay.

    ``local``: without Ray, in this process (or ``workers`` processes); otherwise on Ray
    (``address`` joins a cluster).
    """
    layout = plan.Layout(Path(run_dir).resolve())
    data, cells = prepare(suite, layout.root, dry_run, out)
    if dry_run:
        return {"records": [], "failed": [], "plan": cells}
    address = address or os.environ.get("RAY_ADDRESS")
    if not local and address:  # before anything is written: one line if it cannot be reached
        from .ray_init import check_reachable

        check_reachable(address)
    _claim(suite, layout, fresh)
    if local:
        import torch

        torch.set_num_threads(suite.resources.threads)  # as a trial would
    ex = _executor(suite, layout.root, local, address, out, workers)
    failed: list[dict] = []

    stage_seeds = sorted({c.stage_seed for c in cells})
    teachers = {}
    for seed in stage_seeds:
        name = plan.teacher_name(seed)
        if not layout.teacher(seed).exists():
            out(f"stage {name}")
            job = partial(stages.teacher, suite, data, seed)
            teachers[name] = partial(
                ex.stage, name, job, layout.stage_trial(name), layout.teacher(seed)
            )
    for name, error in _each(ex, teachers):
        if error:
            failed.append({"stage": name, "error": error})

    kds, labels = {}, {}
    for seed in stage_seeds:
        if not layout.teacher(seed).exists():
            continue
        for st in suite.students:
            name = plan.kd_name(st.name, seed)
            if not layout.kd(st.name, seed).exists():
                out(f"stage {plan.kd_label(st.name, seed)}")
                job = partial(stages.kd, suite, data, seed, st.name, layout.teacher(seed))
                kds[name] = partial(
                    ex.stage, name, job, layout.stage_trial(name), layout.kd(st.name, seed)
                )
                labels[name] = plan.kd_label(st.name, seed)
    for name, error in _each(ex, kds):  # every student at once
        if error:
            failed.append({"stage": labels[name], "error": error})
    f_n_acc: dict[tuple[str, int], float] = {}  # (student, stage seed) -> on the validation split
    for seed in stage_seeds:
        for st in suite.students:
            if layout.kd(st.name, seed).exists():
                f_n_acc[st.name, seed] = stages.f_n_accuracy(layout.kd(st.name, seed))

    chosen: dict[str, dict] = {}
    ranges, start = search.space(suite)
    for wave in _waves(suite):  # every search of a wave at once
        searches = {}
        for cell in cells:
            if (cell.student, cell.stage_seed) not in f_n_acc:
                continue
            for mode in wave:
                name = cell.search(mode)
                if layout.pair(name).exists() and layout.summary(name).exists():
                    chosen[name] = store.read_json(layout.summary(name))
                    continue
                out(f"stage {name}")
                job = partial(
                    stages.pair,
                    suite,
                    data,
                    cell,
                    mode,
                    kd_file=layout.kd(cell.student, cell.stage_seed),
                    f_n_acc=f_n_acc[cell.student, cell.stage_seed],
                    robust_file=layout.pair(cell.search("robust")),
                )
                searches[name] = partial(
                    _search,
                    ex,
                    layout,
                    name,
                    job,
                    ranges,
                    start,
                    search.num_trials(suite),
                    keep_checkpoints,
                )
        for name, (info, errors) in _each(ex, searches):
            failed += errors
            if info is not None:
                chosen[name] = info

    built = _analyse(suite, data, cells, layout, ex, chosen, f_n_acc, failed, out)
    if not keep_checkpoints:
        for folder in (layout.root / "trials", layout.tune):
            shutil.rmtree(folder, ignore_errors=True)
        for ckpt in (layout.root / "artifacts").rglob("*.pt"):
            ckpt.unlink()
        out("checkpoints deleted (records, reports and events kept)")
    return {"records": built, "failed": failed}


def _waves(suite: Suite) -> list[tuple[str, ...]]:
    """Modes whose searches can run together: all at once, unless a detrimental pair's stealth
    term reads its cell's chosen robust policy (then the robust searches go first)."""
    p = suite.pair
    stealth = p.stealth > 0 or suite.search.stealth is not None  # searched: trials may use it
    if stealth and "robust_policy" in p.stealth_allocations:
        return [("robust",), ("detrimental",)]
    return [tuple(suite.modes)]


def _each(ex, calls: dict):
    """``(name, result)`` of each call, run concurrently where the executor can; a call that
    raised gives its reason as a failed stage (a stage's error string, or a search's)."""
    for name, result, error in ex.concurrently(calls):
        if error is None:
            yield name, result
        elif name.startswith("pair-"):
            yield name, (None, [{"stage": name, "error": error}])
        else:
            yield name, error


def _search(
    ex, layout, name, job, ranges, start, num_trials, keep_checkpoints=True
) -> tuple[dict | None, list[dict]]:
    """One pair search to its end: trials, the chosen pair copied, the summary written last."""
    outcomes, top = ex.search(name, job, partial(layout.trial, name), ranges, start, num_trials)
    errors = [{"stage": name, "error": t.error} for t in outcomes if t.error]
    best = search.best_of(outcomes, top)
    if best is None:
        return None, errors
    best.copy_to(layout.pair(name))
    info = search.summary(best, outcomes, layout.pair(name))
    write_json(layout.summary(name), info)  # marks the search done: last, whole
    if not keep_checkpoints:  # the trials' working checkpoints: the chosen pair is copied
        shutil.rmtree(layout.root / "trials" / name, ignore_errors=True)
        shutil.rmtree(layout.tune / name, ignore_errors=True)
    return info, errors


def verdicts(records: list[dict]) -> list[str]:
    """A line per row that does not count (invalid, with its reasons) or is not stealthy."""
    lines = []
    for r in records:
        if r.get("error") is None and not r.get("valid", False):
            lines.append(f"INVALID {r['id']}: {'; '.join(r.get('invalid_reasons', []))}")
    return lines


def _analyse(suite, data, cells, layout, ex, chosen, f_n_acc, failed, out) -> list[dict]:
    """Each cell's record: reused when already written, else analysed (in parallel on Ray)."""
    env, events = records.environment(), read_events(layout.root)
    done = {r["id"]: r for r in store.load(layout.root)}
    built, jobs, bases, per_example = [], {}, {}, {}
    num_classes = data.num_classes
    for cell in cells:
        retries = retries_of(events, cell.stages(suite.modes))
        base = records.base(suite, cell, env, retries, num_classes)
        base["skipped_images"] = list(getattr(data, "skipped", ()))
        names = {m: cell.search(m) for m in ("robust", "detrimental")}
        missing = [m for m, n in names.items() if n not in chosen]
        if (cell.student, cell.stage_seed) not in f_n_acc or missing:
            stages_ = cell.stages(suite.modes)
            why = [f"{f['stage']}: {f['error']}" for f in failed if f["stage"] in stages_]
            error = why[0] if why else f"no finished {', '.join(missing)} pair"
            built.append(records.failed(base, error))
            continue
        report = layout.report(base["id"]) / "report.md"
        if base["id"] in done and report.exists():
            built.append(done[base["id"]])
            out(f"  {cell.key}: record already written, reused")
            continue
        bases[cell] = base
        jobs[cell] = partial(
            stages.analyse,
            suite,
            data,
            cell,
            layout.kd(cell.student, cell.stage_seed),
            f_n_acc[cell.student, cell.stage_seed],
            {m: layout.pair(n) for m, n in names.items()},
            layout.report(base["id"]),
        )
    if jobs:
        out(f"stage analyse: {len(jobs)} cell(s), analyses {', '.join(suite.analyses) or 'none'}")
    for cell, result, error in ex.analyse(jobs):
        if error is not None:
            failed.append({"stage": f"analyse {cell.key}", "error": error})
            built.append(records.failed(bases[cell], f"analyse {cell.key}: {error}"))
            continue
        names = {m: cell.search(m) for m in ("robust", "detrimental")}
        rec, per_example[bases[cell]["id"]] = records.success(
            suite,
            bases[cell],
            result,
            {m: chosen[n] for m, n in names.items()},
            f_n_acc[cell.student, cell.stage_seed],
            cell.allocations,
        )
        built.append(rec)
        verdict = "valid" if rec["valid"] else f"INVALID ({'; '.join(rec['invalid_reasons'])})"
        out(
            f"  {cell.key}: gap {rec['gap']:.1f} points (f_D drop {rec['f_d_drop']:.1f}, "
            f"f_R drop {rec['f_r_drop']:.1f}), hidden gap {rec['hidden_gap']:.1f}, "
            f"FP match {rec['fp_match']:.1f}: {verdict}"
        )
    written = store.add(built, layout.root, per_example=per_example)
    out(f"{written} new record(s) in {layout.root / store.RECORDS}")
    return built
