"""Data-parallel training, both frameworks: `python -m export.scaling [--model digits_wide] --workers 1,2`
(`make scaling`), on this machine; the same workers as pods of Kubernetes Indexed Jobs (export/scaling/pod.py,
k8s/components/training).

A builtin MLP of the registry (models.toml; the seed `digits` by default, `digits_wide` has ~500x its multiply-adds)
on the digits split, trained by N worker processes per framework:
- PyTorch: DistributedDataParallel over gloo (nccl on CUDA), one process per worker (export/scaling/torch_ddp.py);
  on loopback, or under torchrun's c10d rendezvous in the pods.
- TensorFlow: MultiWorkerMirroredStrategy, one process per worker, a custom training loop (Keras 3's `fit` does
  not run under this strategy: it fails on PerReplica inputs), export/scaling/tf_multiworker.py.

Both use the same rules (export/scaling/plan.py): the same global batch split evenly across workers, the same
epochs, Adam with the model's learning rate for every N (the global batch does not change with N, so neither does
the rate), the same seeded split, each epoch's order from the same seed, every worker on its own shard. The
reporting worker times each epoch and evaluates on the test split; after training every worker times the step
split (export/scaling/split.py): a step, the same step without the gradient all-reduce, the all-reduce alone. The
report (export/scaling/report.py) gives, per framework and N, the median epoch time, samples/s, scaling efficiency
against N = 1, the final test accuracy, and where a step's time goes.
"""
