"""Training on PyTorch's own distributed engine: joining torchrun's process group, and the few
collectives a run needs besides DDP's gradient all-reduce.

torchrun (``python -m torch.distributed.run``) starts one process per slot and describes the
job in environment variables: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
MASTER_PORT.  :func:`session` joins the group they describe (NCCL for GPUs, gloo for CPUs) and
leaves it at the end; without those variables everything here is a no-op for one process.
Multi-node jobs are the same program started by torchrun on every node with ``--nnodes`` and
``--rdzv-endpoint``; nothing here depends on the node count.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import AekitError, ConfigError, TrainingError

log = logging.getLogger(__name__)

T = TypeVar("T")

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


def dist_info() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in TORCHRUN_VARS)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects taskset / cgroup CPU sets, unlike cpu_count
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_process(local_world: int) -> int:
    """CPU threads for each of ``local_world`` processes sharing this machine's cores."""
    return max(1, available_cores() // max(1, local_world))


@contextlib.contextmanager
def cpu_threads(device: torch.device, *, workers: int = 0) -> Iterator[None]:
    """Train with no more busy threads than cores; the previous thread count comes back after.

    A CPU process gets at most ``cores // processes on this node - workers`` threads (and never
    more than it had: OMP_NUM_THREADS, which torchrun sets to 1 unless the user did, still
    caps it).  Oversubscribing costs far more than idling a core: OpenMP threads spin while
    they wait for each other: on a busy 2-core machine a 2-thread trainer beside 2 DataLoader
    workers streamed 139 images/s, a 1-thread one 686.
    """
    before = torch.get_num_threads()
    if device.type == "cpu":
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if dist_info()[1] > 1 else 1
        torch.set_num_threads(max(1, min(before, available_cores() // local_world - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group for the duration of a run; yields this process's device.

    A CUDA device becomes ``cuda:LOCAL_RANK`` (set as current before the group exists, so NCCL
    never puts two ranks on one GPU).  A group that already exists (the caller made it) is used
    and left alone.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not launched_by_torchrun() or world < 2 or (dist.is_available() and dist.is_initialized()):
        yield device
        return
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; install a standard PyTorch wheel")
    local_rank = int(os.environ["LOCAL_RANK"])
    if device.type == "cuda":
        local_world, gpus = int(os.environ.get("LOCAL_WORLD_SIZE", world)), torch.cuda.device_count()
        if local_world > gpus:  # NCCL cannot put two ranks on one GPU
            raise ConfigError(f"{local_world} processes on this node but {gpus} GPU(s); start one process "
                              f"per GPU (--nproc-per-node {gpus}), or train on the CPU with --device cpu")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    try:
        dist.init_process_group(backend)
    except (RuntimeError, ValueError) as err:  # DistNetworkError and friends are RuntimeErrors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot join the {backend} process group at {where}: {first}") from None
    log.info("rank %d of %d (%s, %s)", dist.get_rank(), dist.get_world_size(), backend, device)
    try:
        yield device
    finally:
        dist.destroy_process_group()


def _collective_device() -> torch.device:
    """Where small tensors for a collective must live: NCCL only moves GPU memory."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all ranks, returned on the CPU (``t`` itself when alone)."""
    if dist_info()[1] == 1:
        return t
    packed = t.to(_collective_device())
    dist.all_reduce(packed)
    return packed.cpu()


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on any, so all ranks take the same branch."""
    if dist_info()[1] == 1:
        return flag
    return bool(all_reduce_sum(torch.tensor([int(flag)], dtype=torch.int32)).item())


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order, on every rank."""
    world = dist_info()[1]
    if world == 1:
        return [obj]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def rank0_then_broadcast(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and return its result on every rank.

    For decisions that must agree (the run folder's name, which checkpoint to resume): rank 0
    decides once instead of every rank deciding alike and hoping.  An error on rank 0 is raised
    on every rank, so no rank waits forever for one that has failed.
    """
    rank, world = dist_info()
    if world == 1:
        return fn()
    payload: list[Any] = [None]
    error: BaseException | None = None
    if rank == 0:
        try:
            payload[0] = ("ok", fn())
        except Exception as err:  # noqa: BLE001 - re-raised below, after telling the other ranks
            error = err
            kind = type(err) if isinstance(err, AekitError) else None
            payload[0] = ("error", kind, str(err).splitlines()[0] if str(err) else type(err).__name__)
    dist.broadcast_object_list(payload, src=0)
    if error is not None:
        raise error
    status, *rest = payload[0]
    if status == "ok":
        return rest[0]
    kind, message = rest
    raise (kind or TrainingError)(message if kind else f"rank 0 failed: {message}")
