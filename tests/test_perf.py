"""``python -m bench perf gpu`` runs anywhere (on the CPU here; its numbers are a GPU's there)."""

import pytest
import torch

from bench.perf.gpu import bench_arch, markdown_gpu


def test_perf_gpu_measures_every_step_and_renders():
    row = bench_arch("resnet18", torch.device("cpu"), size=32, batch=4, reps=1, precision="no")
    for key in ("plain_img_per_s", "quantized_img_per_s", "pair_img_per_s"):
        assert row[key] > 0
    # the ratio is the two measured times' (speed is a benchmark's to report, never asserted)
    assert row["pair_over_plain"] == pytest.approx(row["plain_img_per_s"] / row["pair_img_per_s"])
    assert 0 < row["knapsack_share_at_256"] and row["gpu_busy_pct"] is None and row["L"] == 20
    corr = [{"image": 64, "batched_img_per_s": 900.0, "pil_img_per_s": 90.0, "speedup": 10.0}]
    md = markdown_gpu({"gpu": {"device": "none (CPU)", "steps": [row], "corruptions": corr}})
    assert "| resnet18 | 20 |" in md and "10.0x" in md and "Device: none (CPU)" in md
