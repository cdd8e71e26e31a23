"""Train several members of one strategy at once: one Keras model holds every member's weights side by side.

Each training step updates every member, each on its own batch: inputs are (members, batch, features), and the
dense layers hold one kernel per member (one batched matrix product for all). Members are independent (their
losses are summed, Adam works per weight), so this is the same as training them one by one, but each step's
fixed cost is paid once for all of them.
"""

import numpy as np
import pandas as pd

from fraudflow.common import StageError, quiet_tensorflow
from fraudflow.stats import Ranking, Thresholded

with quiet_tensorflow():
    import keras
    import tensorflow as tf

# Early stopping direction of each validation metric it may watch.
MONITORS = {"val_auc": "max", "val_prc": "max", "val_loss": "min", "val_precision": "max", "val_recall": "max"}
# Rows per call when only predicting: results do not depend on it.
PREDICT_BATCH = 16384


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


def member_seed(seed: int, member: int) -> int:
    """A seed of its own for each member, derived from train.seed."""
    return int(np.random.SeedSequence([seed, member]).generate_state(1)[0])


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


def shuffled_epoch(x: tf.Tensor, y: tf.Tensor, members: int, batch_size: int, seed: int, epoch):
    """A function step -> (x, y) of (members, batch, ...): each member its own seeded permutation of the rows."""
    rows = tf.range(tf.shape(y)[0])
    order = tf.stack(
        [
            tf.random.experimental.stateless_shuffle(
                rows, seed=tf.stack([tf.constant(member_seed(seed, m), tf.int64), epoch])
            )
            for m in range(members)
        ]
    )

    def batch(step):
        index = order[:, step * batch_size : (step + 1) * batch_size]
        return tf.gather(x, index), tf.gather(y, index)

    return batch


def balanced_epoch(x: tf.Tensor, y: tf.Tensor, members: int, batch_size: int, seed: int, epoch, steps: int):
    """A function step -> (x, y): each member's batch is half positives, half negatives, drawn with replacement."""
    positives, negatives = tf.where(y == 1)[:, 0], tf.where(y == 0)[:, 0]
    n_pos = batch_size // 2
    labels = tf.concat([tf.ones([members, n_pos]), tf.zeros([members, batch_size - n_pos])], axis=1)

    def draw(pool, count, step, part):
        key = tf.stack([tf.constant(seed, tf.int64), (epoch * steps + tf.cast(step, tf.int64)) * 2 + part])
        picks = tf.random.stateless_uniform([members, count], key, maxval=tf.shape(pool, tf.int64)[0], dtype=tf.int64)
        return tf.gather(pool, picks)

    def batch(step):
        index = tf.concat([draw(positives, n_pos, step, 0), draw(negatives, batch_size - n_pos, step, 1)], axis=1)
        return tf.gather(x, index), labels

    return batch


