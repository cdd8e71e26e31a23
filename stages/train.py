"""train: fit the tutorial's model with one imbalance strategy: `python -m stages.train baseline|weighted|resampled`."""

import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # hide TensorFlow's C++ log chatter; set it to 0 to debug

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import tensorflow as tf  # noqa: E402

from stages.common import (  # noqa: E402
    MODELS_DIR,
    PREDICTIONS_DIR,
    SPLITS,
    STRATEGIES,
    StageError,
    atomic_output,
    is_int,
    is_number,
    load_params,
    load_scaled,
    log,
    require,
    run,
    write_json,
    write_parquet,
)

# Early stopping direction of each metric it may watch.
MONITORS = {
    "val_loss": "min",
    "val_auc": "max",
    "val_prc": "max",
    "val_precision": "max",
    "val_recall": "max",
    "val_accuracy": "max",
}
HISTORY_METRICS = ["loss", "auc", "prc", "precision", "recall"]
# Rows per batch when only predicting (validation, predictions): results do not depend on it, and fewer,
# larger batches cost less per epoch than the training batch size would.
PREDICT_BATCH = 16384
HISTORY_DIR = "plots/history"
METRICS_DIR = "metrics/train"


def read_settings(strategy: str) -> dict:
    """The shared `train` params plus the strategy's own `train_<strategy>` params, all validated."""
    if strategy not in STRATEGIES:
        raise StageError(f"unknown strategy {strategy!r}; expected one of {', '.join(STRATEGIES)}")
    shared, own_section = load_params("train"), f"train_{strategy}"
    own = load_params(own_section)
    positive_int = lambda v: is_int(v) and v > 0
    settings = {
        "seed": require(shared, "train", "seed", lambda v: is_int(v) and v >= 0, "an integer >= 0"),
        "hidden_units": require(shared, "train", "hidden_units", positive_int, "an integer > 0"),
        "dropout": require(shared, "train", "dropout", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
        "learning_rate": require(shared, "train", "learning_rate", lambda v: is_number(v) and v > 0, "a number > 0"),
        "batch_size": require(shared, "train", "batch_size", positive_int, "an integer > 0"),
        "monitor": require(shared, "train", "monitor", lambda v: v in MONITORS, f"one of {', '.join(MONITORS)}"),
        "patience": require(shared, "train", "patience", lambda v: is_int(v) and v >= 0, "an integer >= 0"),
        "epochs": require(own, own_section, "epochs", positive_int, "an integer > 0"),
    }
    if strategy == "resampled":
        settings["steps_per_epoch"] = require(own, own_section, "steps_per_epoch", positive_int, "an integer > 0")
        if settings["batch_size"] < 2:
            raise StageError("params.yaml: param 'train.batch_size' must be >= 2 for balanced batches")
    return settings


def initial_bias(labels: np.ndarray) -> float:
    """log(pos/neg): the output bias that makes the untrained model predict the base rate."""
    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        raise StageError(f"the training split needs both classes; it has {positives} frauds in {len(labels)} rows")
    return float(np.log(positives / (len(labels) - positives)))


def class_weights(labels: np.ndarray) -> dict:
    """w_c = total / (2 * n_c): each class carries half of the total weight."""
    counts = np.bincount(labels, minlength=2)
    return {c: len(labels) / (2.0 * counts[c]) for c in (0, 1)}


def build_model(n_features: int, settings: dict, output_bias: float, steps_per_execution: int = 1):
    """Dense(16, relu) -> Dropout(0.5) -> Dense(1, sigmoid), compiled with the tutorial's metrics.

    steps_per_execution > 1 runs that many training steps per compiled call (fewer Python round trips).
    """
    model = keras.Sequential(
        [
            keras.Input(shape=(n_features,)),
            keras.layers.Dense(settings["hidden_units"], activation="relu"),
            keras.layers.Dropout(settings["dropout"]),
            keras.layers.Dense(1, activation="sigmoid", bias_initializer=keras.initializers.Constant(output_bias)),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings["learning_rate"]),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[
            keras.metrics.TruePositives(name="tp"),
            keras.metrics.FalsePositives(name="fp"),
            keras.metrics.TrueNegatives(name="tn"),
            keras.metrics.FalseNegatives(name="fn"),
            keras.metrics.BinaryAccuracy(name="accuracy"),
            keras.metrics.Precision(name="precision"),
            keras.metrics.Recall(name="recall"),
            keras.metrics.AUC(name="auc"),
            keras.metrics.AUC(name="prc", curve="PR"),
        ],
        steps_per_execution=steps_per_execution,
    )
    return model


def shuffled_batches(features: np.ndarray, labels: np.ndarray, batch_size: int, seed: int, weights: dict | None = None):
    """An endless tf.data stream of batches, epoch after epoch, each epoch a new seeded permutation of the rows.

    Batches are gathered from in-memory tensors by index inside the graph: no per-example op. With
    `weights` (class -> weight), every batch also carries each example's class weight.
    """
    x, y = tf.constant(features), tf.constant(labels.astype(np.float32))
    class_weight = tf.constant([weights[0], weights[1]] if weights else [1.0, 1.0], tf.float32)
    rows = len(labels)
    steps = -(-rows // batch_size)

    def epoch(number):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(rows), seed=tf.stack([tf.constant(seed, tf.int64), number])
        )

        def batch(step):
            index = order[step * batch_size : (step + 1) * batch_size]
            batch_x, batch_y = tf.gather(x, index), tf.gather(y, index)
            if weights:
                return batch_x, batch_y, tf.gather(class_weight, tf.cast(batch_y, tf.int32))
            return batch_x, batch_y

        return tf.data.Dataset.range(steps).map(batch)

    return tf.data.Dataset.counter().flat_map(epoch).prefetch(2)


def balanced_batches(features: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """An endless tf.data stream of batches, half positives and half negatives, drawn with replacement.

    Whole batches are drawn as index arrays inside the graph (stateless, seeded by the batch number),
    so no example goes through a per-element Python or tf.data op.
    """
    positives = tf.constant(features[labels == 1])
    negatives = tf.constant(features[labels == 0])
    n_pos = batch_size // 2
    batch_labels = tf.constant(np.r_[np.ones(n_pos), np.zeros(batch_size - n_pos)].astype(np.float32))

    def draw(step):
        pos_seed = tf.stack([tf.constant(seed, tf.int64), 2 * step])
        neg_seed = tf.stack([tf.constant(seed, tf.int64), 2 * step + 1])
        pos_rows = tf.random.stateless_uniform([n_pos], pos_seed, maxval=tf.shape(positives)[0], dtype=tf.int32)
        neg_rows = tf.random.stateless_uniform(
            [batch_size - n_pos], neg_seed, maxval=tf.shape(negatives)[0], dtype=tf.int32
        )
        return tf.concat([tf.gather(positives, pos_rows), tf.gather(negatives, neg_rows)], axis=0), batch_labels

    return tf.data.Dataset.counter().map(draw).prefetch(2)


def epoch_logger(strategy: str, epochs: int, monitor: str):
    """A callback that logs one line per epoch (no carriage-return progress bar)."""

    def log_epoch(epoch, logs):
        log.info(
            "%s epoch %d/%d: loss %.4f, val_loss %.4f, %s %.4f",
            strategy,
            epoch + 1,
            epochs,
            logs["loss"],
            logs["val_loss"],
            monitor,
            logs[monitor],
        )

    return keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)


def train(strategy: str, settings: dict, train_xy, val_xy):
    """Fit the model with one strategy; return it (best weights restored) and its per-epoch history."""
    keras.utils.set_random_seed(settings["seed"])
    tf.config.experimental.enable_op_determinism()
    (x_train, y_train), (x_val, y_val) = train_xy, val_xy
    batch_size = settings["batch_size"]
    steps_per_epoch = settings["steps_per_epoch"] if strategy == "resampled" else -(-len(y_train) // batch_size)
    # Built before any strategy-specific step, so every strategy starts from the same weights. One
    # compiled call runs a whole epoch (it must divide the epoch: Keras runs whole executions).
    model = build_model(x_train.shape[1], settings, initial_bias(y_train), steps_per_execution=steps_per_epoch)
    if strategy == "resampled":
        model.layers[-1].bias.assign([0.0])  # the batches are balanced, so the base rate is 1/2
        batches = balanced_batches(x_train, y_train, batch_size, settings["seed"])
    else:
        weights = class_weights(y_train) if strategy == "weighted" else None
        batches = shuffled_batches(x_train, y_train, batch_size, settings["seed"], weights)
    monitor = settings["monitor"]
    validation = tf.data.Dataset.from_tensor_slices((x_val, y_val.astype(np.float32))).batch(PREDICT_BATCH).cache()
    history = model.fit(
        batches,
        steps_per_epoch=steps_per_epoch,
        epochs=settings["epochs"],
        validation_data=validation,
        shuffle=False,  # the batches come shuffled (or resampled) already
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode=MONITORS[monitor], patience=settings["patience"], restore_best_weights=True
            ),
            epoch_logger(strategy, settings["epochs"], monitor),
        ],
        verbose=0,
    )
    return model, pd.DataFrame(history.history)


