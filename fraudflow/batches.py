"""Which training rows each member sees, step by step: its own negative sample, shuffled afresh every epoch or
drawn into balanced batches, as (members, rows) index arrays into the training split.

The draws are TensorFlow's stateless random functions keyed by train.seed, the member and the epoch, so an
epoch's rows do not depend on how they are later cut into chunks for reading.
"""

import numpy as np

from fraudflow.common import quiet_tensorflow
from fraudflow.scaled import member_sample, member_seed

with quiet_tensorflow():
    import tensorflow as tf


def member_samples(labels: np.ndarray, rate: float, seed: int, members: int) -> np.ndarray:
    """(members, rows) sorted training row indices: each member's every positive and its own sample of the
    negatives (all rows, one shared view, when rate is 1)."""
    if rate == 1:
        return np.broadcast_to(np.arange(len(labels)), (members, len(labels)))
    return np.stack([member_sample(labels, rate, seed, m) for m in range(members)])


def shuffled_rows(samples: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """(members, rows): each member's sample in its own seeded order for this epoch (every row once)."""
    count = samples.shape[1]
    orders = np.stack(
        [
            tf.random.experimental.stateless_shuffle(
                tf.range(count), seed=tf.constant([member_seed(seed, m), epoch], tf.int64)
            ).numpy()
            for m in range(len(samples))
        ]
    )
    if samples.strides[0] == 0 and samples[0, -1] == count - 1:  # every member samples every row: no lookup
        return orders
    return np.take_along_axis(samples, orders, axis=1)


def class_pools(labels: np.ndarray, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(members, n) positives and (members, k) negatives of each member's sample (views when all share one)."""
    shared = samples.strides[0] == 0  # member_samples' single view of every row
    positives = np.flatnonzero(labels == 1)
    negatives = [row[labels[row] == 0] for row in (samples[:1] if shared else samples)]
    negatives = np.broadcast_to(negatives[0], (len(samples), len(negatives[0]))) if shared else np.stack(negatives)
    return np.broadcast_to(positives, (len(samples), len(positives))), negatives


def balanced_rows(pools: tuple[np.ndarray, np.ndarray], batch_size: int, seed: int, epoch: int, steps: int):
    """(members, steps * batch_size) rows: each member's batch is half positives, half negatives of its sample
    (class_pools), drawn with replacement."""
    positives, negatives = pools
    members, n_pos = len(positives), batch_size // 2

    def draw(pool, count, step, part):
        key = tf.constant([seed, (epoch * steps + step) * 2 + part], tf.int64)
        picks = tf.random.stateless_uniform([members, count], key, maxval=pool.shape[1], dtype=tf.int64)
        return np.take_along_axis(pool, picks.numpy(), axis=1)

    return np.concatenate(
        [
            np.concatenate([draw(positives, n_pos, step, 0), draw(negatives, batch_size - n_pos, step, 1)], axis=1)
            for step in range(steps)
        ],
        axis=1,
    )
