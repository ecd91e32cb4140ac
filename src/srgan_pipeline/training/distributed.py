"""Data-parallel training: the processes, their process group, and what only rank 0 does.

``launch(settings, device, fn, *args)`` starts ``nproc_per_node`` processes on this machine with
torch's elastic launcher (``elastic_launch``, the agent behind ``torchrun``), each calling
``fn(world, *args)`` with a :class:`World`: its rank, the world size and its device, joined in
a process group (gloo on CPU, nccl on CUDA). The training nodes call it (through
``job.train``) from inside ``kedro run``, so Kedro is never re-executed per rank (the trap of
launchers that re-run ``sys.argv``); several machines each run the same ``kedro run`` with
their ``node_rank``.

The loop (loop.py) asks its :class:`World` for the few collective decisions: wrap a trained
module in DistributedDataParallel, average the metrics of a window, agree on the time budget,
gather every rank's RNG state for a checkpoint. ``SINGLE`` is the one-process world, where each
of these is the identity, so ``nproc_per_node: 1`` runs exactly the code it ran before.

Faults: ``max_restarts=0``; a rank that raises or dies ends every rank, and ``launch`` raises
:class:`DistributedTrainingError` naming the rank and its error. SIGTERM or SIGINT to the
``kedro run`` (the launcher passes it on) or to the ranks: they agree on a step, rank 0 writes
the checkpoint there, and ``launch`` raises ``stop.Interrupted``. A rank whose parent (the
``kedro run`` process) is killed exits within a second, so a killed run leaves no orphan
writing its checkpoint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from srgan_pipeline.params.train_gan import distributed_device_problem
from srgan_pipeline.training import stop

logger = logging.getLogger(__name__)

_MONITOR_S = 0.5  # how often the agent checks its workers: a failure ends the run this fast


class DistributedTrainingError(RuntimeError):
    """A rank raised or died; the message names the rank and its error."""


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among the training processes (``SINGLE``: the only one)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    sync_batchnorm: bool = False

    @property
    def main(self) -> bool:
        """Rank 0: the one that logs, writes checkpoints and returns the state."""
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` for the training forward passes: itself, or a DDP wrapper around it.

        One wrapper per trained module (generator and critic each their own, never one around
        both). Not ``static_graph``: with the gradient penalty's double backward it silently
        stops synchronising the critic's gradients. The module keeps its own name for
        ``state_dict`` and checkpoints; the wrapper only all-reduces gradients.
        """
        if self.size == 1:
            return module
        if self.sync_batchnorm:  # in place: the generator's root is not a BatchNorm
            converted = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            assert converted is module
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=device_ids)

    def mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """Each value averaged over the ranks (every rank passes the same keys)."""
        if self.size == 1:
            return dict(values)
        keys = sorted(values)
        tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                              device=self.device)
        dist.all_reduce(tensor)
        return dict(zip(keys, (tensor / self.size).tolist(), strict=True))

    def max(self, value: float) -> float:
        """The largest ``value`` of any rank: one decision for all (a rank stopping alone,
        or training at another learning rate, would hang or split the others)."""
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return float(tensor.item())

    def rng_states(self) -> dict[str, Any] | None:
        """Every rank's RNG state, for a checkpoint (None: one process, state.py's own)."""
        if self.size == 1:
            return None
        own = _rng_state(self.device)
        ranks: list[Any] = [None] * self.size
        dist.all_gather_object(ranks, own)
        return {**ranks[0], "ranks": ranks}

    def seed(self, seed: int, start: Mapping[str, Any] | None, resuming: bool) -> None:
        """This rank's RNG (after state.begin seeded or restored rank 0's, as one process).

        The ranks draw different gradient-penalty mixes. Resuming, each rank takes its own
        saved state; a rank the checkpoint has none for (it was written by fewer processes)
        is seeded from (seed, rank, step).
        """
        if self.size == 1:
            return
        saved = (start["rng"].get("ranks") or []) if resuming else []
        if self.rank < len(saved):
            torch.set_rng_state(saved[self.rank]["torch"].cpu())
            if self.device.type == "cuda" and saved[self.rank]["cuda"]:
                torch.cuda.set_rng_state(saved[self.rank]["cuda"][0].cpu(), self.device)
        elif self.rank > 0:
            torch.manual_seed(rank_seed(seed, self.rank, start["step"] if resuming else 0))

    def from_main(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = World()


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The torch seed of ``rank`` > 0 (rank 0 is seeded as one process is)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0])


