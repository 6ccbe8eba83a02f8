"""One TensorFlow MultiWorkerMirroredStrategy worker: `python -m export.scaling.tf_multiworker --rank R ...`.

A custom loop: Keras 3's `fit` fails under this strategy (PerReplica inputs). The model is the registry's MLP as
plain variables created under the strategy (Glorot-uniform kernels, zero biases: Keras's Dense defaults); each step
all-reduces the gradients (a sum of per-worker means / N: the global batch's mean) and applies Adam with PyTorch's
constants, so both frameworks take the same step rule. The cluster is loopback ports from --port, unless $TF_CONFIG
is already set (a Kubernetes Indexed Job: export/scaling/pod.py builds it from the pod's index)."""

from __future__ import annotations

import functools
import itertools
import json
import os
import sys
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    from export.scaling.plan import ADAM, Probe, WorkerResult, epoch_order, reports, shard, worker_args, write_result

    plan, rank, port, out, log_dir = worker_args(argv)
    setup = time.perf_counter()
    if "TF_CONFIG" not in os.environ:
        cluster = {"worker": [f"127.0.0.1:{port + r}" for r in range(plan.workers)]}
        os.environ["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": rank}})
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from export import data, tensorboard
    from export.device import tf_device

    tf.config.threading.set_intra_op_parallelism_threads(1)  # one core per worker, as the PyTorch side
    tf.config.threading.set_inter_op_parallelism_threads(1)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    reporter = reports(rank)
    split = data.load_split(plan.seed)
    x_all, y_all = split.x_train[: plan.train_rows], split.y_train[: plan.train_rows]
    n_classes = int(split.y_train.max()) + 1
    widths = [x_all.shape[1], *plan.hidden, n_classes]
    rng = np.random.default_rng(plan.seed)
    first = tf.VariableAggregation.ONLY_FIRST_REPLICA  # every replica holds the same all-reduced update
    with tf.device(tf_device()), strategy.scope():
        params = []
        for fan_in, fan_out in itertools.pairwise(widths):
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            kernel = rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)
            bias = np.zeros(fan_out, np.float32)
            params += [tf.Variable(kernel, aggregation=first), tf.Variable(bias, aggregation=first)]
        moments = [tf.Variable(tf.zeros_like(p), aggregation=first) for p in params]
        squares = [tf.Variable(tf.zeros_like(p), aggregation=first) for p in params]
        step_count = tf.Variable(0.0, aggregation=first)

    def forward(x: tf.Tensor) -> tf.Tensor:
        h = x
        for i in range(0, len(params), 2):
            h = tf.matmul(h, params[i]) + params[i + 1]
            if i < len(params) - 2:
                h = tf.nn.relu(h)
        return tf.nn.softmax(h)

    lr, b1, b2, eps = plan.learning_rate, ADAM["beta1"], ADAM["beta2"], ADAM["eps"]

    def step_fn(x: tf.Tensor, y: tf.Tensor, sync: bool = True) -> tf.Tensor:
        with tf.GradientTape() as tape:
            probs = forward(x)
            loss = tf.reduce_mean(-tf.math.log(tf.maximum(tf.gather(probs, y, batch_dims=1), 1e-12)))
        grads = tape.gradient(loss, params)
        if sync:  # sync=False: the split's compute-only step, the same graph without the collective
            ctx = tf.distribute.get_replica_context()
            grads = [g / plan.workers for g in ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)]
        t = step_count + 1.0
        step_count.assign(t)
        for p, g, m, v in zip(params, grads, moments, squares, strict=True):
            m.assign(b1 * m + (1.0 - b1) * g)
            v.assign(b2 * v + (1.0 - b2) * g * g)
            p.assign(p - lr * (m / (1.0 - b1**t)) / (tf.sqrt(v / (1.0 - b2**t)) + eps))
        return loss

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        per_replica = strategy.run(step_fn, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    result = WorkerResult(
        "tensorflow", plan.workers, tf_device(), train_rows=len(x_all), strategy="MultiWorkerMirrored"
    )
    result.gradient_bytes = int(sum(int(np.prod(p.shape)) * 4 for p in params))
    logger = tensorboard.ScalarLog(log_dir, "tensorflow") if log_dir and reporter else None
    x_tf, y_tf = tf.constant(x_all), tf.constant(y_all)
    result.setup_seconds = time.perf_counter() - setup
    for epoch in range(plan.epochs):
        start = time.perf_counter()
        total, batches = 0.0, shard(epoch_order(len(x_all), plan.seed, epoch), plan, rank)
        for rows in batches:
            idx = tf.constant(rows)
            total += float(train_step(tf.gather(x_tf, idx), tf.gather(y_tf, idx)))  # float(): waits for the step
        result.epoch_seconds.append(time.perf_counter() - start)
        result.steps_per_epoch = len(batches)
        if reporter:
            loss_value = total / max(len(batches), 1)
            acc = float((forward(tf.constant(split.x_test)).numpy().argmax(1) == split.y_test).mean())
            result.record(epoch, loss_value, acc, logger)
    if logger:
        logger.close()

    # The split, after training (the weights may part from here on): train_step as trained; the same step without
    # the all-reduce; the all-reduce alone on tensors of the gradients' shapes. The barrier is a scalar collective.
    @tf.function
    def compute_step(x: tf.Tensor, y: tf.Tensor) -> Any:
        return strategy.run(functools.partial(step_fn, sync=False), args=(x, y))

    zeros = [tf.zeros(p.shape) for p in params]

    @tf.function
    def allreduce_alone() -> Any:
        def reduce_all() -> tf.Tensor:  # one element of each result: every collective runs, little is copied back
            reduced = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, zeros)
            return tf.add_n([tf.reshape(t, [-1])[0] for t in reduced])

        return strategy.run(reduce_all)

    @tf.function
    def barrier_op() -> tf.Tensor:
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)

    def wait(value: Any) -> None:
        for v in strategy.experimental_local_results(value):
            np.asarray(v)

    batches = shard(epoch_order(len(x_all), plan.seed, plan.epochs), plan, rank)
    probe = Probe()
    for r in range(plan.probe_rounds):
        idx = tf.constant(batches[r % len(batches)])
        x, y = tf.gather(x_tf, idx), tf.gather(y_tf, idx)
        barrier = lambda: wait(barrier_op())  # noqa: E731
        runs = {
            "step": lambda: wait(train_step(x, y)),  # noqa: B023 - called within the round
            "compute": lambda: wait(compute_step(x, y)),  # noqa: B023
            "allreduce": lambda: wait(allreduce_alone()),
        }
        probe.round(r, runs, barrier)
    result.probe = probe.times
    if reporter:
        write_result(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
