"""A local Ray instance's processes end with the run that started them.

After ``kill -9`` of a ``bench run`` that started Ray on this machine, Ray's GCS, raylet and
workers exit, but its dashboard and runtime-env agents were seen to outlive it for good
(reparented to init, their command lines retitled ``ray::DashboardAgent``). What marks every
process of a run's Ray instance, whatever its title, is that it holds files open under the
instance's temp dir (its session's logs and sockets) or names that dir in its command line.

- :func:`start_reaper` (called when a run starts its own Ray) starts a watchdog in its own session:
  when the driver process is gone, however it ended, the watchdog ends those processes.
- :func:`end_ray_processes` is also called before a run starts Ray in a folder, so leftovers of an
  earlier run there (one killed before its watchdog could act) end first.

A run that joins a cluster (``--address``) never touches that cluster's processes. Hand-written:
Ray ends its agents only when they notice the raylet is gone, which they did not here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

POLL_S = 1.0  # how often the watchdog looks at the driver


def _mentions(proc: psutil.Process, root: str) -> bool:
    try:
        if any(root in part for part in proc.cmdline()):
            return True
        return any(f.path.startswith(root) for f in proc.open_files())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def ray_processes(temp_dir: Path, exclude: tuple[int, ...] = ()) -> list[psutil.Process]:
    """This user's processes of the Ray instance whose temp dir is ``temp_dir`` (module
    docstring), other than ``exclude`` and this process."""
    root = str(Path(temp_dir).resolve())
    me, uid = os.getpid(), os.getuid()
    found = []
    for proc in psutil.process_iter(["pid", "uids"]):
        info = proc.info
        if info["pid"] in (me, *exclude) or info["uids"] is None or info["uids"].real != uid:
            continue
        if _mentions(proc, root):
            found.append(proc)
    return found


def end_ray_processes(temp_dir: Path, timeout: float = 5.0, exclude: tuple[int, ...] = ()) -> int:
    """End every process of :func:`ray_processes` (SIGTERM, then SIGKILL after ``timeout``);
    returns how many there were."""
    procs = ray_processes(temp_dir, exclude)
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    return len(procs)


def start_reaper(temp_dir: Path, driver: int | None = None) -> subprocess.Popen:
    """The watchdog for the Ray instance under ``temp_dir`` started by ``driver`` (default: this
    process), in its own session so that a signal to the driver's group does not reach it."""
    driver = os.getpid() if driver is None else driver
    created = psutil.Process(driver).create_time()
    cmd = [
        sys.executable,
        "-m",
        "bench.executors.ray.reaper",
        str(driver),
        repr(created),
        str(temp_dir),
    ]
    return subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def _alive(pid: int, created: float) -> bool:
    try:
        p = psutil.Process(pid)
        return p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def watch(driver: int, created: float, temp_dir: Path) -> int:
    """Wait for ``driver`` (the process with that pid and start time) to end, then end its Ray
    instance's processes; returns how many there were."""
    while _alive(driver, created):
        time.sleep(POLL_S)
    return end_ray_processes(temp_dir)


if __name__ == "__main__":
    pid, started, folder = sys.argv[1:4]
    watch(int(pid), float(started), Path(folder))
