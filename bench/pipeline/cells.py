"""``bench.pipeline.cells``: the cells' analyses, after the stage loop (:mod:`bench.pipeline.run`): each cell's
chosen pairs are analysed on the test split (read here, once) and become its record, or a
failed record naming the stage or analysis that failed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

from ..executors.base import process_accelerator
from ..executors.events import LOG, read_events, retries_of
from ..names import Layout
from ..records import build as records
from ..records import store
from . import plan, stages


@dataclass(frozen=True)
class Failure:
    """A stage, search or analysis that failed, and why (one line)."""

    stage: str
    error: str


def analyse_cells(
    suite, data, cells, layout: Layout, ex, done: dict, failed: list[Failure]
) -> list:
    """Each cell's record: reused when already written, else analysed (in parallel on Ray)."""
    env, events = records.environment(suite.resources.threads), read_events(layout.root)
    splits = {
        k: len(v) for k in ("train", "val", "test") if (v := getattr(data, k, None)) is not None
    }
    written = {r.id: r for r in store.load(layout.root)}
    built, jobs, bases, per_example = [], {}, {}, {}
    for cell in cells:
        needed = cell.stages()
        base = records.base(
            suite, cell, env, retries_of(events, needed), data.num_classes, data.skipped, splits
        )
        missing = [n for n in needed if n not in done]
        if missing:
            why = [f"{f.stage}: {f.error}" for n in needed for f in failed if f.stage == n]
            built.append(records.failed(base, why[0] if why else f"no finished {missing[0]}"))
            continue
        if base["id"] in written and (layout.report(base["id"]) / "report.md").exists():
            built.append(written[base["id"]])
            LOG.info(f"  {cell.key}: record already written, reused")
            continue
        bases[cell] = base
        kd = done[needed[1]]
        jobs[cell] = partial(
            _analyse_cell,
            suite,
            data,
            cell,
            layout.root / kd["file"],
            stages.f_n_accuracy(kd),
            {m: layout.root / done[cell.search(m)]["file"] for m in plan.MODES},
            layout.report(base["id"]),
        )
    if jobs:
        LOG.info(
            f"stage analyse: {len(jobs)} cell(s), analyses {', '.join(suite.analyses) or 'none'}"
        )
    for cell, result, error in ex.tasks(jobs):
        if error is not None:
            failed.append(Failure(f"analyse {cell.key}", error))
            built.append(records.failed(bases[cell], f"analyse {cell.key}: {error}"))
            continue
        chosen = {m: done[cell.search(m)] for m in plan.MODES}
        teacher, f_n = (done[n] for n in cell.stages()[:2])
        rec, per_example[bases[cell]["id"]] = records.success(
            suite, bases[cell], result, chosen, f_n, cell.allocations, teacher, result.seconds
        )
        built.append(rec)
        verdict = "valid" if rec.valid else f"INVALID ({'; '.join(rec.invalid_reasons)})"
        LOG.info(
            f"  {cell.key}: gap {rec.gap:.1f} points (f_D drop {rec.f_d_drop:.1f}, "
            f"f_R drop {rec.f_r_drop:.1f}), hidden gap {rec.hidden_gap:.1f}, "
            f"FP match {rec.fp_match:.1f}: {verdict}"
        )
    written_now = store.add(built, layout.root, per_example=per_example)
    LOG.info(f"{written_now} new record(s) in {layout.root / store.RECORDS}")
    return built


def _analyse_cell(suite, data, cell, kd_file, f_n_acc, pair_files, out):
    """One cell's analysis, in whichever process the executor runs it (its Accelerator)."""
    from ..executors.events import printing

    began = time.perf_counter()
    acc = process_accelerator(suite.resources)
    result = stages.analyse(
        suite, data, cell, kd_file, f_n_acc, pair_files, out, acc, progress=printing()
    )
    result.seconds = time.perf_counter() - began
    return result
