"""score: `python -m stages.score INPUT OUTPUT` -- the exported model's probability and flag for new rows.

INPUT is a CSV (plain or .gz) or Parquet file with the columns the model takes (export/model.json, "inputs"),
validated as `clean` does, before the model is loaded (export/model.onnx, by ONNX Runtime); category levels not seen
in training score as "(other)".
OUTPUT (.csv, .csv.gz or .parquet) holds, row for row in input order, the input's other columns untouched
(an id, Time, Class ...; text from a CSV), `probability` and `flagged`: 1 when probability > the exported
threshold, or with a cost column (model.json's cost_column, which INPUT must then have, a number >= 0 in every
row) when probability / (1 - probability) * its value > k * cost_false_positive, as evaluate scored it; else 0.
Both files are streamed in batches, so memory does not grow with their size.
"""

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fraudflow import inputs
from fraudflow.common import CSV_SUFFIXES, EXPORT_DIR, StageError, atomic_output, log, run
from fraudflow.costs import flagged
from fraudflow.schema import MISSING_LEVEL, checked_categories, checked_costs, checked_numbers

MODEL_FILE = EXPORT_DIR / "model.onnx"
CARD_FILE = EXPORT_DIR / "model.json"
SCORE_COLUMNS = ("probability", "flagged")  # added to the output


def load_card() -> dict:
    """export/model.json: the model's inputs, missing-value policy and the rule that flags a row."""
    missing = [path for path in (CARD_FILE, MODEL_FILE) if not path.is_file()]
    if missing:
        raise StageError(f"{missing[0]}: not found; run 'dvc repro export' to make it")
    return json.loads(CARD_FILE.read_text())


def load_predictor(card: dict, threads: int = 2):
    """The exported model as a function of its named inputs, run by ONNX Runtime on `threads` threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    session = onnxruntime.InferenceSession(MODEL_FILE, options, providers=["CPUExecutionProvider"])

    def predict(inputs: dict) -> np.ndarray:
        return session.run(["probability"], inputs)[0]

    return predict


def require_columns(names: list[str], path: Path, card: dict):
    """Fails naming the first column the model takes, or the cost column its rule reads, that `names` lacks."""
    inputs.require_columns(names, path, [entry["column"] for entry in card["inputs"]])
    if "cost_column" in card:
        inputs.require_columns(names, path, [card["cost_column"]], " (model.json's cost_column)")


def csv_input(path: Path, card: dict):
    """The CSV's schema (the model's numeric columns as float64, all others as text: a cost column the model does
    not take is carried to the output as written) and a generator of its batches."""
    names = inputs.csv_first_block(path).schema.names
    require_columns(names, path, card)
    numeric = {entry["column"] for entry in card["inputs"] if entry["type"] == "number"}
    schema = pa.schema([(name, pa.float64() if name in numeric else pa.string()) for name in names])
    text = pa.schema([(name, pa.string()) for name in names])

    def name_bad_value(path, first_row):
        """Read the block that Arrow could not convert again as text and validate it as clean does: that names the
        column, row and value."""
        block = inputs.csv_block_at(path, first_row, text)
        if block is not None:
            cost_values(block, card, path, first_row)
            model_inputs(block, card, path, first_row)

    return schema, inputs.csv_batches(path, schema, "score", name_bad_value)


def parquet_input(path: Path, card: dict):
    """The Parquet file's schema and a generator of its batches."""
    dataset = inputs.parquet_dataset(path)
    require_columns(dataset.schema.names, path, card)
    return dataset.schema, inputs.parquet_batches(dataset, "score")


def prefetched(iterator):
    """The iterator's items, the next one read in a background thread while the caller works on this one."""
    with ThreadPoolExecutor(1) as pool:
        upcoming = pool.submit(next, iterator, None)
        while (item := upcoming.result()) is not None:
            upcoming = pool.submit(next, iterator, None)
            yield item


def model_inputs(batch, card: dict, path, first_row: int) -> tuple[dict, np.ndarray]:
    """The model's named inputs, (n, 1) arrays validated as clean does (errors name the row in the file), and
    per row whether a category column holds a level unseen in training (it scores as (other))."""
    inputs, unseen = {}, np.zeros(batch.num_rows, dtype=bool)
    for entry in card["inputs"]:
        name = entry["column"]
        if entry["type"] == "number":
            raw = numbers_if_possible(batch.column(name)).to_pandas()
            values = checked_numbers(raw, path, name, name in card["log"], card["missing"], first_row).to_numpy()
        else:
            raw = pc.cast(batch.column(name), pa.string()).to_pandas()
            values = checked_categories(raw, path, name, card["missing"], first_row).to_numpy()
            unseen |= ~np.isin(values, [*entry["vocabulary"], *entry["folded"], MISSING_LEVEL])
        inputs[entry["input"]] = values.reshape(-1, 1)
    return inputs, unseen


