"""Data-parallel training, both frameworks, on this machine: `python -m export.scaling --workers 1,2` (`make scaling`).

The seed MLP on the digits split, trained by N worker processes per framework, on loopback only:
- PyTorch: DistributedDataParallel over gloo (nccl on CUDA), one process per worker (export/scaling/torch_ddp.py).
- TensorFlow: MultiWorkerMirroredStrategy, one process per worker, a custom training loop (Keras 3's `fit` does
  not run under this strategy: it fails on PerReplica inputs), export/scaling/tf_multiworker.py.

Both use the same rules (export/scaling/plan.py): the same global batch split evenly across workers, the same
epochs, Adam with the same learning rate for every N (the global batch does not change with N, so neither does the
rate), the same seeded split, each epoch's order from the same seed, every worker on its own shard. Rank 0 times
each epoch and evaluates on the test split; the report (export/scaling/report.py) gives, per framework and N, the
median epoch time, samples/s, scaling efficiency against N = 1 and the final test accuracy.
"""
