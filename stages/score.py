"""score: `python -m stages.score INPUT OUTPUT [--reasons N]` -- the exported model's probability and flag for new
rows, and optionally the columns that pushed each score up most.

INPUT is a CSV (plain or .gz), a Parquet file or a folder of them, with the columns the model takes
(export/model.json, "inputs"), validated as `clean` does, before the model is loaded (export/model.onnx, by ONNX
Runtime); category levels not seen in training score as "(other)".
OUTPUT (.csv, .csv.gz or .parquet) holds, row for row in input order, the input's columns (from a CSV, the model's
numbers as numbers and every other column as its text: an id, Time, Class ...), then `probability` and `flagged`
(so that `python -m fraudflow.monitor` can watch the file): 1 when probability > the exported threshold, or with a
cost column (model.json's cost_column, which INPUT must then have, a number >= 0 in every row) when
probability / (1 - probability) * its value > k * cost_false_positive, as evaluate scored it; else 0. For a folder
INPUT, OUTPUT may be a folder too: each Parquet file scored into the same path under it, file by file.
With --reasons N, also reason_1 ... reason_N, the columns that pushed the row's score up most, each with
reason_<i>_contribution, its contribution (> 0) to the logit against the reference row (export/reasons.onnx,
fraudflow/onnx_reasons.py; model.json's reasons.reference_logit); largest first, empty where fewer columns pushed
the score up.
Input and output are streamed in batches, so memory does not grow with their size.
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

from fraudflow import inputs, onnx_graph
from fraudflow.common import CSV_SUFFIXES, EXPORT_DIR, StageError, atomic_output, log, run
from fraudflow.costs import flagged
from fraudflow.schema import MISSING_LEVEL, checked_categories, checked_costs, checked_numbers

MODEL_FILE = EXPORT_DIR / "model.onnx"
REASONS_FILE = EXPORT_DIR / "reasons.onnx"
CARD_FILE = EXPORT_DIR / "model.json"


def load_card() -> dict:
    """export/model.json: the model's inputs, missing-value policy and the rule that flags a row."""
    missing = [path for path in (CARD_FILE, MODEL_FILE) if not path.is_file()]
    if missing:
        raise StageError(f"{missing[0]}: not found; run 'dvc repro export' to make it")
    return json.loads(CARD_FILE.read_text())


def load_predictor(card: dict, threads: int = 2):
    """export/model.onnx as a function of its named inputs: (n, 1) probabilities."""
    return onnx_graph.runner(MODEL_FILE, "probability", threads)


def load_explainer(card: dict, threads: int = 2):
    """export/reasons.onnx as a function of the model's named inputs: (n, columns) contributions to the logit."""
    if not REASONS_FILE.is_file():
        raise StageError(f"{REASONS_FILE}: not found; run 'dvc repro export' to make it")
    return onnx_graph.runner(REASONS_FILE, "contributions", threads)


def reason_fields(count: int) -> list[tuple[str, pa.DataType]]:
    """The output's reason columns: reason_<i> (a column's name) and reason_<i>_contribution, i = 1 .. count."""
    return [
        field
        for i in range(1, count + 1)
        for field in ((f"reason_{i}", pa.string()), (f"reason_{i}_contribution", pa.float64()))
    ]


def top_reasons(contributions: np.ndarray, names: list[str], count: int) -> list[pa.Array]:
    """Per row, the `count` columns of largest contribution > 0 (ties: the model's column order), as reason_fields;
    empty (null) where fewer columns pushed the score up."""
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :count]
    arrays = []
    for i in range(order.shape[1]):
        value = np.take_along_axis(contributions, order[:, i : i + 1], axis=1)[:, 0]
        up = value > 0
        arrays.append(pa.array(np.asarray(names, dtype=object)[order[:, i]], pa.string(), mask=~up))
        arrays.append(pa.array(value, pa.float64(), mask=~up))
    return arrays


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
    feed, unseen = {}, np.zeros(batch.num_rows, dtype=bool)
    for entry in card["inputs"]:
        name = entry["column"]
        if entry["type"] == "number":
            raw = inputs.numbers_if_possible(batch.column(name)).to_pandas()
            values = checked_numbers(raw, path, name, name in card["log"], card["missing"], first_row).to_numpy()
        else:
            raw = pc.cast(batch.column(name), pa.string()).to_pandas()
            values = checked_categories(raw, path, name, card["missing"], first_row).to_numpy()
            unseen |= ~np.isin(values, [*entry["vocabulary"], *entry["folded"], MISSING_LEVEL])
        feed[entry["input"]] = values.reshape(-1, 1)
    return feed, unseen


