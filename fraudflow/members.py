"""Train several members of one strategy at once: one Keras model holds every member's weights side by side.

Each training step updates every member, each on its own batch: inputs are (members, batch, features), and the
dense layers hold one kernel per member (one batched matrix product for all). Members are independent (their
losses are summed, Adam works per weight), so this is the same as training them one by one, but each step's
fixed cost is paid once for all of them.
"""

import numpy as np
import pandas as pd

from fraudflow.batches import balanced_rows, class_pools, member_samples, shuffled_rows
from fraudflow.common import StageError, quiet_tensorflow
from fraudflow.inputs import batch_rows
from fraudflow.scaled import NpyRows, check_negative_rate, member_seed, validation_sample
from fraudflow.stats import Ranking, Thresholded
from fraudflow.strategies import Strategy

with quiet_tensorflow():
    import keras
    import tensorflow as tf

# Early stopping direction of each validation metric it may watch.
MONITORS = {"val_auc": "max", "val_prc": "max", "val_loss": "min", "val_precision": "max", "val_recall": "max"}
# Rows per call when only predicting: results do not depend on it.
PREDICT_BATCH = 16384
# A training split with at most this many bytes of features is held in memory; a larger one is read chunk by chunk.
RESIDENT_BYTES = 1 << 28


class MemberDense(keras.layers.Layer):
    """A Dense layer with one kernel and bias per member: (members, batch, in) -> (members, batch, units)."""

    def __init__(self, members: int, units: int, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.members, self.units, self.activation = members, units, keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(self.members, input_shape[-1], self.units), name="kernel")
        self.bias = self.add_weight(shape=(self.members, self.units), initializer="zeros", name="bias")

    def call(self, inputs):
        return self.activation(tf.matmul(inputs, self.kernel) + self.bias[:, None, :])


def build_member(n_features: int, settings: dict, output_bias: float) -> keras.Sequential:
    """One member: the tutorial's Dense(16, relu) -> Dropout(0.5) -> Dense(1, sigmoid), output bias set."""
    return keras.Sequential(
        [
            keras.Input(shape=(n_features,)),
            keras.layers.Dense(settings["hidden_units"], activation="relu"),
            keras.layers.Dropout(settings["dropout"]),
            keras.layers.Dense(1, activation="sigmoid", bias_initializer=keras.initializers.Constant(output_bias)),
        ]
    )


def initial_members(n_features: int, settings: dict, output_bias: float) -> list[keras.Sequential]:
    """The members' starting models: member i gets the same weights in every strategy with the same seed."""
    members = []
    for member in range(settings["members"]):
        keras.utils.set_random_seed(member_seed(settings["seed"], member))
        members.append(build_member(n_features, settings, output_bias))
    return members


def stack(members: list[keras.Sequential], settings: dict) -> keras.Sequential:
    """One model holding every member's weights (its Dropout draws an independent mask per member)."""
    n_features, count = members[0].input_shape[-1], len(members)
    model = keras.Sequential(
        [
            keras.Input(shape=(None, n_features), batch_size=count),
            MemberDense(count, settings["hidden_units"], activation="relu"),
            keras.layers.Dropout(settings["dropout"], seed=settings["seed"]),
            MemberDense(count, 1, activation="sigmoid"),
        ]
    )
    set_stacked_weights(model, [m.get_weights() for m in members])
    return model


def set_stacked_weights(model: keras.Sequential, weights: list[list[np.ndarray]]):
    """Load per-member Dense weights [kernel1, bias1, kernel2, bias2] into the stacked model."""
    model.set_weights([np.stack(tensors) for tensors in zip(*weights, strict=True)])


def member_weights(model: keras.Sequential) -> list[list[np.ndarray]]:
    """The stacked model's weights, split back into one [kernel1, bias1, kernel2, bias2] list per member."""
    stacked = model.get_weights()
    return [[tensor[member] for tensor in stacked] for member in range(stacked[0].shape[0])]


def class_weights(labels: np.ndarray) -> tuple[float, float]:
    """w_c = total / (2 * n_c): each class carries half of the total weight."""
    counts = np.bincount(labels, minlength=2)
    return len(labels) / (2.0 * counts[0]), len(labels) / (2.0 * counts[1])


def example_loss(strategy: Strategy, settings: dict):
    """The strategy's per-row loss, Keras's function of (labels, probabilities): binary cross-entropy, or binary focal
    cross-entropy with the settings' gamma and alpha (null alpha: no class balancing)."""
    if strategy.loss == "binary_crossentropy":
        return keras.losses.binary_crossentropy
    if strategy.loss == "binary_focal_crossentropy":
        alpha = settings["alpha"]

        def focal(y, p):
            return keras.losses.binary_focal_crossentropy(
                y, p, apply_class_balancing=alpha is not None, alpha=alpha or 0.25, gamma=settings["gamma"]
            )

        return focal
    raise StageError(f"fraudflow/strategies.py: strategy {strategy.name!r} has an unknown loss {strategy.loss!r}")


