"""The tutorial's own code as one plain script: the reference the benchmark compares the pipeline with.

It follows ../shared/reference/imbalanced_data_tutorial.txt: pandas CSV, sklearn split and scaler, the Keras
model and metrics, `model.fit` on arrays for baseline and class weights, and `sample_from_datasets` over
two shuffled, repeated per-example datasets for oversampling.

    python benchmarks/tutorial_reference.py --csv creditcard.csv.gz [--seed 42]
        the whole tutorial with early stopping (as the notebook runs it; with a seed, on the pipeline's split)
    python benchmarks/tutorial_reference.py --scaled data/scaled --epochs 20 20 50
        training only, on the pipeline's scaled splits, for fixed epoch counts (no early stopping)

It prints one line per strategy, `reference <strategy>: <epochs> epochs, <seconds> s` (building the model
and fitting it, as the pipeline's log line `<strategy>: <epochs> epochs in <seconds> s`), and a total line.
"""

import argparse
import time

import numpy as np

STRATEGIES = ("baseline", "weighted", "resampled")
BATCH_SIZE = 2048
BUFFER_SIZE = 100000
RESAMPLED_STEPS = 20


def tutorial_data(csv_path, seed=None):
    """The tutorial's cleaning, split and scaling; with a seed, the pipeline's seeded stratified split."""
    import pandas as pd
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    cleaned_df = pd.read_csv(csv_path)
    cleaned_df.pop("Time")
    eps = 0.001
    cleaned_df["Log Ammount"] = np.log(cleaned_df.pop("Amount") + eps)
    stratify = (lambda df: df["Class"]) if seed is not None else (lambda df: None)
    train_df, test_df = train_test_split(cleaned_df, test_size=0.2, random_state=seed, stratify=stratify(cleaned_df))
    train_df, val_df = train_test_split(train_df, test_size=0.2, random_state=seed, stratify=stratify(train_df))
    labels = [np.array(df.pop("Class")) for df in (train_df, val_df, test_df)]
    scaler = StandardScaler()
    train_features = np.clip(scaler.fit_transform(np.array(train_df)), -5, 5)
    val_features = np.clip(scaler.transform(np.array(val_df)), -5, 5)
    test_features = np.clip(scaler.transform(np.array(test_df)), -5, 5)
    return (train_features, labels[0]), (val_features, labels[1]), (test_features, labels[2])


def scaled_data(directory):
    return tuple(
        (np.load(f"{directory}/{s}_features.npy"), np.load(f"{directory}/{s}_labels.npy"))
        for s in ("train", "val", "test")
    )


def run(data, epochs_by_strategy, early_stopping):
    import tensorflow as tf
    from tensorflow import keras

    (train_features, train_labels), (val_features, val_labels), (test_features, _) = data
    metrics = [
        keras.metrics.TruePositives(name="tp"),
        keras.metrics.FalsePositives(name="fp"),
        keras.metrics.TrueNegatives(name="tn"),
        keras.metrics.FalseNegatives(name="fn"),
        keras.metrics.BinaryAccuracy(name="accuracy"),
        keras.metrics.Precision(name="precision"),
        keras.metrics.Recall(name="recall"),
        keras.metrics.AUC(name="auc"),
        keras.metrics.AUC(name="prc", curve="PR"),
    ]

    def make_model(output_bias=None):
        if output_bias is not None:
            output_bias = tf.keras.initializers.Constant(output_bias)
        model = keras.Sequential(
            [
                keras.Input(shape=(train_features.shape[-1],)),
                keras.layers.Dense(16, activation="relu"),
                keras.layers.Dropout(0.5),
                keras.layers.Dense(1, activation="sigmoid", bias_initializer=output_bias),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss=keras.losses.BinaryCrossentropy(), metrics=metrics
        )
        return model

    callbacks = (
        [
            keras.callbacks.EarlyStopping(
                monitor="val_auc", verbose=1, patience=10, mode="max", restore_best_weights=True
            )
        ]
        if early_stopping
        else []
    )
    neg, pos = np.bincount(train_labels)
    total = neg + pos
    initial_model = make_model(output_bias=np.log([pos / neg]))
    initial_weights = initial_model.get_weights()
    seconds = {}
    for strategy in STRATEGIES:
        started = time.perf_counter()
        model = make_model()
        model.set_weights(initial_weights)
        if strategy == "resampled":
            bool_train_labels = train_labels != 0

            def make_ds(features, labels):
                return tf.data.Dataset.from_tensor_slices((features, labels)).shuffle(BUFFER_SIZE).repeat()

            pos_ds = make_ds(train_features[bool_train_labels], train_labels[bool_train_labels])
            neg_ds = make_ds(train_features[~bool_train_labels], train_labels[~bool_train_labels])
            resampled_ds = tf.data.Dataset.sample_from_datasets([pos_ds, neg_ds], weights=[0.5, 0.5])
            resampled_ds = resampled_ds.batch(BATCH_SIZE).prefetch(2)
            model.layers[-1].bias.assign([0])
            val_ds = (
                tf.data.Dataset.from_tensor_slices((val_features, val_labels)).cache().batch(BATCH_SIZE).prefetch(2)
            )
            history = model.fit(
                resampled_ds,
                epochs=epochs_by_strategy[strategy],
                steps_per_epoch=RESAMPLED_STEPS,
                callbacks=callbacks,
                validation_data=val_ds,
                verbose=0,
            )
        else:
            class_weight = {0: total / (2.0 * neg), 1: total / (2.0 * pos)} if strategy == "weighted" else None
            history = model.fit(
                train_features,
                train_labels,
                batch_size=BATCH_SIZE,
                epochs=epochs_by_strategy[strategy],
                callbacks=callbacks,
                validation_data=(val_features, val_labels),
                class_weight=class_weight,
                verbose=0,
            )
        seconds[strategy] = time.perf_counter() - started
        print(f"reference {strategy}: {len(history.epoch)} epochs, {seconds[strategy]:.1f} s", flush=True)
        model.predict(test_features, batch_size=BATCH_SIZE, verbose=0)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", help="creditcard.csv(.gz): run the whole tutorial, with early stopping")
    source.add_argument("--scaled", help="the pipeline's data/scaled directory: training only")
    parser.add_argument("--seed", type=int, help="seed Keras and use the pipeline's stratified split with this seed")
    parser.add_argument(
        "--epochs",
        type=int,
        nargs=3,
        metavar=("BASELINE", "WEIGHTED", "RESAMPLED"),
        help="fixed epochs per strategy, no early stopping (default: 100 100 1000, early stopping)",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.seed is not None:
        import keras

        keras.utils.set_random_seed(args.seed)
    data = tutorial_data(args.csv, args.seed) if args.csv else scaled_data(args.scaled)
    epochs = dict(zip(STRATEGIES, args.epochs or (100, 100, 1000), strict=True))
    run(data, epochs, early_stopping=args.epochs is None)
    print(f"reference total: {time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