def cost_values(batch, card: dict, path, first_row: int) -> np.ndarray | None:
    """The cost column's values, validated as clean does; None when model.json's rule has no cost column."""
    if "cost_column" not in card:
        return None
    name = card["cost_column"]
    return checked_costs(inputs.numbers_if_possible(batch.column(name)).to_pandas(), path, name, first_row).to_numpy()


def flags(probability: np.ndarray, costs: np.ndarray | None, card: dict) -> np.ndarray:
    """model.json's rule: 1 to flag a row, else 0."""
    if costs is None:
        return (probability > card["threshold"]).astype(np.int8)
    return flagged(probability, costs, card["k"], card["cost_false_positive"]).astype(np.int8)


@contextmanager
def open_writer(path: Path, schema: pa.Schema):
    """A writer of record batches to a Parquet or CSV file (plain or .gz, by the name's ending)."""
    if path.name.endswith(".parquet"):
        with pq.ParquetWriter(path, schema) as writer:
            yield writer
    else:
        with pa.output_stream(path, compression="detect") as stream, pacsv.CSVWriter(stream, schema) as writer:
            yield writer


def check_reasons(reasons: int, card: dict):
    """--reasons: at most one per column the model takes."""
    if not 0 <= reasons <= len(card["inputs"]):
        raise StageError(f"--reasons: expected 0 to {len(card['inputs'])} (the columns the model takes), got {reasons}")


def check_added(columns: list[str], added: list[str], source):
    """The columns score adds must not be in the input already."""
    taken = [name for name in added if name in columns]
    if taken:
        raise StageError(f"{source}: has a column '{taken[0]}', which the output would repeat")


def score(
    source: Path,
    destination: Path,
    card: dict,
    load_predict=load_predictor,
    reasons: int = 0,
    load_explain=load_explainer,
    empty_ok: bool = False,
) -> tuple[int, int]:
    """Stream source (a file, or a Parquet folder read as one table) through the model into destination (written
    atomically), with `reasons` reason columns; the models are loaded once the first batch is valid. Returns the
    number of rows and of rows with a category level unseen in training. A source without rows fails, unless
    empty_ok: then destination holds no row."""
    check_reasons(reasons, card)
    read = parquet_input if source.is_dir() or source.name.endswith(".parquet") else csv_input
    schema, batches = read(source, card)
    added = [("probability", pa.float64()), ("flagged", pa.int8()), *reason_fields(reasons)]
    check_added(schema.names, [name for name, _ in added], source)
    names = [entry["column"] for entry in card["inputs"]]
    output_schema = pa.schema([*schema, *added])
    rows = unseen_rows = 0
    predict = explain = None
    with atomic_output(destination) as tmp, open_writer(tmp, output_schema) as writer:
        for batch in prefetched(inputs.exact_batches(batches, inputs.batch_rows())):
            costs = cost_values(batch, card, source, rows)  # first, as clean checks it first
            values, unseen = model_inputs(batch, card, source, rows)
            predict = predict or load_predict(card)
            probability = np.asarray(predict(values)).ravel()
            scored = [*batch.columns, pa.array(probability)]
            scored.append(pa.array(flags(probability, costs, card)))
            if reasons:
                explain = explain or load_explain(card)
                scored += top_reasons(np.asarray(explain(values)), names, reasons)
            writer.write_table(pa.Table.from_arrays(scored, schema=output_schema))
            rows += batch.num_rows
            unseen_rows += int(unseen.sum())
        if rows == 0 and not empty_ok:
            raise inputs.header_only(source)
    return rows, unseen_rows