def _rng_state(device: torch.device) -> dict[str, Any]:
    # Only this rank's own CUDA device: get_rng_state_all would touch every GPU of the machine.
    cuda = [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def check(settings, device: torch.device) -> None:
    """Refuse what cannot run, before any process starts (``settings``: DistributedParams).

    The parameters refused a device they name (params.TrainGanParams); this is the device
    ``auto`` became on this machine, by the same rule, and this machine's GPUs.
    """
    problem = distributed_device_problem(settings, str(device))
    if problem:
        raise ValueError(problem)
    if (settings.world_size > 1 and device.type == "cuda"
            and settings.nproc_per_node > torch.cuda.device_count()):
        raise ValueError(f"train_gan.distributed.nproc_per_node={settings.nproc_per_node} but "
                         f"this machine has {torch.cuda.device_count()} CUDA device(s)")


def launch(settings, device: torch.device, fn: Callable[..., Any], *args: Any
           ) -> dict[int, Any]:
    """Run ``fn(world, *args)`` in ``settings.nproc_per_node`` processes on this machine.

    ``settings`` is a ``params.DistributedParams``; ``device`` the resolved training device
    (cuda: process i on GPU i). Returns {global rank: return value} of this machine's
    processes. Raises DistributedTrainingError when any rank, here or on another machine,
    fails.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    check(settings, device)
    if settings.nnodes == 1 and settings.master_port is None:
        # torchrun --standalone's way: a c10d store on a free port of this machine, which
        # the ranks reach at master_addr (local_addr: not at this machine's host name).
        rdzv = {"rdzv_backend": "c10d", "rdzv_endpoint": f"{settings.master_addr}:0",
                "local_addr": settings.master_addr}
    else:  # torchrun --node_rank: the static rendezvous, node 0 hosts the store
        rdzv = {"rdzv_backend": "static",
                "rdzv_endpoint": f"{settings.master_addr}:{settings.master_port}",
                "rdzv_configs": {"rank": settings.node_rank}}
    config = LaunchConfig(min_nodes=settings.nnodes, max_nodes=settings.nnodes,
                          nproc_per_node=settings.nproc_per_node, run_id="srgan_pipeline",
                          max_restarts=0, monitor_interval=_MONITOR_S, start_method="spawn",
                          **rdzv)
    # CPU threads per process: this process's share (its torch threads, which follow
    # OMP_NUM_THREADS or the cores it may use) divided among the processes on this machine.
    threads = max(1, torch.get_num_threads() // settings.nproc_per_node)
    one_machine = settings.nnodes == 1 and _is_loopback(settings.master_addr)
    job = _Job(backend="nccl" if device.type == "cuda" else "gloo", device_type=device.type,
               threads=threads, sync_batchnorm=settings.sync_batchnorm, parent=os.getpid(),
               log_level=logging.getLogger("srgan_pipeline").getEffectiveLevel(),
               loopback=one_machine)
    try:
        with stop.handlers(), _stores_bound_to(settings.master_addr if one_machine else None):
            # torch's launcher installs its own signal handlers and leaves them installed
            return elastic_launch(config, _worker)(job, fn, args)
    except SignalException as error:
        # The launcher passed the signal on to the ranks and waited for them: they stopped at
        # their next step boundary and rank 0 wrote the checkpoint (stop.py).
        raise stop.Interrupted(error.sigval.name) from None
    except ChildFailedError as error:
        failed = _failed_ranks(error)
        signal_name = _stopping_signal(failed)
        if signal_name:  # the ranks alone were signalled, e.g. by `kill <pid>`
            raise stop.Interrupted(signal_name) from None
        raise DistributedTrainingError(_describe(failed)) from None


@dataclasses.dataclass(frozen=True)
class _Job:
    backend: str
    device_type: str
    threads: int
    sync_batchnorm: bool
    parent: int
    log_level: int
    loopback: bool  # one machine: every socket on the loopback interface only


def _worker(job: _Job, fn: Callable[..., Any], args: tuple) -> Any:
    """A rank's life: join the group, run ``fn``, leave (elastic_launch sets RANK etc.)."""
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    _exit_with_parent(job.parent)
    stop.install()  # SIGTERM/SIGINT, from the launcher or the user: stop at a step boundary
    _log_as(rank, job.log_level)
    torch.set_num_threads(job.threads)
    device = torch.device(job.device_type, local_rank if job.device_type == "cuda" else None)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if job.loopback and _loopback_interface():
        # gloo listens on the address of the machine's host name unless told an interface
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback_interface())
    dist.init_process_group(job.backend, device_id=device if device.type == "cuda" else None)
    world = World(rank=rank, size=dist.get_world_size(), local_rank=local_rank, device=device,
                  sync_batchnorm=job.sync_batchnorm)
    result = fn(world, *args)
    # Only after success: a rank that raised leaves at once (the agent records its error),
    # rather than waiting here for ranks that wait for it.
    dist.destroy_process_group()
    return result


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _loopback_interface() -> str | None:
    """The loopback interface's name (Linux: lo, BSD and macOS: lo0), None where unknown."""
    names = [name for _, name in socket.if_nameindex()]
    return next((name for name in ("lo", "lo0") if name in names), None)


