"""The suite runner through real Ray Tune and Optuna on the CPU: end to end, resume, two nodes."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bench import runner
from bench.suite import load_suite

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "suites" / "tiny.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    yield
    import ray

    ray.shutdown()


def _trial_dirs(run_dir: Path, experiment: str) -> list[Path]:
    return [
        p
        for p in (run_dir / "tune" / experiment).iterdir()
        if p.is_dir() and p.name.startswith("pair_trainable")
    ]


def _headline(records):
    keys = ("id", "f_n_acc", "f_r_fp_acc", "f_r_q_acc", "f_d_fp_acc", "f_d_q_acc", "gap", "best")
    return [{k: r.get(k) for k in keys} for r in records]


def test_tiny_suite_end_to_end_and_resume(tmp_path, local_ray, monkeypatch):
    suite = load_suite(TINY)
    straight = runner.run_suite(suite, tmp_path / "a", out=lambda *_: None)
    assert not straight["failed"]
    [rec] = straight["records"]
    assert rec["error"] is None and rec["trials"] == {"robust": 2, "detrimental": 2}
    assert set(rec["best"]["robust"]) == {"delta", "alpha", "beta"}
    report = Path(rec["report"]).parent
    for f in (
        "report.md",
        "transitory.png",
        "cross_policy.png",
        "histograms.png",
        "per_example.json",
    ):
        assert (report / f).exists(), f
    assert len((tmp_path / "a" / "records.jsonl").read_text().splitlines()) == 1
    for mode in ("robust", "detrimental"):
        assert len(_trial_dirs(tmp_path / "a", f"pair-tests_test_train_small_net-I-12-{mode}")) == 2

    # stopped after the first pair search, then the same call again
    real_search, calls = runner._search, []

    def stop_after_first(*args, **kw):
        out = real_search(*args, **kw)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt("simulated stop")
        return out

    monkeypatch.setattr(runner, "_search", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        runner.run_suite(suite, tmp_path / "b", out=lambda *_: None)
    monkeypatch.setattr(runner, "_search", real_search)
    resumed = runner.run_suite(suite, tmp_path / "b", out=lambda *_: None)
    again = runner.run_suite(suite, tmp_path / "b", out=lambda *_: None)
    for mode in ("robust", "detrimental"):
        assert len(_trial_dirs(tmp_path / "b", f"pair-tests_test_train_small_net-I-12-{mode}")) == 2
    strip = lambda rs: [{**r, "id": r["id"]} for r in _headline(rs)]  # noqa: E731
    assert strip(resumed["records"]) == strip(straight["records"]) == strip(again["records"])
    assert len((tmp_path / "b" / "records.jsonl").read_text().splitlines()) == 1  # never duplicated


def test_two_node_cluster_on_loopback(tmp_path):
    """Two Ray nodes on 127.0.0.1 (tests/cluster.py); trials land on both."""
    from tests.cluster import LOOPBACK, loopback_cluster

    temp = Path(tempfile.mkdtemp(prefix="dptq-2n-", dir="/tmp"))  # short: Ray's socket paths
    try:
        with loopback_cluster(temp) as (cluster, _):
            run_dir = tmp_path / "run"
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "bench",
                    "run",
                    str(TINY),
                    "--out",
                    str(run_dir),
                    "--address",
                    cluster.address,
                    "--leaderboard",
                    "",  # never touch the repository's leaderboard from a test
                ],
                cwd=ROOT,
                env={**os.environ, **LOOPBACK},
                capture_output=True,
                text=True,
                timeout=900,
            )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    nodes = set()
    for result in (run_dir / "tune").glob("pair-*/pair_trainable*/result.json"):
        for line in result.read_text().splitlines():
            nodes.add(json.loads(line)["node_id"])
    assert len(nodes) == 2, f"trials ran on {len(nodes)} node(s)"
    assert json.loads((run_dir / "records.jsonl").read_text().splitlines()[0])["error"] is None