def kept(load):
    """load(card), run on the first call only: one model for every file of a folder."""
    made = []

    def once(card):
        if not made:
            made.append(load(card))
        return made[0]

    return once


def score_folder(source: Path, destination: Path, card: dict, reasons: int = 0) -> tuple[int, int]:
    """Score each Parquet file of the folder `source` into the same path under the folder `destination` (written
    atomically, as a whole), partition by partition as Spark writes a folder: a bad row is named by its file and
    its row there, and a file without rows gives one without rows. Returns score's counts, summed."""
    predict, explain = kept(load_predictor), kept(load_explainer)
    rows = unseen = 0
    with atomic_output(destination) as tmp:
        for file in inputs.parquet_files(source):
            target = tmp / file.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            counts = score(file, target, card, predict, reasons, explain, empty_ok=True)
            rows, unseen = rows + counts[0], unseen + counts[1]
    return rows, unseen


def main():
    parser = argparse.ArgumentParser(prog="python -m stages.score", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help="rows to score: .csv, .csv.gz, .parquet or a folder of Parquet files")
    parser.add_argument(
        "output",
        type=Path,
        help="scores: .csv, .csv.gz or .parquet; or, for a folder, a folder (a file per input file)",
    )
    parser.add_argument(
        "--reasons", type=int, default=0, metavar="N", help="add the N columns that pushed each row's score up most"
    )
    parser.add_argument(
        "--engine",
        choices=["local", "spark"],
        default="local",
        help="local: this process (default); spark: a Parquet folder into a Parquet folder on Spark",
    )
    parser.add_argument("--master", default="local[*]", help="with --engine spark: the cluster (default %(default)s)")
    args = parser.parse_args()
    if args.engine == "spark":
        return score_on_spark(args)
    suffixes = (*CSV_SUFFIXES, ".parquet")
    if not args.input.exists():
        raise StageError(f"{args.input}: file not found")
    if not args.input.is_dir() and not args.input.name.endswith(suffixes):
        raise StageError(f"{args.input}: expected a folder or a file name ending in {', '.join(suffixes)}")
    to_folder = args.input.is_dir() and not args.output.name.endswith(suffixes)
    if not to_folder and not args.output.name.endswith(suffixes):
        raise StageError(f"{args.output}: expected a file name ending in {', '.join(suffixes)}")
    if not args.output.parent.is_dir():
        raise StageError(f"{args.output}: folder '{args.output.parent}' does not exist")
    card = load_card()
    scored = score_folder if to_folder else score
    rows, unseen = scored(args.input, args.output, card, reasons=args.reasons)
    if unseen:
        which = "1 row" if unseen == 1 else f"{unseen} rows"
        log.info("score: %s had a category level unseen in training; scored as (other)", which)
    rule = f"k {card['k']:g} on {card['cost_column']}" if "cost_column" in card else f"threshold {card['threshold']:g}"
    log.info("score: wrote %s (%d rows, %s model, %s)", args.output, rows, card["strategy"], rule)


def score_on_spark(args):
    """--engine spark: a Parquet folder or file into a Parquet folder (fraudflow/spark_scoring.py)."""
    if not (args.input.is_dir() or args.input.name.endswith(".parquet") and args.input.is_file()):
        raise StageError(f"{args.input}: --engine spark reads a Parquet folder or file")
    if args.output.name.endswith((*CSV_SUFFIXES, ".parquet")) or not args.output.parent.is_dir():
        raise StageError(f"{args.output}: --engine spark writes a Parquet folder, in an existing folder")
    from fraudflow.spark_scoring import score_on_spark as on_spark

    card = load_card()
    check_reasons(args.reasons, card)
    rows = on_spark(args.input, args.output, card, args.master, args.reasons)
    log.info("score: wrote %s (%d rows, %s model, on Spark %s)", args.output, rows, card["strategy"], args.master)


if __name__ == "__main__":
    run(main)