@contextlib.contextmanager
def _stores_bound_to(address: str | None) -> Iterator[None]:
    """While inside, the TCP stores this process hosts (the launcher's rendezvous store and
    the one it shares with the ranks) listen on ``address`` only (None: unchanged).

    torch's TCPStore server listens on every interface, with no authentication, and takes no
    address to bind to, only a socket already bound (``master_listen_fd``): anyone who can
    reach the machine could otherwise join or disturb the run. The launcher creates its stores
    through these two names, so both are replaced for the launch.
    """
    if address is None:
        yield
        return
    from torch.distributed.elastic.rendezvous import c10d_rendezvous_backend

    original = dist.TCPStore

    class BoundStore(original):
        def __init__(self, host_name: str, port: int, *args: Any, **kwargs: Any):
            if kwargs.get("is_master") and kwargs.get("master_listen_fd") is None:
                server = socket.create_server((address, port))
                port, kwargs["master_listen_fd"] = server.getsockname()[1], server.detach()
            super().__init__(host_name, port, *args, **kwargs)

    dist.TCPStore = c10d_rendezvous_backend.TCPStore = BoundStore
    try:
        yield
    finally:
        dist.TCPStore = c10d_rendezvous_backend.TCPStore = original


def _exit_with_parent(parent: int) -> None:
    """End this rank when the process that launched it is gone (``kill -9`` of ``kedro run``
    leaves the workers running otherwise: they would keep writing the checkpoint that the
    resumed run reads). A thread polling the parent id works wherever os.getppid does;
    Linux's PR_SET_PDEATHSIG would need ctypes and follows the parent thread, not process."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _log_as(rank: int, level: int) -> None:
    """Rank 0 logs as the parent would (the spawned process has no logging set up); the
    others only warnings, so the log has one line per window, not one per rank."""
    logging.basicConfig(format=f"[rank {rank}] %(levelname)s %(name)s: %(message)s")
    logging.getLogger("srgan_pipeline").setLevel(level if rank == 0 else logging.WARNING)


# What a rank reports when another rank died under it: a consequence, not the cause.
_PEER_GONE = ("Connection reset by peer", "Connection closed by peer", "remote worker",
              "Broken pipe", "NCCL communicator was aborted", "SIGTERM")


def _failed_ranks(error) -> list[tuple[int, str]]:
    """[(global rank, its error)] of a ChildFailedError, the cause first.

    The agent lists the ranks it saw fail at one check, and stops the rest; a rank that
    raised may be among those stopped while it was exiting, its error already written to its
    error file: every rank's error file of this machine is read too. Failures carry a time in
    whole seconds, so the rank that failed first and those whose collective broke because of
    it often tie: a broken connection to a peer sorts after a rank's own error.
    """
    failures: dict[int, tuple[int, str]] = {}
    for rank, failure in error.failures.items():
        message = failure.message
        if isinstance(message, dict):
            message = message.get("message", message)
        failures[rank] = (failure.timestamp, str(message or f"exit code {failure.exitcode}"))
        if failure.error_file:
            failures.update(_sibling_errors(Path(failure.error_file), rank - failure.local_rank))
    ordered = sorted(failures.items(), key=lambda item: (item[1][0], _peer_gone(item[1][1]),
                                                         item[0]))
    return [(rank, message) for rank, (_, message) in ordered]


def _peer_gone(message: str) -> bool:
    return any(marker in message for marker in _PEER_GONE)


def _stopping_signal(failed: list[tuple[int, str]]) -> str | None:
    """The signal the run was stopped by, when every failed rank stopped for a signal or lost
    a peer that did; None when any rank failed on an error of its own.

    A rank that raises makes the launcher send SIGTERM to the others, which then stop as
    they would for a user's signal (their message names it): that is still the first rank's
    failure, not an interruption to resume from.
    """
    if any(not stop.named_in(message) and not _peer_gone(message) for _, message in failed):
        return None
    return next((stop.named_in(message) for _, message in failed if stop.named_in(message)),
                None)


def _describe(failed: list[tuple[int, str]]) -> str:
    return ("data-parallel training stopped: "
            + "; ".join(f"rank {rank} failed: {message}" for rank, message in failed)
            + f" (on {socket.gethostname()}). The other ranks were stopped; the last checkpoint "
            "written stays good (continue with train_gan.resume=true).")


def _sibling_errors(error_file: Path, first_rank: int) -> dict[int, tuple[int, str]]:
    """{global rank: (time, message)} from this attempt's error files (<attempt>/<local>/)."""
    found = {}
    for path in error_file.parent.parent.glob("*/error.json"):
        try:
            recorded = json.loads(path.read_text())["message"]
            found[first_rank + int(path.parent.name)] = (
                int(recorded["extraInfo"]["timestamp"]), str(recorded["message"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not written (a rank that died), or not in the expected form
    return found