def best_epoch(history: pd.DataFrame, monitor: str) -> int:
    """1-based epoch with the best monitored value (the first one on ties), as EarlyStopping restores it."""
    values = history[monitor].to_numpy()
    return int((values.argmax() if MONITORS[monitor] == "max" else values.argmin()) + 1)


def predictions_table(model, splits: dict) -> pa.Table:
    """One row per example of each split: split name, true label, predicted fraud probability."""
    parts = []
    for name, (features, labels) in splits.items():
        probability = model.predict(features, batch_size=PREDICT_BATCH, verbose=0).ravel()
        parts.append(pd.DataFrame({"split": name, "label": labels, "probability": probability.astype(np.float64)}))
    return pa.Table.from_pandas(pd.concat(parts, ignore_index=True), preserve_index=False)


def main():
    if len(sys.argv) != 2:
        raise StageError(f"usage: python -m stages.train {{{'|'.join(STRATEGIES)}}}")
    strategy = sys.argv[1]
    settings = read_settings(strategy)
    splits = {name: load_scaled(name) for name in SPLITS}

    started = time.perf_counter()
    model, history = train(strategy, settings, splits["train"], splits["val"])
    seconds = time.perf_counter() - started
    monitor, best = settings["monitor"], best_epoch(history, settings["monitor"])

    model_path = MODELS_DIR / f"{strategy}.keras"
    with atomic_output(model_path) as tmp:
        model.save(tmp)
    write_parquet(
        predictions_table(model, {"val": splits["val"], "test": splits["test"]}),
        PREDICTIONS_DIR / f"{strategy}.parquet",
    )
    columns = [name for metric in HISTORY_METRICS for name in (metric, f"val_{metric}")]
    with atomic_output(f"{HISTORY_DIR}/{strategy}.csv") as tmp:
        history[columns].rename_axis("epoch").rename(index=lambda i: i + 1).to_csv(tmp)
    write_json(
        f"{METRICS_DIR}/{strategy}.json",
        {
            "epochs_run": len(history),
            "best_epoch": best,
            f"best_{monitor}": float(history[monitor].iloc[best - 1]),
        },
    )
    log.info(
        "%s: %d epochs in %.1f s, best epoch %d (%s %.4f); model written to %s",
        strategy,
        len(history),
        seconds,
        best,
        monitor,
        history[monitor].iloc[best - 1],
        model_path,
    )


if __name__ == "__main__":
    run(main)