class MemberTrainer:
    """Runs each epoch of the stacked model as compiled calls of many steps; returns each member's mean loss.

    A training split of at most RESIDENT_BYTES of features is read once and every batch gathered from it in
    the graph; a larger one stays on disk and each chunk of steps gets its rows read (NpyRows.take) just before
    it runs. Both feed the steps the same rows, so they train the same weights.
    """

    def __init__(self, model, strategy: Strategy, settings: dict, features, labels: np.ndarray, samples: np.ndarray):
        self.model, self.strategy, self.settings, self.labels = model, strategy, settings, labels
        self.optimizer = keras.optimizers.Adam(learning_rate=settings["learning_rate"])
        self.members, self.samples = model.input_shape[0], samples
        batch_size = settings["batch_size"]
        balanced = strategy.balanced_batches
        self.steps = settings["steps_per_epoch"] if balanced else -(-samples.shape[1] // batch_size)
        sample_labels = labels[samples[0]]  # every member's sample has the same class counts
        self.class_weight = tf.constant(
            class_weights(sample_labels) if strategy.class_weights else (1.0, 1.0), tf.float32
        )
        self.pools = class_pools(labels, samples) if balanced else None
        self.loss = example_loss(strategy, settings)
        if isinstance(features, NpyRows) and features.nbytes > RESIDENT_BYTES:
            self.source, self.resident = features, None
            self.chunk = max(1, batch_rows() // batch_size) * batch_size
        else:
            whole = features.rows(0, len(features)) if isinstance(features, NpyRows) else features
            self.source, self.resident, self.chunk = None, tf.constant(whole), None
        self.optimizer.build(model.trainable_weights)
        n_features = features.shape[1]
        self.run_steps = tf.function(
            self._steps,
            input_signature=[
                tf.TensorSpec([None, n_features], tf.float32),
                tf.TensorSpec([self.members, None], tf.int64),
                tf.TensorSpec([self.members, None], tf.float32),
                tf.TensorSpec([self.members], tf.float32),
                tf.TensorSpec([], tf.float32),
            ],
        )

    def epoch_rows(self, epoch: int) -> np.ndarray:
        """(members, rows) training row indices in the order they are used this epoch."""
        s = self.settings
        if self.strategy.balanced_batches:
            return balanced_rows(self.pools, s["batch_size"], s["seed"], epoch, self.steps)
        return shuffled_rows(self.samples, s["seed"], epoch)

    def run_epoch(self, epoch: int) -> np.ndarray:
        index = self.epoch_rows(epoch)
        total, seen = tf.zeros([self.members]), tf.constant(0.0)
        width = self.chunk or index.shape[1]
        for start in range(0, index.shape[1], width):
            rows = index[:, start : start + width]
            y = self.labels[rows].astype(np.float32)
            if self.resident is not None:
                x = self.resident
            else:
                x, rows = self.source.take(rows.ravel()), np.arange(rows.size).reshape(rows.shape)
            total, seen = self.run_steps(x, rows.astype(np.int64), y, total, seen)
        return (total / seen).numpy()

    def _steps(self, x, rows, labels, total, seen):
        """Steps over consecutive batches of `rows` (indices into x), each member on its own row of them."""
        batch_size = self.settings["batch_size"]
        for step in tf.range((tf.shape(rows)[1] + batch_size - 1) // batch_size):
            batch = slice(step * batch_size, (step + 1) * batch_size)
            x_batch, y = tf.gather(x, rows[:, batch]), labels[:, batch]
            with tf.GradientTape() as tape:
                probability = self.model(x_batch, training=True)
                # Per member: the mean over its batch of the (class-weighted) loss, as Keras computes it.
                row_loss = self.loss(y[..., None], probability) * tf.gather(self.class_weight, tf.cast(y, tf.int32))
                member_loss = tf.reduce_mean(row_loss, axis=1)
                loss = tf.reduce_sum(member_loss)
            gradients = tape.gradient(loss, self.model.trainable_weights)
            self.optimizer.apply(gradients, self.model.trainable_weights)
            size = tf.cast(tf.shape(y)[1], tf.float32)
            total, seen = total + member_loss * size, seen + size
        return total, seen


def member_predictor(model):
    """A function features (rows, n) -> (rows, members) probabilities: every member scores every row.

    Scored in float64 with the model's float32 weights (cast exactly) on the float32 features, so the exported
    model, which computes the same in double, agrees to double precision's rounding whatever the order of its sums.
    Compiled once; the weights are read at each call (training scores validation after every epoch); rows go
    through in blocks of PREDICT_BATCH.
    """
    members, n_features = model.input_shape[0], model.input_shape[-1]
    exact = keras.Sequential(
        [
            keras.Input(shape=(None, n_features), batch_size=members, dtype="float64"),
            MemberDense(members, model.layers[0].units, activation="relu", dtype="float64"),
            MemberDense(members, 1, activation="sigmoid", dtype="float64"),
        ]
    )
    every_member = tf.function(lambda x: exact(tf.broadcast_to(x, [members, *x.shape]), training=False))

    def predict(features: np.ndarray) -> np.ndarray:
        exact.set_weights([tensor.astype(np.float64) for tensor in model.get_weights()])
        blocks = range(0, len(features), PREDICT_BATCH)
        parts = [
            every_member(tf.constant(features[i : i + PREDICT_BATCH].astype(np.float64))).numpy()[..., 0].T
            for i in blocks
        ]
        return np.concatenate(parts)

    return predict


def validation_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Exact validation metrics of every member (columns of `probabilities`), as arrays over members."""
    ones, positive = np.ones((len(labels), 1)), labels == 1
    result = {"val_loss": [], "val_auc": [], "val_prc": [], "val_precision": [], "val_recall": []}
    for column in probabilities.T:
        ranking, at_half = Ranking(column[positive], 1), Thresholded(0.5, 1)
        ranking.add(labels, column, ones)
        at_half.add(labels, column, ones)
        ranked, counted = ranking.scores(ones[positive]), at_half.scores()
        result["val_loss"].append(counted["log_loss"][0])
        result["val_auc"].append(ranked["roc_auc"][0])
        result["val_prc"].append(ranked["average_precision"][0])
        result["val_precision"].append(counted["precision"][0])
        result["val_recall"].append(counted["recall"][0])
    return {name: np.array(values) for name, values in result.items()}


class MemberEarlyStopping:
    """Keras's early stopping (patience, best weights kept), kept for every member separately."""

    def __init__(self, members: int, monitor: str, patience: int):
        self.monitor, self.patience = monitor, patience
        self.sign = 1.0 if MONITORS[monitor] == "max" else -1.0
        self.best = np.full(members, -np.inf)
        self.best_epoch = np.zeros(members, dtype=int)
        self.epochs_run = np.zeros(members, dtype=int)
        self.active = np.ones(members, dtype=bool)
        self.best_weights = [None] * members

    def update(self, epoch: int, values: np.ndarray, weights: list[list[np.ndarray]]):
        """Record epoch (1-based) for the members still training; stop those out of patience."""
        for member in np.flatnonzero(self.active):
            self.epochs_run[member] = epoch
            if self.sign * values[member] > self.best[member]:
                self.best[member], self.best_epoch[member] = self.sign * values[member], epoch
                self.best_weights[member] = weights[member]
            elif epoch - self.best_epoch[member] >= self.patience:
                self.active[member] = False

    @property
    def done(self) -> bool:
        return not self.active.any()


def initial_bias(labels: np.ndarray) -> float:
    """log(pos/neg): the output bias that makes the untrained model predict the base rate."""
    positives = int(labels.sum())
    if positives == 0 or positives == len(labels):
        raise StageError(f"the training split needs both classes; it has {positives} positives in {len(labels)} rows")
    return float(np.log(positives / (len(labels) - positives)))


def fit_members(strategy: Strategy, settings: dict, train, val, on_epoch=None):
    """Train settings['members'] members of one strategy, each with its own early stopping.

    train and val are (features, labels): features an array or NpyRows. Each member trains on its own sample
    of the training split (settings['negative_rate'], batches.member_samples); early stopping scores the
    validation split's fixed sample at the same rate. Returns the stacked model and the members as plain Keras
    models, both with each member's own best weights restored, the per-member history (a row per member and
    epoch it trained) and the early stopping.
    """
    keras.utils.set_random_seed(settings["seed"])
    tf.config.experimental.enable_op_determinism()
    (x_train, y_train), (x_val, y_val) = train, val
    rate = settings["negative_rate"]
    check_negative_rate(y_train, rate)
    samples = member_samples(y_train, rate, settings["seed"], settings["members"])
    validation = validation_sample(y_val, rate, settings["seed"])
    x_val = x_val.take(validation) if isinstance(x_val, NpyRows) else x_val[validation]
    y_val = y_val[validation]
    # Built before any strategy-specific step, so member i starts from the same weights in every strategy.
    members = initial_members(x_train.shape[1], settings, initial_bias(y_train[samples[0]]))
    model = stack(members, settings)
    if strategy.balanced_batches:  # the base rate is 1/2
        model.layers[-1].bias.assign(np.zeros_like(model.layers[-1].bias.numpy()))
    trainer = MemberTrainer(model, strategy, settings, x_train, y_train, samples)
    stopping = MemberEarlyStopping(settings["members"], settings["monitor"], settings["patience"])
    predict = member_predictor(model)
    rows = []
    for epoch in range(1, settings["epochs"] + 1):
        training = trainer.run_epoch(epoch)
        validation = validation_scores(y_val, predict(x_val))
        training_members = np.flatnonzero(stopping.active)
        stopping.update(epoch, validation[settings["monitor"]], member_weights(model))
        for member in training_members:
            rows.append(
                {"member": member, "epoch": epoch, "loss": float(training[member])}
                | {name: float(values[member]) for name, values in validation.items()}
            )
        if on_epoch:
            on_epoch(epoch, training_members, validation)
        if stopping.done:
            break
    set_stacked_weights(model, stopping.best_weights)
    for member, weights in zip(members, stopping.best_weights, strict=True):
        member.set_weights(weights)
    return model, members, pd.DataFrame(rows), stopping
