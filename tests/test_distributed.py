"""Data-parallel training (issue 23, first part): one pair step sharded over 2 processes on the
gloo backend (Accelerate's DDP, split batches) gives the parameters one process gives on the
same global batch, the stealth term's random allocations included. The pair's student keeps its
batch norm in eval mode (``bn_eval``); the policy here has none (a policy's batch norm uses
per-worker statistics, as DDP does: SyncBatchNorm needs a GPU)."""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.data import TensorDataset

OPTIONS = (2, 3, 4, 6, 8)
BATCH = 8  # the global batch; two steps


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(rank: int, world: int, port: int, out: str, stealth: float) -> None:
    if world > 1:
        os.environ.update(
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            RANK=str(rank),
            WORLD_SIZE=str(world),
            LOCAL_RANK=str(rank),
            LOCAL_WORLD_SIZE=str(world),
        )
    torch.set_num_threads(1)
    from accelerate.state import AcceleratorState

    from dptq.engine import Loop, RunOptions, fit, make_accelerator
    from dptq.models import QuantizableModel
    from dptq.pair import PairConfig, pair_step
    from dptq.policy import SmallCNNPolicy
    from tests.support.nets import small_net

    AcceleratorState._reset_state(reset_partial_state=True)
    acc = make_accelerator(RunOptions(cpu=True))
    assert acc.num_processes == world
    torch.manual_seed(0)
    f_n = QuantizableModel(small_net(5)).eval()
    student = copy.deepcopy(f_n)
    policy = SmallCNNPolicy(student.num_layers, len(OPTIONS), width=4, depth=0, input_size=None)
    cfg = PairConfig(mode="detrimental", options=OPTIONS, delta=1.0, stealth=stealth)
    budget = 4 * student.num_layers
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2 * BATCH, 3, 8, 8, generator=g)
    data = TensorDataset(images, torch.zeros(2 * BATCH, dtype=torch.long))
    optimizer = torch.optim.SGD([*student.parameters(), *policy.parameters()], lr=0.1)

    def step(batch, mods):
        x, _ = batch
        with torch.no_grad():
            teacher = f_n(x)
        return pair_step(mods["student"], mods["policy"], teacher, x, cfg, budget)

    def train_mode():
        student.train()
        policy.train()
        for m in student.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()

    loop = Loop(
        name="pair-detrimental",
        modules={"student": student, "policy": policy},
        optimizer=optimizer,
        epochs=1,
        dataset=data,
        batch_size=BATCH,
        step=step,
        evaluate=dict,
        train_mode=train_mode,
    )
    fit(loop, None, RunOptions(seed=0, cpu=True, progress=False), acc)
    if rank == 0:
        state = {f"student.{k}": v for k, v in student.state_dict().items()}
        state |= {f"policy.{k}": v for k, v in policy.state_dict().items()}
        state |= {f"init.{k}": v for k, v in f_n.state_dict().items()}
        torch.save(state, out)
    if world > 1:
        # leave together and tear the gloo group down before exit: a worker whose interpreter
        # exits with gloo's threads alive aborts ("terminate called without an active exception")
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_workers_take_one_processs_pair_steps(tmp_path):
    """With the stealth term on (its split and random draws are the global batch's). With the
    policy gradient's RMS taken per worker, as before, ``policy.head.weight`` differs here."""
    stealth = 1.5
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_train, args=(0, 1, 0, str(one), stealth))
    p.start()
    p.join(120)
    assert p.exitcode == 0
    mp.spawn(_train, args=(2, _free_port(), str(two), stealth), nprocs=2, join=True)
    a, b = torch.load(one, weights_only=True), torch.load(two, weights_only=True)
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    # the steps did move the weights (a comparison of two untrained copies would pass too)
    moved = [k for k in a if k.startswith("student.") and "weight" in k]
    assert max(float((a[k] - a["init." + k[8:]]).abs().max()) for k in moved) > 1e-3
