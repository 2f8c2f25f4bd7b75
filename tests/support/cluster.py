"""A two-node Ray cluster on this machine, on loopback only, for the runner and reliability tests.

``ray start`` cannot do this: it rewrites 127.0.0.1 to the machine's outward address, and refuses
a second node when told to stay on loopback. ``ray.cluster_utils.Cluster`` (Ray's own tool for
this) starts real node processes — GCS, raylets, agents — each in its own process, here with
every address on 127.0.0.1. Drivers join with ``--address <cluster.address>``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@contextlib.contextmanager
def loopback_cluster(temp: Path, nodes: int = 2, cpus: int = 1, head_cpus: int | None = None):
    """``nodes`` Ray nodes with ``cpus`` each (the head ``head_cpus``); files under ``temp``."""
    (temp / "ray").mkdir(parents=True, exist_ok=True)
    saved = {k: os.environ.get(k) for k in (*LOOPBACK, "RAY_TMPDIR")}
    # read by Ray when it resolves a node's address / where it writes its address file
    os.environ.update(LOOPBACK, RAY_TMPDIR=str(temp))
    import ray
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    ray.shutdown()
    was = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # Ray may have been imported before the line above
    args = {"num_cpus": cpus, "include_dashboard": False, "temp_dir": str(temp / "ray")}
    head = {**args, "num_cpus": cpus if head_cpus is None else head_cpus}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        workers = [cluster.add_node(**args) for _ in range(nodes - 1)]
        assert cluster.address.startswith("127.0.0.1:"), cluster.address
        yield cluster, workers
    finally:
        cluster.shutdown()
        ray_constants.ENABLE_RAY_CLUSTER = was
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def raylet_pid(node) -> int:
    from ray._private import ray_constants

    return node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid


def node_pids(node) -> set[int]:
    return {info.process.pid for infos in node.all_processes.values() for info in infos}