class MemberTrainer:
    """Runs whole epochs of the stacked model as single compiled calls; returns each member's mean loss."""

    def __init__(self, model, strategy: str, settings: dict, x_train: np.ndarray, y_train: np.ndarray):
        self.model, self.strategy, self.settings = model, strategy, settings
        self.optimizer = keras.optimizers.Adam(learning_rate=settings["learning_rate"])
        self.x, self.y = tf.constant(x_train), tf.constant(y_train.astype(np.float32))
        self.members = model.input_shape[0]
        batch_size, rows = settings["batch_size"], len(y_train)
        self.steps = settings["steps_per_epoch"] if strategy == "resampled" else -(-rows // batch_size)
        self.class_weight = tf.constant(class_weights(y_train) if strategy == "weighted" else (1.0, 1.0), tf.float32)
        self.optimizer.build(model.trainable_weights)
        self.run_epoch = tf.function(self._epoch)

    def _batches(self, epoch):
        s = self.settings
        if self.strategy == "resampled":
            return balanced_epoch(self.x, self.y, self.members, s["batch_size"], s["seed"], epoch, self.steps)
        return shuffled_epoch(self.x, self.y, self.members, s["batch_size"], s["seed"], epoch)

    def _epoch(self, epoch):
        batch = self._batches(epoch)
        total, seen = tf.zeros([self.members]), tf.constant(0.0)
        for step in tf.range(self.steps):
            x, y = batch(step)
            with tf.GradientTape() as tape:
                probability = self.model(x, training=True)
                # Per member: the mean over its batch of the (class-weighted) cross-entropy, as Keras computes it.
                example_loss = keras.losses.binary_crossentropy(y[..., None], probability)
                example_loss *= tf.gather(self.class_weight, tf.cast(y, tf.int32))
                member_loss = tf.reduce_mean(example_loss, axis=1)
                loss = tf.reduce_sum(member_loss)
            gradients = tape.gradient(loss, self.model.trainable_weights)
            self.optimizer.apply(gradients, self.model.trainable_weights)
            size = tf.cast(tf.shape(y)[1], tf.float32)
            total, seen = total + member_loss * size, seen + size
        return total / seen


def member_predictor(model):
    """A function features (rows, n) -> (rows, members) probabilities: every member scores every row.

    Compiled once per model; rows go through in blocks of PREDICT_BATCH.
    """
    members = model.input_shape[0]
    every_member = tf.function(lambda x: model(tf.broadcast_to(x, [members, *x.shape]), training=False))

    def predict(features: np.ndarray) -> np.ndarray:
        blocks = range(0, len(features), PREDICT_BATCH)
        parts = [every_member(tf.constant(features[i : i + PREDICT_BATCH])).numpy()[..., 0].T for i in blocks]
        return np.concatenate(parts).astype(np.float64)

    return predict


def validation_scores(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """Exact validation metrics of every member (columns of `probabilities`), as arrays over members."""
    ones = np.ones((len(labels), 1))
    result = {"val_loss": [], "val_auc": [], "val_prc": [], "val_precision": [], "val_recall": []}
    for column in probabilities.T:
        ranking = Ranking(labels, column).scores(ones)
        at_half = Thresholded(labels, column, 0.5).scores(ones)
        result["val_loss"].append(at_half["log_loss"][0])
        result["val_auc"].append(ranking["roc_auc"][0])
        result["val_prc"].append(ranking["average_precision"][0])
        result["val_precision"].append(at_half["precision"][0])
        result["val_recall"].append(at_half["recall"][0])
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
        raise StageError(f"the training split needs both classes; it has {positives} frauds in {len(labels)} rows")
    return float(np.log(positives / (len(labels) - positives)))


def fit_members(strategy: str, settings: dict, train_xy, val_xy, on_epoch=None):
    """Train settings['members'] members of one strategy, each with its own early stopping.

    Returns the stacked model and the members as plain Keras models, both with each member's own best
    weights restored, the per-member history (a row per member and epoch it trained) and the early stopping.
    """
    keras.utils.set_random_seed(settings["seed"])
    tf.config.experimental.enable_op_determinism()
    (x_train, y_train), (x_val, y_val) = train_xy, val_xy
    # Built before any strategy-specific step, so member i starts from the same weights in every strategy.
    members = initial_members(x_train.shape[1], settings, initial_bias(y_train))
    model = stack(members, settings)
    if strategy == "resampled":  # the batches are balanced, so the base rate is 1/2
        model.layers[-1].bias.assign(np.zeros_like(model.layers[-1].bias.numpy()))
    trainer = MemberTrainer(model, strategy, settings, x_train, y_train)
    stopping = MemberEarlyStopping(settings["members"], settings["monitor"], settings["patience"])
    predict = member_predictor(model)
    rows = []
    for epoch in range(1, settings["epochs"] + 1):
        training = trainer.run_epoch(tf.constant(epoch, tf.int64)).numpy()
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
