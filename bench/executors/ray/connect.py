"""Joining or starting Ray for a run: on loopback on one machine, or a cluster's address checked
first (one line when it cannot be reached)."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from ..events import ClusterError

_QUIET = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
}  # also in tasks that drive Tune


def _pythonpath() -> str:
    parts = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return os.pathsep.join(dict.fromkeys(parts))


def init_ray(run_dir: Path, address: str | None) -> None:
    """Join ``address`` (or ``RAY_ADDRESS``), else start Ray on this machine, on loopback only."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    address = address or os.environ.get("RAY_ADDRESS")
    if not address:
        # a run on one machine talks over loopback only; Ray otherwise takes the machine's
        # outward address even for a local instance (read when Ray is first imported)
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import optuna
    import ray

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if ray.is_initialized():
        return
    # workers import a suite's ``module:function`` models from where the command was run
    kwargs = dict(
        include_dashboard=False,
        logging_level=logging.ERROR,
        log_to_driver=False,
        runtime_env={"env_vars": {**_QUIET, "PYTHONPATH": _pythonpath()}},
    )
    if address:
        check_reachable(address)
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, TimeoutError) as e:
            raise ClusterError(_unreachable(address, str(e).splitlines()[0][:160])) from None
        return
    from ray._private import ray_constants

    # Ray was imported earlier in this process (tests, notebooks): the same switch, set directly
    ray_constants.ENABLE_RAY_CLUSTER = os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] != "0"
    tmp = ray_temp_dir(run_dir)
    # a run's Ray processes end with it: leftovers of an earlier run in this folder first, then a
    # watchdog that ends this instance's once this process is gone, however it ends
    from .reaper import end_ray_processes, start_reaper

    end_ray_processes(tmp)
    ray.init(num_cpus=os.cpu_count(), _temp_dir=str(tmp), **kwargs)
    start_reaper(tmp)


def ray_temp_dir(run_dir: Path) -> Path:
    """The temp dir of the Ray instance a run starts on this machine: ``RUN/ray``, or (Ray's unix
    sockets live under it, ~107 characters at most) one under the system's temp dir named by the
    run folder's path, so two runs never share one."""
    run_dir = Path(run_dir).resolve()
    tmp = run_dir / "ray"
    if len(str(tmp)) > 40:
        digest = hashlib.sha256(str(run_dir).encode()).hexdigest()[:12]
        tmp = Path(tempfile.gettempdir()) / f"dptq-ray-{digest}"
    return tmp


def _unreachable(address: str, why: str) -> str:
    return (
        f"--address {address}: cannot reach a Ray cluster there ({why}); check that "
        "`ray start --head` runs on that host, that the address is its GCS address "
        "(host:port, port 6379 by default) and that this machine can reach that port"
    )


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast (one line) when ``host:port`` does not accept a connection; Ray itself retries
    for about 30 s and then raises with a traceback. ``auto`` and ``ray://`` are left to Ray."""
    import socket

    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(
            f"--address {address}: expected host:port (e.g. 10.0.0.5:6379), 'auto' or ray://..."
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(_unreachable(address, e.strerror or type(e).__name__)) from None
