"""Two hosts on this machine that are really two: Linux network namespaces joined by a veth pair.

Each namespace has its own network stack, loopback and address (10.231.0.1 for the head,
10.231.0.2 for the worker, on the veth pair only: no route out of either namespace), so Ray's
nodes find each other over a real link, and taking that link down cuts the worker host off as a
lost machine would be. The filesystem is shared (the run folder every node sees, as on a cluster
with NFS). Needs root and iproute2's ``ip netns`` (:func:`unavailable` says why not).

Everything started here is found by namespace (``ip netns pids``) and killed on the way out; the
namespaces and their veth pair are deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

SUBNET = "10.231.0"
HEAD_IP, WORKER_IP = f"{SUBNET}.1", f"{SUBNET}.2"
PORT = 6379
RAY = str(Path(sys.executable).with_name("ray"))
# the head declares a silent node dead within seconds, not Ray's default half minute
FAST_HEALTH = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def unavailable() -> str | None:
    """Why two namespaces cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    name = f"dptq-probe-{uuid.uuid4().hex[:6]}"
    probe = _ip("netns", "add", name, check=False)
    if probe.returncode != 0:
        return f"ip netns add is not permitted here: {probe.stderr.strip()}"
    _ip("netns", "del", name, check=False)
    return None


@dataclass
class Host:
    netns: str
    ip: str
    veth: str
    temp: Path

    def cmd(self, *args: str) -> list[str]:
        """``args`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *args]

    def run(self, *args: str, env: dict | None = None, timeout: float = 120) -> str:
        out = subprocess.run(
            self.cmd(*args), capture_output=True, text=True, env=env, timeout=timeout
        )
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} on {self.ip}: {out.stderr[-2000:]}")
        return out.stdout

    def pids(self) -> set[int]:
        out = _ip("netns", "pids", self.netns, check=False).stdout
        return {int(p) for p in out.split()}

    def link(self, up: bool) -> None:
        self.run("ip", "link", "set", self.veth, "up" if up else "down")


def _kill_all(hosts: list[Host]) -> None:
    for _ in range(100):
        pids = set().union(*(h.pids() for h in hosts))
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


@contextlib.contextmanager
def two_hosts(temp: Path, head_cpus: int = 1, worker_cpus: int = 1):
    """A Ray head and a Ray worker, each on its own host; yields ``(head, worker, env)`` with
    ``env`` the environment a driver on the head uses."""
    tag = uuid.uuid4().hex[:6]
    head = Host(f"dptq-head-{tag}", HEAD_IP, f"dptqh{tag}", temp / "head")
    worker = Host(f"dptq-worker-{tag}", WORKER_IP, f"dptqw{tag}", temp / "worker")
    # Ray's token authentication, as a cluster's hosts share it: the same token on every host
    # (and for the driver), here in the environment
    env = {**os.environ, **FAST_HEALTH, "RAY_AUTH_MODE": "token"}
    # two hosts, not loopback: a run on one machine switches Ray's multi-node mode off
    # (bench.executors.ray.connect, tests/support/cluster.py), and this environment may have inherited that
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    for k in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        env.pop(k, None)
    made: list[Host] = []
    try:
        for h in (head, worker):
            _ip("netns", "add", h.netns)
            made.append(h)
            h.run("ip", "link", "set", "lo", "up")
        _ip("link", "add", head.veth, "type", "veth", "peer", "name", worker.veth)
        for h in (head, worker):
            _ip("link", "set", h.veth, "netns", h.netns)
            h.run("ip", "addr", "add", f"{h.ip}/24", "dev", h.veth)
            h.run("ip", "link", "set", h.veth, "up")
        common = ["--disable-usage-stats", "--include-dashboard=false"]
        head.temp.mkdir(parents=True)
        worker.temp.mkdir(parents=True)
        head.run(
            RAY, "start", "--head", f"--node-ip-address={HEAD_IP}", f"--port={PORT}",
            f"--num-cpus={head_cpus}", f"--temp-dir={head.temp}", *common, env=env,
        )  # fmt: skip
        worker.run(
            RAY, "start", f"--address={HEAD_IP}:{PORT}", f"--node-ip-address={WORKER_IP}",
            f"--num-cpus={worker_cpus}", f"--temp-dir={worker.temp}", "--disable-usage-stats",
            env=env,
        )  # fmt: skip
        yield head, worker, env
    finally:
        _kill_all(made)
        for h in made:
            _ip("netns", "del", h.netns, check=False)
        _ip("link", "del", head.veth, check=False)  # gone with its namespace; to be sure


def left_behind(hosts: list[Host]) -> list[str]:
    """What of ``hosts`` still exists: namespaces, veth ends, processes."""
    names = _ip("netns", "list", check=False).stdout
    links = _ip("-o", "link", "show", check=False).stdout
    found = [h.netns for h in hosts if h.netns in names]
    found += [h.veth for h in hosts if f" {h.veth}@" in links or f" {h.veth}:" in links]
    return found
