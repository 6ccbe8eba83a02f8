"""One TensorFlow MultiWorkerMirroredStrategy worker: `python -m export.scaling.tf_multiworker --rank R ...`.

A custom loop: Keras 3's `fit` fails under this strategy (PerReplica inputs). The model is the seed MLP as plain
variables created under the strategy (Glorot-uniform kernels, zero biases: Keras's Dense defaults); each step
all-reduces the gradients (a sum of per-worker means / N: the global batch's mean) and applies Adam with PyTorch's
constants, so both frameworks take the same step rule."""

from __future__ import annotations

import json
import os
import sys
import time


def main(argv: list[str] | None = None) -> int:
    from export.scaling.plan import ADAM, WorkerResult, epoch_order, shard, worker_args, write_result

    plan, rank, port, out, log_dir = worker_args(argv)
    setup = time.perf_counter()
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{port + r}" for r in range(plan.workers)]},
            "task": {"type": "worker", "index": rank},
        }
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    from export import data, tensorboard
    from export.device import tf_device

    tf.config.threading.set_intra_op_parallelism_threads(1)  # one core per worker, as the PyTorch side
    tf.config.threading.set_inter_op_parallelism_threads(1)
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    split = data.load_split(plan.seed)
    x_all, y_all = split.x_train[: plan.train_rows], split.y_train[: plan.train_rows]
    n_classes = int(split.y_train.max()) + 1
    sizes = [(x_all.shape[1], 64), (64, 64), (64, n_classes)]
    rng = np.random.default_rng(plan.seed)
    first = tf.VariableAggregation.ONLY_FIRST_REPLICA  # every replica holds the same all-reduced update
    with tf.device(tf_device()), strategy.scope():
        params = []
        for fan_in, fan_out in sizes:
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

    @tf.function
    def train_step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        def step_fn(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                probs = forward(x)
                loss = tf.reduce_mean(-tf.math.log(tf.maximum(tf.gather(probs, y, batch_dims=1), 1e-12)))
            grads = tape.gradient(loss, params)
            ctx = tf.distribute.get_replica_context()
            grads = [g / plan.workers for g in ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)]
            t = step_count + 1.0
            step_count.assign(t)
            for p, g, m, v in zip(params, grads, moments, squares, strict=True):
                m.assign(b1 * m + (1.0 - b1) * g)
                v.assign(b2 * v + (1.0 - b2) * g * g)
                p.assign(p - lr * (m / (1.0 - b1**t)) / (tf.sqrt(v / (1.0 - b2**t)) + eps))
            return loss

        per_replica = strategy.run(step_fn, args=(x, y))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica, axis=None)

    result = WorkerResult(
        "tensorflow", plan.workers, tf_device(), train_rows=len(x_all), strategy="MultiWorkerMirrored"
    )
    logger = tensorboard.ScalarLog(log_dir, "tensorflow") if log_dir and rank == 0 else None
    x_tf, y_tf = tf.constant(x_all), tf.constant(y_all)
    result.setup_seconds = time.perf_counter() - setup
    for epoch in range(plan.epochs):
        start = time.perf_counter()
        total, batches = 0.0, shard(epoch_order(len(x_all), plan.seed, epoch), plan, rank)
        for rows in batches:
            idx = tf.constant(rows)
            total += float(train_step(tf.gather(x_tf, idx), tf.gather(y_tf, idx)))  # float(): waits for the step
        result.epoch_seconds.append(time.perf_counter() - start)
        if rank == 0:
            loss_value = total / max(len(batches), 1)
            acc = float((forward(tf.constant(split.x_test)).numpy().argmax(1) == split.y_test).mean())
            result.record(epoch, loss_value, acc, logger)
    if logger:
        logger.close()
    if rank == 0:
        write_result(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