def cost_values(batch, card: dict, path, first_row: int) -> np.ndarray | None:
    """The cost column's values, validated as clean does; None when model.json's rule has no cost column."""
    if "cost_column" not in card:
        return None
    name = card["cost_column"]
    return checked_costs(numbers_if_possible(batch.column(name)).to_pandas(), path, name, first_row).to_numpy()


def flags(probability: np.ndarray, costs: np.ndarray | None, card: dict) -> np.ndarray:
    """model.json's rule: 1 to flag a row, else 0."""
    if costs is None:
        return (probability > card["threshold"]).astype(np.int8)
    return flagged(probability, costs, card["k"], card["cost_false_positive"]).astype(np.int8)


def numbers_if_possible(column):
    """The column as float64 when Arrow can convert every value, else as it is (validate then decides)."""
    try:
        return pc.cast(column, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column


@contextmanager
def open_writer(path: Path, schema: pa.Schema):
    """A writer of record batches to a Parquet or CSV file (plain or .gz, by the name's ending)."""
    if path.name.endswith(".parquet"):
        with pq.ParquetWriter(path, schema) as writer:
            yield writer
    else:
        with pa.output_stream(path, compression="detect") as stream, pacsv.CSVWriter(stream, schema) as writer:
            yield writer


def score(source: Path, destination: Path, card: dict, load_predict=load_predictor) -> tuple[int, int]:
    """Stream source through the model into destination (written atomically); the model is loaded once the first
    batch is valid. Returns the number of rows and of rows with a category level unseen in training."""
    read = parquet_input if source.name.endswith(".parquet") else csv_input
    schema, batches = read(source, card)
    taken = [name for name in SCORE_COLUMNS if name in schema.names]
    if taken:
        raise StageError(f"{source}: has a column '{taken[0]}', which the output would repeat")
    columns = {entry["column"] for entry in card["inputs"]}
    kept = [schema.field(name) for name in schema.names if name not in columns]
    output_schema = pa.schema([*kept, ("probability", pa.float64()), ("flagged", pa.int8())])
    rows = unseen_rows = 0
    predict = None
    with atomic_output(destination) as tmp, open_writer(tmp, output_schema) as writer:
        for batch in prefetched(inputs.exact_batches(batches, inputs.batch_rows())):
            costs = cost_values(batch, card, source, rows)  # first, as clean checks it first
            values, unseen = model_inputs(batch, card, source, rows)
            predict = predict or load_predict(card)
            probability = np.asarray(predict(values)).ravel()
            scored = [*(batch.column(field.name) for field in kept), pa.array(probability)]
            scored.append(pa.array(flags(probability, costs, card)))
            writer.write_table(pa.Table.from_arrays(scored, schema=output_schema))
            rows += batch.num_rows
            unseen_rows += int(unseen.sum())
        if rows == 0:
            raise inputs.header_only(source)
    return rows, unseen_rows


def main():
    parser = argparse.ArgumentParser(prog="python -m stages.score", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="rows to score: .csv, .csv.gz or .parquet")
    parser.add_argument("output", type=Path, help="scores: .csv, .csv.gz or .parquet")
    args = parser.parse_args()
    suffixes = (*CSV_SUFFIXES, ".parquet")
    for path in (args.input, args.output):
        if not path.name.endswith(suffixes):
            raise StageError(f"{path}: expected a file name ending in {', '.join(suffixes)}")
    if not args.input.is_file():
        raise StageError(f"{args.input}: file not found")
    if not args.output.parent.is_dir():
        raise StageError(f"{args.output}: folder '{args.output.parent}' does not exist")
    card = load_card()
    rows, unseen = score(args.input, args.output, card)
    if unseen:
        which = "1 row" if unseen == 1 else f"{unseen} rows"
        log.info("score: %s had a category level unseen in training; scored as (other)", which)
    rule = f"k {card['k']:g} on {card['cost_column']}" if "cost_column" in card else f"threshold {card['threshold']:g}"
    log.info("score: wrote %s (%d rows, %s model, %s)", args.output, rows, card["strategy"], rule)


if __name__ == "__main__":
    run(main)
