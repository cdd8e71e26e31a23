"""scale: fit the preprocessing (fraudflow/preprocess.py) on the training split only; transform every split.

Writes data/scaled/: <split>_features.npy (float32), <split>_labels.npy (int8), <split>_ids.parquet (the data.ids
columns, when there are any) and preprocessing.json (what was fitted, as data). Every pass streams the splits in
batches, so memory does not grow with the rows.
"""

import json
from contextlib import ExitStack

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fraudflow import inputs, preprocess
from fraudflow.common import (
    PREPROCESSING_FILE,
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
from fraudflow.schema import max_categories, roles_of


def transform_split(split: pq.ParquetFile, roles: dict, prep: dict, name: str, folder):
    """Write one split's features, labels and ids, batch by batch."""
    rows, ids = split.metadata.num_rows, roles["ids"]
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
                features.write(preprocess.transform(frame, prep))
                labels.write(frame[roles["label"]].to_numpy(np.int8))
                if ids:
                    id_writer.write(batch.select(ids))
                bar.update(batch.num_rows)


def main():
    params = load_params("scale")
    clip = require(params, "scale", "clip", lambda v: is_number(v) and v > 0, "a number > 0")
    limit = max_categories()
    splits = {name: inputs.parquet_file(SPLIT_DIR / f"{name}.parquet", "split") for name in SPLITS}
    roles = roles_of(splits["train"].schema_arrow, SPLIT_DIR / "train.parquet")

    def read_train(columns):
        return splits["train"].iter_batches(inputs.batch_rows(), columns=columns)

    prep = preprocess.fit(read_train, roles, clip, limit)
    with atomic_output(SCALED_DIR) as tmp:
        tmp.mkdir()
        for name, split in splits.items():
            transform_split(split, roles, prep, name, tmp)
        (tmp / PREPROCESSING_FILE.name).write_text(json.dumps(prep, indent=2) + "\n")
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
