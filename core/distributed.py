"""torch.distributed for every package: join torchrun's group, collectives, local worker helpers.

One implementation of what the VOSR trainer and the benchmark runner both need: under ``torchrun``
(environment ``WORLD_SIZE`` > 1) a process joins the group (NCCL on CUDA, gloo on CPU, or the
backend asked for); a single process runs with ``world = 1`` and every collective here is a no-op.
Local worker processes (``screensr bench run --workers N``) use :func:`free_port` for the
rendezvous and :func:`exit_with_parent` so that a killed parent never leaves them running.

torch is imported inside the functions, so importing ``core`` stays free of it.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "DistInfo",
    "init_distributed",
    "dist_context",
    "barrier",
    "all_mean",
    "broadcast_object",
    "all_gather_objects",
    "free_port",
    "exit_with_parent",
]


def _cpu() -> torch.device:
    import torch

    return torch.device("cpu")


@dataclass
class DistInfo:
    """Process-group facts of this process: world size, global and local rank, and its device."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=_cpu)

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the process that logs, writes shared files and reports)."""
        return self.rank == 0


def _initialised() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def init_distributed(device: str | None = None, backend: str | None = None) -> DistInfo:
    """Join torchrun's process group (``WORLD_SIZE`` > 1) or describe the single process.

    Args:
        device: ``"cpu"`` or ``"cuda"``; None picks CUDA when one is visible. Under torchrun each
            rank takes GPU ``LOCAL_RANK``.
        backend: the process-group backend; None means NCCL on CUDA and gloo on CPU.

    Raises:
        RuntimeError: ``device="cuda"`` without a visible CUDA device.
    """
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device cuda was asked for but no CUDA device is visible; use --device cpu")
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not _initialised():
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
    if _initialised():
        world, rank = dist.get_world_size(), dist.get_rank()
    return DistInfo(world, rank, local, dev)


def dist_context(backend: str = "gloo") -> tuple[int, int]:
    """``(rank, world_size)`` of an initialised group, else of torchrun's environment, else (0, 1).

    Under torchrun, a group with ``backend`` is created on first use (gloo works on CPU and GPU
    alike, for processes that only need barriers and object collectives).
    """
    import torch.distributed as dist

    if _initialised():
        return dist.get_rank(), dist.get_world_size()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ:
        dist.init_process_group(backend)
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """Wait for every rank (no-op outside a group)."""
    import torch.distributed as dist

    if _initialised():
        dist.barrier()


def all_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over all ranks (a copy; ``value`` itself outside a group)."""
    import torch.distributed as dist

    if not _initialised() or dist.get_world_size() == 1:
        return value
    out = value.clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (picklable objects; ``obj`` itself outside a group)."""
    import torch.distributed as dist

    if not _initialised():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` outside a group)."""
    import torch.distributed as dist

    if not _initialised():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a local ``tcp://`` rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def exit_with_parent(parent: int) -> None:
    """Make this process die as soon as process ``parent`` (the one that started it) does.

    A worker whose parent was killed (SIGKILL, the OOM killer) would otherwise keep computing and
    writing until its next collective call. On Linux the kernel sends SIGKILL on the parent's
    death (``prctl(PR_SET_PDEATHSIG)``, linux/prctl.h); elsewhere a daemon thread polls the parent
    pid once a second. A parent that died before this call is caught by the ``getppid`` check
    (the orphan was already re-parented).

    Raises:
        OSError: ``prctl`` refused (the message gives errno's text).
    """
    import signal

    armed = False
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1  # linux/prctl.h
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(err)}")
        armed = True
    if os.getppid() != parent:
        os._exit(1)
    if not armed:

        def watch() -> None:
            import time

            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="screensr-parent-watchdog", daemon=True).start()
