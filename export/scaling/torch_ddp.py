"""One PyTorch DDP worker: `python -m export.scaling.torch_ddp --rank R --workers N --port P ...` on loopback, or
under torchrun (rank and rendezvous from its environment: k8s/components/training)."""

from __future__ import annotations

import contextlib
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from export import data, tensorboard, torch_model
from export.device import torch_device
from export.scaling.plan import Plan, Probe, WorkerResult, epoch_order, reports, shard, worker_args, write_result


def nll(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean over this worker's share; DDP averages the gradients: the global batch's mean loss."""
    return nn.functional.nll_loss(torch.log(model(x).clamp_min(1e-12)), y)


def main(argv: list[str] | None = None) -> int:
    plan, rank, port, out, log_dir = worker_args(argv)
    setup = time.perf_counter()
    device = torch_device()
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # torchrun sets the address of its own rendezvous
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # one core per worker: N workers on N cores
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=plan.workers)
    reporter = reports(rank)
    split = data.load_split(plan.seed)
    x_all = torch.from_numpy(split.x_train[: plan.train_rows]).to(device)
    y_all = torch.from_numpy(split.y_train[: plan.train_rows]).to(device)
    torch.manual_seed(plan.seed)  # every rank starts from the same weights (DDP also broadcasts rank 0's)
    model = torch_model.build_mlp(x_all.shape[1], int(split.y_train.max()) + 1, plan.hidden).to(device)
    # Gradients as views into DDP's buckets: without it DDP copies every gradient into its bucket before the
    # all-reduce and back after (17 MB each way a step for the wide model), a cost that is neither compute nor the
    # all-reduce and left the split 13 % short of the step (quiet machine); PyTorch recommends it for this reason.
    ddp = nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=plan.learning_rate)
    result = WorkerResult("pytorch", plan.workers, str(device), train_rows=len(x_all), strategy="DDP")
    result.gradient_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    logger = tensorboard.ScalarLog(log_dir, "pytorch") if log_dir and reporter else None
    dist.barrier()
    result.setup_seconds = time.perf_counter() - setup
    for epoch in range(plan.epochs):
        dist.barrier()
        start = time.perf_counter()
        ddp.train()
        total = torch.zeros((), device=device)
        batches = shard(epoch_order(len(x_all), plan.seed, epoch), plan, rank)
        for rows in batches:
            idx = torch.tensor(rows, device=device)
            optimizer.zero_grad()
            loss = nll(ddp, x_all[idx], y_all[idx])
            loss.backward()
            optimizer.step()
            total += loss.detach()
        dist.all_reduce(total)
        dist.barrier()
        result.epoch_seconds.append(time.perf_counter() - start)
        result.steps_per_epoch = len(batches)
        if reporter:
            loss_value = float(total) / plan.workers / max(len(batches), 1)
            acc = torch_model.accuracy(model, split.x_test, split.y_test)
            result.record(epoch, loss_value, acc, logger)
    if logger:
        logger.close()
    result.probe = probe_split(plan, ddp, optimizer, x_all, y_all, rank, device)
    dist.destroy_process_group()
    if reporter:
        write_result(result, out)
    return 0


def probe_split(
    plan: Plan, ddp: nn.parallel.DistributedDataParallel, optimizer: torch.optim.Optimizer,
    x: torch.Tensor, y: torch.Tensor, rank: int, device: torch.device,
) -> dict[str, list[float]]:  # fmt: skip
    """After training (the weights may part from here on): a step as trained; the same step under DDP's no_sync
    (forward, backward and Adam, no gradient all-reduce); an all-reduce alone of a tensor of the gradient's size
    (DDP reduces the same bytes in its buckets)."""
    grads = torch.zeros(sum(p.numel() for p in ddp.parameters()), device=device)
    batches = shard(epoch_order(len(x), plan.seed, plan.epochs), plan, rank)

    def barrier() -> None:
        dist.barrier()
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(idx: torch.Tensor, sync: bool) -> None:
        optimizer.zero_grad()
        with contextlib.nullcontext() if sync else ddp.no_sync():
            nll(ddp, x[idx], y[idx]).backward()
        optimizer.step()

    probe = Probe()
    for r in range(plan.probe_rounds):
        idx = torch.tensor(batches[r % len(batches)], device=device)
        runs = {
            "step": lambda: step(idx, True),  # noqa: B023 - called within the round
            "compute": lambda: step(idx, False),  # noqa: B023
            "allreduce": lambda: dist.all_reduce(grads),
        }
        probe.round(r, runs, barrier)
    return probe.times


if __name__ == "__main__":
    np.seterr(all="ignore")
    code = main()
    # Leave without interpreter finalization, as multiprocessing's children do. Once a DDP has used it, the gloo
    # process group's run-loop threads outlive destroy_process_group (still there after the group, the DDP and the
    # model were gone and collected; after a plain all_reduce they end), and during finalization one took the GIL, was
    # made to exit by CPython, and std::terminate'd the worker: SIGABRT after the work was done, in about a third of
    # 2-worker runs on this machine (gdb: pt_gloo_runloop in take_gil while the main thread ran Py_FinalizeEx).
    # Everything is written and closed by now; only the exit is left.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
