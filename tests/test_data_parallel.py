"""Data-parallel trials (issue 23): a trial with ``resources.workers: 2`` is a Ray Train run of two
gloo workers started by its Tune trial (``bench.executors.ray.train``), on this machine's two cores.

The suite (``tests/suites/data-parallel.yaml``) has no batch norm, so two workers on halves of
each batch compute what one process computes on the whole batch: a two-worker run killed with
``kill -9`` mid-KD resumes from the checkpoint; its teacher's losses are its one-process twin's (to
float precision while the sums' order has not yet mattered), and pairs trained in one process on
its own teacher and KD end with its records; the event log shows each trial trained by two workers.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch

from bench.config.sections import Resources
from bench.executors.ray.train import effective_resources, workers_that_fit
from bench.names import Layout, kd_name, teacher_name
from dptq.engine import checkpoint_epoch
from tests.test_reliability import (
    _files,
    _finish,
    _kill_driver,
    _rows,
    _start,
    _wait_until,
)

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "tests" / "suites" / "data-parallel.yaml"
TEACHER, KD = teacher_name(0), kd_name("tests.support.nets:plain_net", 0)
KD_EPOCHS, PAIR_EPOCHS = 12, 3
# points on 100 test images: one image. Pairs trained for 3 epochs on the same teacher and KD
# agree to float precision (like the teacher's first 3 epochs below), so the records matched
# exactly when measured; one image of slack covers an argmax on a float tie on another CPU.
TOLERANCE = 1.0
ACCURACIES = ("f_n_acc", "f_d_fp_acc", "f_d_q_acc", "f_r_fp_acc", "f_r_q_acc", "f_d_random_acc")

pytestmark = [pytest.mark.ray]


def test_one_device_for_data_parallel_trials_is_said_in_one_line_and_trains_on_one(caplog):
    two_gpus = Resources(workers=2, gpus_per_worker=1, cpus_per_worker=4)
    assert (two_gpus.cpus, two_gpus.gpus) == (8, 2)
    with caplog.at_level(logging.WARNING, logger="bench"):
        one = effective_resources(two_gpus, {"CPU": 16, "GPU": 1})
    assert one.workers == 1 and (one.cpus, one.gpus) == (8, 2)
    [line] = [r.getMessage() for r in caplog.records]
    assert "workers 2" in line and "1 GPU" in line and "one process" in line
    caplog.clear()
    assert effective_resources(two_gpus, {"CPU": 16, "GPU": 2}) == two_gpus
    assert not caplog.records
    four = Resources(workers=4, cpus_per_worker=1)
    assert workers_that_fit(four, {"CPU": 2}) == 2
    with caplog.at_level(logging.WARNING, logger="bench"):
        assert effective_resources(four, {"CPU": 2}).workers == 2
    assert len(caplog.records) == 1


def _one_process_twin(tmp_path: Path) -> Path:
    text = SUITE.read_text().replace(
        "resources: {workers: 2, cpus_per_worker: 1}", "resources: {cpus: 2}"
    )
    assert text != SUITE.read_text()
    twin = tmp_path / "one-process.yaml"
    twin.write_text(text)
    return twin


def _trial_ends(run: Path) -> list[dict]:
    lines = (run / "events.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == "trial_end"]


@pytest.mark.slow
def test_two_workers_killed_mid_kd_resume_and_give_one_processs_records(tmp_path):
    """The two-worker run is killed with ``kill -9`` mid-KD, resumed with the same command, and
    ends with the records its one-process twin gives (``--local``, the same stages in one
    process): one run shows the data-parallel trials end to end, their resume, and that two
    workers on half batches train what one process trains."""
    run, board, log = tmp_path / "run", tmp_path / "board", tmp_path / "log.txt"
    layout = Layout(run)
    kd_trial, kd_done = layout.trial(KD, {}), layout.summary(KD)
    proc = _start(run, board, log, suite=SUITE)
    _wait_until(proc, lambda: checkpoint_epoch(kd_trial) >= 1 and not kd_done.exists(), log)
    _kill_driver(proc)
    at_kill = checkpoint_epoch(kd_trial)
    assert 1 <= at_kill < KD_EPOCHS, f"the kill landed after KD (epoch {at_kill})"
    assert not _files(board)

    assert _finish(_start(run, board, log, suite=SUITE)) == 0, log.read_text()[-3000:]
    kd = torch.load(kd_trial, map_location="cpu", weights_only=True)
    assert kd["resumed_from"] == [at_kill]
    assert [h["epoch"] for h in kd["history"]] == list(range(1, KD_EPOCHS + 1))
    [row] = _rows(board, suite="data-parallel")
    assert row["error"] is None and 30 < row["f_n_acc"] < 100  # the stages learned something
    ends = _trial_ends(run)
    # teacher, KD (its trial ended once: the killed one never did), the two pairs
    assert len(ends) == 4 and all(e["workers"] == 2 for e in ends), ends
    # Ray Train kept each trial's checkpoint (the trial file, reported every epoch): the newest
    # of each is its last epoch
    runs = sorted((run / "train").iterdir())
    assert len(runs) == 4
    for folder in runs:
        newest = max(folder.glob("checkpoint_*/stage.pt"), key=lambda p: p.parent.name)
        epochs = KD_EPOCHS if not folder.name.startswith("pair-") else PAIR_EPOCHS
        assert checkpoint_epoch(newest) == epochs, folder.name

    twin = _one_process_twin(tmp_path)
    # The same steps in another order of float sums: the teacher's epoch losses agree to float
    # precision for 3 epochs, then drift (1e-4 by epoch 10, measured), as any two runs whose
    # reductions differ do. That drift carries into KD and the pairs, whose records then differ
    # chaotically (up to 8 points on these 100 images, seen on one CPU and not another), so the
    # teacher is compared here and the records below, from pairs trained on the same inputs.
    one = _run_twin(tmp_path / "one", twin)
    mine, theirs = _history(layout, TEACHER), _history(Layout(one), TEACHER)
    assert len(mine) == len(theirs) == KD_EPOCHS
    for epoch, (a, b) in enumerate(zip(mine, theirs), 1):
        rel = abs(a - b) / b
        assert rel < (1e-6 if epoch <= 3 else 1e-3), (epoch, a, b)

    # Pairs trained in one process on this run's teacher and KD (copied: the stage settings
    # leave resources out, so the twin reuses them) end with this run's records, to one image
    pairs = _run_twin(tmp_path / "pairs", twin, stages_from=layout)
    [ref] = _rows(pairs.parent / "board", suite="data-parallel")
    for k in ACCURACIES:
        assert abs(row[k] - ref[k]) <= TOLERANCE, (k, row[k], ref[k])


def _run_twin(folder: Path, twin: Path, stages_from: Layout | None = None) -> Path:
    """The one-process twin run in ``folder`` (its run folder returned), started with the
    teacher and KD of ``stages_from`` where given."""
    run = folder / "run"
    folder.mkdir(parents=True, exist_ok=True)
    if stages_from is not None:
        (run / "artifacts").mkdir(parents=True)
        for name in (TEACHER, KD):
            shutil.copy(stages_from.summary(name), run / "artifacts")
            shutil.copytree(stages_from.trials / name, run / "trials" / name)
    stamps = {p: p.stat().st_mtime_ns for p in run.rglob("*.pt")}
    proc = _start(run, folder / "board", folder / "log.txt", suite=twin, extra=("--local",))
    assert _finish(proc) == 0, (folder / "log.txt").read_text()[-3000:]
    # the copied stages were reused, not trained again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    return run


def _history(layout: Layout, stage: str) -> list[float]:
    ckpt = torch.load(layout.artifact(stage), map_location="cpu", weights_only=True)
    return [h["train_loss"] for h in ckpt["history"]]
