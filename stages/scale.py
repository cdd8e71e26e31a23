"""scale: fit the preprocessing (fraudflow/preprocess.py) on the training split only; transform every split.

Writes data/scaled/: <split>_features.npy (float32), <split>_labels.npy (int8), <split>_ids.parquet (the data.ids
columns, when there are any) and preprocessing.json (what was fitted, as data); and apart from them, so a change of
data.cost retrains nothing, data/costs/: costs.json (the cost column's name and the mean value of the training
split's positives, or a null column) and, with a cost column, val.npy and test.npy (float64, its values in the
rows' order), which evaluate reads; and data/profile/profile.json, the training split's profile
(fraudflow/profile.py: its columns' decile shares and its features' means) that export writes into model.json for
monitoring and reason codes. Every pass streams the splits in batches, so memory does not grow with the rows.
"""

import json
from contextlib import ExitStack

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fraudflow import inputs, preprocess
from fraudflow.common import (
    COSTS_DIR,
    PREPROCESSING_FILE,
    PROFILE_FILE,
    SCALED_DIR,
    SPLIT_DIR,
    SPLITS,
    atomic_output,
    is_number,
    load_params,
    log,
    require,
    run,
)
from fraudflow.outputs import NpyWriter, RowGroupWriter
from fraudflow.profile import Profiler, decile_edges, present_counts
from fraudflow.schema import max_categories, roles_of


def transform_split(split: pq.ParquetFile, roles: dict, prep: dict, name: str, folder, costs, profiler=None) -> list:
    """Write one split's features, labels and ids, batch by batch, each batch into `profiler` too when given. With a
    cost column, its values go to `costs` (a NpyWriter), or with costs None its positive rows' values are
    returned."""
    rows, ids, cost, positive_values = split.metadata.num_rows, roles["ids"], roles.get("cost"), []
    with ExitStack() as stack:
        features = stack.enter_context(
            NpyWriter(folder / f"{name}_features.npy", rows, len(prep["features"]), np.float32)
        )
        labels = stack.enter_context(NpyWriter(folder / f"{name}_labels.npy", rows, None, np.int8))
        if ids:
            ids_schema = pa.schema([split.schema_arrow.field(name) for name in ids])
            id_writer = stack.enter_context(RowGroupWriter(folder / f"{name}_ids.parquet", ids_schema))
        with inputs.progress(rows, "rows", f"scale {name}") as bar:
            for batch in split.iter_batches(inputs.batch_rows()):
                frame = batch.to_pandas()
                block = preprocess.transform(frame, prep)
                features.write(block)
                if profiler:
                    profiler.add(frame, block)
                batch_labels = frame[roles["label"]].to_numpy(np.int8)
                labels.write(batch_labels)
                if ids:
                    id_writer.write(batch.select(ids))
                if cost and costs is not None:
                    costs.write(frame[cost].to_numpy(np.float64))
                elif cost:
                    positive_values.append(frame[cost].to_numpy(np.float64)[batch_labels == 1])
                bar.update(batch.num_rows)
    return positive_values


def write_splits(splits: dict, roles: dict, prep: dict, scaled, costs_folder, profiler: Profiler):
    """Every split's scaled files into `scaled`; costs.json and, with a cost column, the val and test splits' values
    into `costs_folder`; the training split into `profiler`."""
    cost = roles.get("cost")
    for name, split in splits.items():
        with ExitStack() as stack:
            rows = split.metadata.num_rows
            values = (
                stack.enter_context(NpyWriter(costs_folder / f"{name}.npy", rows, None, np.float64))
                if cost and name != "train"
                else None
            )
            found = transform_split(split, roles, prep, name, scaled, values, profiler if name == "train" else None)
        if name == "train":
            positive_values = found
    summary = {"column": cost, "train_positive_mean": float(np.concatenate(positive_values).mean()) if cost else None}
    (costs_folder / "costs.json").write_text(json.dumps(summary, indent=2) + "\n")  # every bit (write_json rounds)


def main():
    params = load_params("scale")
    clip = require(params, "scale", "clip", lambda v: is_number(v) and v > 0, "a number > 0")
    limit = max_categories()
    splits = {name: inputs.parquet_file(SPLIT_DIR / f"{name}.parquet", "split") for name in SPLITS}
    roles = roles_of(splits["train"].schema_arrow, SPLIT_DIR / "train.parquet")

    def read_train(columns):
        return splits["train"].iter_batches(inputs.batch_rows(), columns=columns)

    prep = preprocess.fit(read_train, roles, clip, limit)
    profiler = Profiler(decile_edges(read_train, prep["numeric"], present_counts(read_train, prep["numeric"])), prep)
    with atomic_output(SCALED_DIR) as tmp, atomic_output(COSTS_DIR) as costs_tmp:
        tmp.mkdir()
        costs_tmp.mkdir()
        write_splits(splits, roles, prep, tmp, costs_tmp, profiler)
        (tmp / PREPROCESSING_FILE.name).write_text(json.dumps(prep, indent=2) + "\n")
        with atomic_output(PROFILE_FILE) as profile_tmp:
            profile_tmp.write_text(json.dumps(profiler.result(), indent=2) + "\n")
    log.info(
        "scale: wrote %s (%d features from %d numeric and %d category columns, clipped to [-%g, %g])",
        SCALED_DIR,
        len(prep["features"]),
        len(prep["numeric"]),
        len(prep["categories"]),
        clip,
        clip,
    )


if __name__ == "__main__":
    run(main)
