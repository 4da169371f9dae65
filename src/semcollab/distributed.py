"""Data-parallel training on ``torch.distributed``, launched by ``torchrun`` (gloo on CPU, NCCL on GPU).

Nothing here manages processes, rendezvous or collectives of its own: ``torchrun`` starts the processes and sets
``WORLD_SIZE`` / ``RANK`` / ``LOCAL_RANK`` / ``MASTER_ADDR``; :func:`setup` calls ``init_process_group`` once when
those say there is more than one process, and every exchange is a ``torch.distributed`` collective. Without
torchrun (or with ``WORLD_SIZE=1``) every function here is the identity of single-process training: rank 0 of 1.

How a ranking fit splits its work (:mod:`.trainer`): every rank draws the same seeded batch order and builds the
same global batch of ``train.batch_size`` rows; rank r trains on its contiguous slice of those rows
(:func:`shard_rows`), its mean loss rescaled by its share of the batch's targets (:func:`shard_scale`), so that
DistributedDataParallel's mean of the ranks' gradients is the gradient of the global batch's mean loss: N ranks
take the optimiser steps one process with the whole batch takes. Evaluation is split over the ranks by chunks of
users and gathered (:func:`~semcollab.evaluation.ranking.evaluate_ranking` with ``over_ranks``); rank 0's stop
decision is broadcast; rank 0 alone writes the run folder and the resume checkpoint, and hands the checkpoint it
reads on resume to the others."""

from __future__ import annotations

import atexit
import gc
import os
import subprocess
import sys
from contextlib import contextmanager
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from .errors import DistributedError, SemcollabError


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise DistributedError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number of processes") from None


def setup() -> bool:
    """Join the process group torchrun describes (once per process; no-op without torchrun or for one process).
    GPU ranks each take ``cuda:LOCAL_RANK``. True when this process is one of several."""
    if dist.is_available() and not dist.is_initialized() and env_world_size() > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        atexit.register(_close_at_exit)  # a process leaving with gloo's threads still up may abort (SIGABRT) at exit
    return active()


# How long a rank that ends normally waits at exit for the others (rank 0 writes the run folder after the last
# collective): beyond it the rank leaves anyway, as it did before the wait existed.
EXIT_WAIT = timedelta(minutes=10)
_leaving_on_error = [False]  # per process, like the process group itself


def leaving_on_error() -> None:
    """This process is ending on an error (the CLI calls it before exiting with one): it leaves the process group at
    exit without waiting for the other ranks, which may be blocked in a collective this rank will never join."""
    _leaving_on_error[0] = True


