"""A run's Ray processes end with it (bench/cluster/reaper.py): found by the files they hold open
under the instance's temp dir, ended by a watchdog once the driver is gone, and after kill -9 of
a real ``bench run`` none is left 30 s later (checked by reading /proc, not through psutil)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.executors.ray.reaper import end_ray_processes, ray_processes, start_reaper
from tests.support.helpers import write_suite

HOLD = "import sys, time; f = open(sys.argv[1], 'w'); f.write('x'); f.flush(); time.sleep(120)"


def _holder(path: Path) -> subprocess.Popen:
    """A process that holds ``path`` open (as a Ray agent holds its log), in its own session."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], start_new_session=True)
    for _ in range(100):
        if path.exists():
            break
        time.sleep(0.05)
    time.sleep(0.2)
    return p


def _gone(p: subprocess.Popen, timeout: float) -> bool:
    try:
        p.wait(timeout=timeout)
        return True
    except subprocess.TimeoutExpired:
        return False


def _scan(root: Path) -> list[int]:
    """Pids whose command line or open files name ``root`` (from /proc directly)."""
    root_s, found = str(root.resolve()), []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            fds = [os.readlink(f) for f in (entry / "fd").iterdir()]
        except (OSError, PermissionError):
            continue
        if root_s in cmd or any(f.startswith(root_s) for f in fds):
            found.append(int(entry.name))
    return found


def test_processes_holding_files_under_the_temp_dir_are_found_and_ended(tmp_path):
    mine, other = tmp_path / "ray", tmp_path / "elsewhere"
    mine.mkdir()
    other.mkdir()
    inside, outside = _holder(mine / "agent.log"), _holder(other / "agent.log")
    try:
        assert [p.pid for p in ray_processes(mine)] == [inside.pid]
        assert end_ray_processes(mine) == 1
        assert _gone(inside, 5) and not _gone(outside, 0.5)  # the other instance is untouched
    finally:
        for p in (inside, outside):
            p.kill()
            p.wait()


def test_the_watchdog_ends_them_when_the_driver_dies(tmp_path):
    tmp = tmp_path / "ray"
    tmp.mkdir()
    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    agent = _holder(tmp / "dashboard_agent.log")
    try:
        watchdog = start_reaper(tmp, driver=driver.pid)
        time.sleep(1.5)
        assert not _gone(agent, 0.5)  # nothing happens while the driver lives
        driver.kill()
        driver.wait()
        assert _gone(agent, 10) and _gone(watchdog, 10)
    finally:
        for p in (driver, agent):
            p.kill()
            p.wait()


@pytest.mark.slow
def test_nothing_of_a_killed_runs_ray_is_left_30_s_later(tmp_path):
    """kill -9 of ``bench run`` (local Ray) while a stage trains: its GCS, raylet, workers and
    agents (Ray left the dashboard and runtime-env agents running before the watchdog) are gone."""
    from bench.executors.ray.connect import ray_temp_dir

    suite = write_suite(tmp_path / "s.yaml", **{"pair.epochs": 30, "resources": {"cpus": 1}})
    out = tmp_path / "run"
    log = (tmp_path / "log").open("w")
    cmd = [sys.executable, "-m", "bench", "run", str(suite), "--out", str(out), "--leaderboard", ""]
    run = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(600):
            if "stage kd-" in (tmp_path / "log").read_text():
                break
            assert run.poll() is None, (tmp_path / "log").read_text()[-2000:]
            time.sleep(0.5)
        tmp = ray_temp_dir(out)
        assert len(_scan(tmp)) >= 4  # GCS, raylet, agents, workers: a real instance
        os.kill(run.pid, signal.SIGKILL)
        run.wait()
        time.sleep(30)
        left = _scan(tmp)
        assert left == [], [(Path(f"/proc/{p}/cmdline").read_bytes()[:80]) for p in left]
    finally:
        if run.poll() is None:
            run.kill()
        log.close()
