"""scale: fit a StandardScaler on the training split only, transform all splits, clip; float32 .npy."""

import json

import numpy as np
from sklearn.preprocessing import StandardScaler

from fraudflow.common import (
    LABEL,
    SCALED_DIR,
    SCALER_FILE,
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


def transform(scaler: StandardScaler, features: np.ndarray, clip: float) -> np.ndarray:
    return np.clip(scaler.transform(features), -clip, clip).astype(np.float32)


def scaler_json(scaler: StandardScaler, feature_names: list[str], clip: float) -> dict:
    """Everything needed to scale new rows the same way, without pickle."""
    return {"features": feature_names, "mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist(), "clip": clip}


def main():
    params = load_params("scale")
    clip = require(params, "scale", "clip", lambda v: is_number(v) and v > 0, "a number > 0")

    frames = {name: read_parquet(SPLIT_DIR / f"{name}.parquet").to_pandas() for name in SPLITS}
    feature_names = [column for column in frames["train"].columns if column != LABEL]
    scaler = StandardScaler().fit(frames["train"][feature_names].to_numpy())
    with atomic_output(SCALED_DIR) as tmp:
        tmp.mkdir()
        for name, frame in frames.items():
            np.save(tmp / f"{name}_features.npy", transform(scaler, frame[feature_names].to_numpy(), clip))
            np.save(tmp / f"{name}_labels.npy", frame[LABEL].to_numpy(np.int8))
        (tmp / SCALER_FILE.name).write_text(json.dumps(scaler_json(scaler, feature_names, clip), indent=2) + "\n")
    log.info("scale: wrote %s (%d features, clipped to [-%g, %g])", SCALED_DIR, len(feature_names), clip, clip)


if __name__ == "__main__":
    run(main)
