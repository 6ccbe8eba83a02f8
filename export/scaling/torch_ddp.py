"""One PyTorch DDP worker: `python -m export.scaling.torch_ddp --rank R --workers N --port P ...`."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from export import data, tensorboard, torch_model
from export.device import torch_device
from export.scaling.plan import WorkerResult, epoch_order, shard, worker_args, write_result


def main(argv: list[str] | None = None) -> int:
    plan, rank, port, out, log_dir = worker_args(argv)
    setup = time.perf_counter()
    device = torch_device()
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # one core per worker: N workers on N cores
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=plan.workers)
    split = data.load_split(plan.seed)
    x_all = torch.from_numpy(split.x_train[: plan.train_rows]).to(device)
    y_all = torch.from_numpy(split.y_train[: plan.train_rows]).to(device)
    torch.manual_seed(plan.seed)  # every rank starts from the same weights (DDP also broadcasts rank 0's)
    model = torch_model.build_mlp(x_all.shape[1], int(split.y_train.max()) + 1).to(device)
    ddp = nn.parallel.DistributedDataParallel(model)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=plan.learning_rate)
    result = WorkerResult("pytorch", plan.workers, str(device), train_rows=len(x_all), strategy="DDP")
    logger = tensorboard.ScalarLog(log_dir, "pytorch") if log_dir and rank == 0 else None
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
            probs = ddp(x_all[idx])
            # the mean over this worker's share; DDP averages the gradients: the global batch's mean loss
            loss = nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), y_all[idx])
            loss.backward()
            optimizer.step()
            total += loss.detach()
        dist.all_reduce(total)
        dist.barrier()
        result.epoch_seconds.append(time.perf_counter() - start)
        if rank == 0:
            loss_value = float(total) / plan.workers / max(len(batches), 1)
            acc = torch_model.accuracy(model, split.x_test, split.y_test)
            result.record(epoch, loss_value, acc, logger)
    if logger:
        logger.close()
    dist.destroy_process_group()
    if rank == 0:
        write_result(result, out)
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
