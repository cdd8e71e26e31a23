"""scale: fit the preprocessing (fraudflow/preprocess.py) on the training split only; transform every split.

Writes data/scaled/: <split>_features.npy (float32), <split>_labels.npy (int8), <split>_ids.parquet (the data.ids
columns, when there are any) and preprocessing.json (what was fitted, as data).
"""

import json

import numpy as np

from fraudflow import preprocess
from fraudflow.common import (
    PREPROCESSING_FILE,
    SCALED_DIR,
    SPLIT_DIR,
    SPLITS,
    atomic_output,
    is_number,
    load_params,
    log,
    read_parquet,
    require,
    run,
)
from fraudflow.schema import max_categories, roles_of


def main():
    params = load_params("scale")
    clip = require(params, "scale", "clip", lambda v: is_number(v) and v > 0, "a number > 0")
    limit = max_categories()
    tables = {name: read_parquet(SPLIT_DIR / f"{name}.parquet") for name in SPLITS}
    roles = roles_of(tables["train"], SPLIT_DIR / "train.parquet")
    frames = {name: table.to_pandas() for name, table in tables.items()}
    prep = preprocess.fit(frames["train"], roles, clip, limit)
    with atomic_output(SCALED_DIR) as tmp:
        tmp.mkdir()
        for name, frame in frames.items():
            np.save(tmp / f"{name}_features.npy", preprocess.transform(frame, prep))
            np.save(tmp / f"{name}_labels.npy", frame[roles["label"]].to_numpy(np.int8))
            if roles["ids"]:
                frame[roles["ids"]].to_parquet(tmp / f"{name}_ids.parquet", index=False)
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
