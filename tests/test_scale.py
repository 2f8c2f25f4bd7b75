"""Scale-out on Ray: fractional GPUs pack trials onto a device (logical GPUs on the CPU)."""

from __future__ import annotations

import os
import tempfile
import time
from functools import partial
from pathlib import Path

import pytest
import torch

from bench.executors.base import SearchSpec
from bench.executors.ray.executor import RayExecutor
from bench.pipeline import search
from bench.pipeline.plan import Stage
from tests.support.helpers import make_suite

pytestmark = pytest.mark.slow
TRIALS = 8


def _wait_for_all(params: dict, *, ckpt: Path, report, acc) -> dict:
    """A stage that marks itself running and waits until all TRIALS are (a barrier: only trials
    that run at the same time can all pass it; how long their processes take to start does not
    matter, up to a 10-minute safety limit)."""
    import ray

    folder = ckpt.parent.parent / "running"
    folder.mkdir(exist_ok=True)
    (folder / f"{os.getpid()}-{ckpt.stem}").write_text(",".join(map(str, ray.get_gpu_ids())))
    t0 = time.time()
    while len(list(folder.iterdir())) < TRIALS and time.time() - t0 < 600:
        time.sleep(0.2)
    seen = len(list(folder.iterdir()))
    torch.save({"epoch": 0}, ckpt)
    result = {"epoch": 1, "score": params["delta"], "seen": seen}
    if report is not None:
        report(1, result)
    return result


def _trial_file(root: Path, params: dict) -> Path:
    return root / "trials" / f"{params['delta']:.6f}.pt"


def test_fractional_gpus_pack_eight_trials_on_two_devices(tmp_path):
    """``resources: {gpus: 0.25}`` on two (logical) GPUs: eight trials of a search run at once,
    four per device, each told its device by Ray."""
    import ray

    ray.shutdown()
    short = tempfile.mkdtemp(prefix="dptq-ray-")  # Ray's sockets need a short path
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, _temp_dir=short)
    try:
        suite = make_suite(resources={"cpus": 0.25, "gpus": 0.25})
        ex = RayExecutor(suite, tmp_path, None)
        (tmp_path / "trials").mkdir()
        ranges, start = search.space(suite)  # delta searched, the others fixed
        spec = SearchSpec(
            Stage("pack", "pair", 0),
            _wait_for_all,
            partial(_trial_file, tmp_path),
            ranges,
            start,
            TRIALS,
            1,
        )
        outcomes = ex.search(spec).trials
    finally:
        ray.shutdown()
    assert len(outcomes) == TRIALS and not [o for o in outcomes if o.error]
    assert all(o.metrics["seen"] == TRIALS for o in outcomes)  # every one saw all eight running
    devices = [p.read_text() for p in (tmp_path / "running").iterdir()]
    assert sorted(devices) == ["0"] * 4 + ["1"] * 4