def close(wait: bool = False) -> None:
    """Leave the process group (at exit, or earlier by hand). ``wait``: first wait (at most :data:`EXIT_WAIT`) until
    every rank leaves, so none tears its gloo connections down while another still works: a rank destroying its
    group while rank 0 was still writing its files aborted (SIGABRT, "terminate called without an active exception";
    twice in full test-suite runs, once of them on CI)."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait and active() and dist.get_backend() == "gloo":
        try:  # send / recv on its own tag: never matched with a collective another rank is still in
            dist.monitored_barrier(timeout=EXIT_WAIT, wait_all_ranks=True)
        except RuntimeError:  # a rank that failed or left: leave regardless
            pass
    dist.destroy_process_group()
    # free a group only garbage (a reference cycle) still holds now, while the interpreter is whole: freed during
    # interpreter teardown, gloo's threads may release tensors after Python is gone (an abort at exit, PyTorch #179291)
    gc.collect()


def _close_at_exit() -> None:
    """A normal end waits for the other ranks; an uncaught exception (``sys.last_value``, set when Python prints
    it) or an error the CLI reported (:func:`leaving_on_error`) leaves at once."""
    failed = _leaving_on_error[0] or getattr(sys, "last_value", None) is not None
    close(wait=not failed)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def from_main(value):
    """Rank 0's ``value`` on every rank (any picklable object); ``value`` itself in one process."""
    if not active():
        return value
    box = [value if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def sum_over_ranks(x: float) -> float:
    """The sum of ``x`` over the ranks (``x`` in one process), in float64."""
    if not active():
        return x
    t = torch.tensor([x], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def barrier() -> None:
    """Wait for every rank (files rank 0 wrote are then there for the others to read); no-op in one process."""
    if active():
        dist.barrier()


def on_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0 only (reading a checkpoint, checks and writes of a run folder); its result
    on every rank. A :class:`~semcollab.errors.SemcollabError` it raises is raised on rank 0 and, as a
    :class:`DistributedError` quoting it, on the others, so no rank waits in a collective that the others left."""
    if not active():
        return fn(*args, **kwargs)
    value, error = None, None
    if is_main():
        try:
            value = fn(*args, **kwargs)
        except SemcollabError as exc:
            error = exc
    value, message = from_main((value, None if error is None else f"{type(error).__name__}: {error}"))
    if error is not None:
        raise error
    if message is not None:
        raise DistributedError(f"rank {rank()}: rank 0 stopped the run: {message}")
    return value


@contextmanager
def main_first():
    """Rank 0 runs the block before the others do (data preparation that writes a cache the others then read)."""
    if active() and not is_main():
        dist.barrier()
    yield
    if active() and is_main():
        dist.barrier()


def shard_rows(n: int) -> slice:
    """This rank's contiguous slice of ``n`` rows: the rows split as evenly as ``numpy.array_split`` splits them
    (the first ``n % N`` ranks take one row more; a rank may get none when ``n < N``)."""
    sizes, r = shard_sizes(n), rank()
    start = sum(sizes[:r])
    return slice(start, start + sizes[r])


def shard_sizes(n: int) -> list[int]:
    """How many of ``n`` rows each rank's :func:`shard_rows` slice holds, by rank."""
    base, extra = divmod(n, world_size())
    return [base + (r < extra) for r in range(world_size())]


def gather_rows(part: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` rows of which each rank holds its :func:`shard_rows` slice (``part``), in order, on every rank;
    ``part`` itself in one process. Not differentiable (targets, caches)."""
    if not active():
        return part
    sizes = shard_sizes(n)
    if len(part) != sizes[rank()]:
        raise DistributedError(f"rank {rank()} holds {len(part)} rows; its shard of {n} rows has {sizes[rank()]}")
    padded = part.new_zeros(max(sizes), *part.shape[1:])  # all_gather needs one shape on every rank
    padded[:len(part)] = part
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:k] for p, k in zip(parts, sizes)])


def shard_scale(n_shard: int, n_global: int) -> float:
    """Factor of a shard's mean loss over its ``n_shard`` targets so that the mean over ranks (what DDP does to
    gradients) is the mean over the global batch's ``n_global`` targets."""
    return world_size() * n_shard / max(n_global, 1)


class LossModule(nn.Module):
    """``forward(batch)`` is ``model.loss(batch)``: what DistributedDataParallel wraps, since DDP synchronises
    gradients of what goes through ``forward``. ``batch=None`` (a rank whose shard of a short last batch is
    empty) gives a zero loss that still reaches every parameter, so the all-reduce of that step happens."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch):
        if batch is None:
            return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
        return self.model.loss(batch)


def wrap(model: nn.Module, device: torch.device, find_unused_parameters: bool = True):
    """``model.loss`` as a callable of one batch: DDP-wrapped across ranks, the plain method in one process.

    ``find_unused_parameters`` stays on for training: a model may leave some parameters out of some losses (user
    tables, side branches); the search costs ~1% of a Beauty SASRec step (docs/results.md 22i, bench_gloo.py)."""
    if not active():
        return model.loss
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(LossModule(model), device_ids=ids,
                                               find_unused_parameters=find_unused_parameters)


def epoch_seed(seed: int, epoch: int) -> int:
    """The torch seed of ``epoch`` on this rank (dropout, sampled negatives): distinct per rank and epoch, and a
    function of them only, so a resumed distributed run redraws what an unbroken one drew."""
    return (seed * 1_000_003 + epoch * 9_973 + rank()) % (2**63 - 1)


def step_seed(seed: int, step: int) -> int:
    """The torch seed of optimiser step ``step`` on this rank (LM training: LoRA dropout, drawn views): distinct per
    rank and step, and a function of them only, so a resumed distributed run redraws what an unbroken one drew
    without saving every rank's RNG."""
    return (seed * 1_000_003 + step * 7_919 + rank() * 104_729 + 1) % (2**63 - 1)


def average_gradients(params: list[torch.Tensor], values: list[float] = ()) -> list[float]:
    """Replace each parameter's gradient by its mean over the ranks and return the sums of ``values`` over the
    ranks, in one all-reduce of one flat buffer (many small LoRA tensors would cost one latency each).

    A rank whose rows did not reach a parameter (``grad is None``) adds zeros; a parameter no rank reached keeps
    ``grad = None``, so the optimiser skips it as it does in one process. Identity in one process."""
    if not active():
        return list(values)
    device = params[0].device
    grads = [p.grad for p in params]
    flat = torch.cat([g.detach().reshape(-1).float() if g is not None else torch.zeros(p.numel(), device=device)
                      for p, g in zip(params, grads)]
                     + [torch.tensor([float(g is not None) for g in grads], device=device),
                        torch.tensor(list(values), dtype=torch.float32, device=device)])
    dist.all_reduce(flat)
    size, offset = world_size(), 0
    reached = flat[-len(values) - len(params):len(flat) - len(values)]
    for p, g, hit in zip(params, grads, reached.tolist()):
        mean = flat[offset:offset + p.numel()].view(p.shape) / size
        offset += p.numel()
        if g is not None:
            g.copy_(mean)
        elif hit > 0:
            p.grad = mean.to(p.dtype)
    return flat[len(flat) - len(values):].tolist()


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The torchrun command that runs ``python -m semcollab <argv>`` in ``nproc`` local processes."""
    if nproc < 1:
        raise DistributedError(f"--nproc must be at least 1, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "semcollab", *argv]


def without_nproc(argv: list[str]) -> list[str]:
    """``argv`` after its command name (``train``), less ``--nproc N`` / ``--nproc=N``."""
    argv = list(argv)
    if argv and not argv[0].startswith("-"):
        argv = argv[1:]
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``semcollab <argv>`` under torchrun with ``nproc`` processes; its exit status."""
    if env_world_size() > 1:
        raise DistributedError("--nproc was given inside a torchrun launch; drop it (torchrun already started "
                               f"{env_world_size()} processes)")
    command = torchrun_command(nproc, argv)  # checks nproc >= 1 before it divides the cores
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.run(command, env=env).returncode
