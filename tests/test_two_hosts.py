"""Two hosts that are really two (issue 23): a Ray head and a Ray worker in two network
namespaces joined by a veth pair (``tests/support/hosts.py``), started with ``ray start`` as README's
"Many machines" tells users, and ``python -m bench run SUITE --address HEAD:PORT`` run on the
head. Trials run on both hosts; taking the worker host's link down mid-trial gets that trial
retried on the head from its checkpoint, recorded on the row, with the records of the
undisturbed run; nothing the test started outlives it. Skips with the reason where namespaces
cannot be made (not root, no iproute2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from bench.executors.events import read_events
from tests.support.hosts import HEAD_IP, PORT, WORKER_IP, left_behind, two_hosts, unavailable
from tests.test_reliability import ROOT, _rows, _suite_with

KD_EPOCHS = 3  # teacher and KD: the reliability suite's 6 halved (the run is made twice)
PAIR_EPOCHS = 8  # about 15 s per pair trial: time to catch one mid-way on the worker host

pytestmark = [pytest.mark.slow, pytest.mark.netns, pytest.mark.ray]


def _bench_run(head, suite: Path, run: Path, board: Path) -> list[str]:
    return head.cmd(
        sys.executable, "-m", "bench", "run", str(suite), "--out", str(run),
        "--address", f"{HEAD_IP}:{PORT}", "--leaderboard", str(board), "--submit",
    )  # fmt: skip


def _trial_on(run: Path, ip: str):
    """A trial running on the host at ``ip``: it has reported an epoch and is not finished."""
    for res in run.glob("tune/*/*/result.json"):
        lines = res.read_text().splitlines()
        try:
            last = json.loads(lines[-1]) if lines else {}
        except ValueError:
            continue
        total = PAIR_EPOCHS if res.parent.parent.name.startswith("pair-") else KD_EPOCHS
        if last.get("node_ip") == ip and 1 <= last.get("epoch", 0) < total:
            return res, last["node_id"]
    return None


def _ours(temp: Path) -> list[str]:
    """Processes whose command line names the test's Ray folders (raylets, GCS, agents, workers)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any(str(temp) in a for a in p.info["cmdline"] or ()):
            found.append(f"{p.pid} {' '.join(p.info['cmdline'])[:120]}")
    return found


def test_trials_run_on_both_hosts_and_a_lost_link_is_retried_on_the_head(tmp_path):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    temp = Path(tempfile.mkdtemp(prefix="dptq-2h-", dir="/tmp"))  # short: Ray's socket paths
    # one CPU per trial and per host: the pair wave's two trials land on both hosts
    stage = {"epochs": KD_EPOCHS, "batch_size": 16, "optimizer": "adamw", "lr": 0.01}
    stage |= {"augment": None, "mixup": False}
    suite = _suite_with(
        tmp_path,
        students=["tests.support.faulty:slow_net"],
        resources={"cpus": 1},
        teacher_stage=stage,
        kd_stage=stage,
        pair={"epochs": PAIR_EPOCHS, "batch_size": 16},
        search={"num_samples": 1},
    )
    quiet, loud = tmp_path / "quiet", tmp_path / "loud"
    t0, hosts = time.time(), []
    try:
        with two_hosts(temp) as (head, worker, env):
            hosts = [head, worker]
            env = {**env, "PYTHONPATH": str(ROOT)}
            out = subprocess.run(
                _bench_run(head, suite, quiet / "run", quiet / "board"),
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
            )  # fmt: skip
            assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
            ends = [e for e in read_events(quiet / "run") if e["event"] == "trial_end"]
            assert {e.get("node_ip") for e in ends} == {HEAD_IP, WORKER_IP}

            log = open(tmp_path / "loud.log", "w")
            proc = subprocess.Popen(
                _bench_run(head, suite, loud / "run", loud / "board"),
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            victim = None
            while victim is None and proc.poll() is None and time.time() - t0 < 1200:
                victim = _trial_on(loud / "run", WORKER_IP)
                time.sleep(0.05)
            assert victim is not None, "no trial was caught on the worker host mid-way"
            worker.link(up=False)
            assert proc.wait(timeout=900) == 0, (tmp_path / "loud.log").read_text()[-3000:]
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    wall = time.time() - t0
    assert not left_behind(hosts), left_behind(hosts)
    assert not _ours(temp), _ours(temp)

    res, node_id = victim
    experiment = res.parent.parent.name
    retries = [e for e in read_events(loud / "run") if e["event"] == "retry"]
    assert [(e["experiment"], e["node"]) for e in retries] == [(experiment, node_id)]
    assert retries[0]["reason"].startswith("worker or node died: "), retries[0]
    last = json.loads(res.read_text().splitlines()[-1])
    assert last["node_ip"] == HEAD_IP  # finished on the head
    [row] = _rows(loud / "board")
    assert [(r["experiment"], r["node"]) for r in row["retries"]] == [(experiment, node_id)]
    [ref] = _rows(quiet / "board")
    assert {**row, "retries": []} == ref
    print(f"two-host test: {wall:.0f} s wall")  # the closing note quotes it (pytest -s)
