"""Data parallelism on PyTorch's own engine: which process this is, and how a step's batches are dealt.

A training run launched by ``torchrun`` (``python -m torch.distributed.run``; see
:mod:`debiaskd.training.launch`) joins the process group that torchrun's environment describes
(:func:`init_from_env`: gloo on CPU, nccl on CUDA) and :func:`debiaskd.training.loop.fit` wraps its
model in :class:`torch.nn.parallel.DistributedDataParallel`.

**How the batches are split (the global batch is one process's).** Every rank draws the same
length-grouped batch order of the epoch (same seed). One optimizer step takes the same
``grad_accum`` consecutive batches as one process would (fewer at the end of an epoch); within that
group the batch at position ``p`` goes to rank ``p % world_size`` (:func:`my_batches`), whole. Each
rank scales its micro-batch losses by ``world_size / n_micro`` so that DDP's all-reduce (a mean over
ranks) yields exactly the single-process gradient ``(1 / n_micro) · Σ_b ∇ loss_b``; micro-steps
before a rank's last one run under ``no_sync()``, so each step all-reduces once. A rank with no batch
in a group (only when the group has fewer batches than ranks: ``grad_accum`` not a multiple of the
number of processes, or an epoch's short last group) runs the group's first batch with weight 0 to
join the all-reduce: correct, but no faster, which is why ``grad_accum`` should be a multiple of the
number of processes (``fit`` warns otherwise). Dropout: in a distributed run the RNG is seeded
before each micro-batch from (seed, epoch, the batch's position in the epoch) (:func:`batch_seed`), so
a batch draws the same dropout mask whichever rank runs it, any number of processes trains the same
model up to the order of floating-point sums, and a checkpoint resumes under another number of
processes. (A run outside torchrun keeps its one RNG stream: single-process training is unchanged.)

:func:`crash_point` is a test hook: ``DEBIASKD_TEST_EXIT_AT=RANK:STEP`` makes rank ``RANK`` exit
abruptly (``os._exit(17)``) right after optimizer step ``STEP`` and its checkpoint, as a killed
worker would; the kill/resume tests use it. Unset, it costs one dictionary lookup per step.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

CRASH_ENV = "DEBIASKD_TEST_EXIT_AT"
CRASH_EXIT_CODE = 17


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    distributed: bool = False  # a process group is initialised (even of one process)

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs, checkpoints and saves."""
        return self.rank == 0


def current() -> World:
    """The world of the process group this process belongs to (``World()`` when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), True)
    return World()


def init_from_env() -> World:
    """Join the process group torchrun's environment variables describe (gloo on CPU, nccl on CUDA)."""
    if "WORLD_SIZE" not in os.environ:
        return World()
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return current()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def my_batches(pos: int, group_end: int, world: World) -> list[int]:
    """Positions (in the epoch's batch order) of this rank's batches in the step group ``[pos, group_end)``."""
    return list(range(pos + world.rank, group_end, world.size))


def batch_seed(seed: int, epoch: int, position: int) -> int:
    """The RNG seed of the micro-batch at ``position`` of ``epoch`` in a distributed run (rank-independent)."""
    digest = hashlib.sha256(f"debiaskd-batch:{seed}:{epoch}:{position}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def sum_over_ranks(values: list[float], world: World) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (unchanged outside a process group)."""
    if not world.distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def mean_grads(params: list[torch.nn.Parameter], world: World) -> None:
    """Average the gradients of parameters that live outside the DDP-wrapped model (an objective's own
    projection), once per step, as DDP does for the model's."""
    if world.size < 2:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world.size)


def from_main(value: Any, world: World) -> Any:
    """Rank 0's ``value`` on every rank (a decision computed once, e.g. a validation accuracy)."""
    if world.size < 2:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


@contextmanager
def main_first(world: World | None = None) -> Iterator[None]:
    """Rank 0 runs the block first (e.g. fills a cache, saves a model); the others run it after it is done."""
    world = world or current()
    if not world.main:
        barrier(world)
    yield
    if world.main:
        barrier(world)


def crash_point(world: World, step: int) -> None:
    """The test hook described in the module docstring (``DEBIASKD_TEST_EXIT_AT=RANK:STEP``)."""
    where = os.environ.get(CRASH_ENV)
    if not where:
        return
    rank, _, at = where.partition(":")
    if int(rank) == world.rank and int(at) == step:
        print(f"rank {world.rank}: {CRASH_ENV} exits after step {step}", file=sys.stderr, flush=True)
        os._exit(CRASH_EXIT_CODE)
