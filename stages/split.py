"""split: train / validation / test as in the tutorial (20 % test, then 20 % of the rest), seeded."""

from sklearn.model_selection import train_test_split

from stages.common import (
    CLEAN_PARQUET,
    LABEL,
    SPLIT_DIR,
    SPLITS,
    StageError,
    atomic_output,
    is_int,
    is_number,
    load_params,
    log,
    read_parquet,
    require,
    run,
    write_json,
)

METRICS_FILE = "metrics/split.json"


def split(df, test_size: float, val_size: float, stratify: bool, seed: int) -> dict:
    """{'train': ..., 'val': ..., 'test': ...} DataFrames; stratified by Class if asked."""
    try:
        rest, test = train_test_split(
            df, test_size=test_size, random_state=seed, stratify=df[LABEL] if stratify else None
        )
        train, val = train_test_split(
            rest, test_size=val_size, random_state=seed, stratify=rest[LABEL] if stratify else None
        )
    except ValueError as error:
        raise StageError(f"{CLEAN_PARQUET}: cannot split {len(df)} rows ({error})") from error
    return {"train": train, "val": val, "test": test}


def main():
    params = load_params("split")
    fraction = lambda v: is_number(v) and 0 < v < 1
    test_size = require(params, "split", "test_size", fraction, "a fraction between 0 and 1")
    val_size = require(params, "split", "val_size", fraction, "a fraction between 0 and 1")
    stratify = require(params, "split", "stratify", lambda v: isinstance(v, bool), "true or false")
    seed = require(params, "split", "seed", lambda v: is_int(v) and v >= 0, "an integer >= 0")

    df = read_parquet(CLEAN_PARQUET).to_pandas()
    parts = split(df, test_size, val_size, stratify, seed)
    with atomic_output(SPLIT_DIR) as tmp:
        tmp.mkdir()
        for name in SPLITS:
            parts[name].to_parquet(tmp / f"{name}.parquet", index=False)
    counts = {name: {"rows": len(parts[name]), "frauds": int(parts[name][LABEL].sum())} for name in SPLITS}
    write_json(METRICS_FILE, counts)
    for name, count in counts.items():
        log.info("split: %-5s %7d rows, %4d frauds", name, count["rows"], count["frauds"])


if __name__ == "__main__":
    run(main)
