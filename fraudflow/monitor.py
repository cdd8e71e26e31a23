"""monitor: `python -m fraudflow.monitor SCORES REPORT [--threshold 0.25]` -- how far a scored file has drifted from
the training split, and the deployed rule's precision, caught share and cost estimated without labels.

SCORES (.csv, .csv.gz, .parquet or a folder of Parquet files) holds scored rows as `python -m stages.score` writes
them: every column export/model.json profiles (its "profile"), the rule's cost column if it has one, `probability`
and `flagged`. It is streamed in batches and validated as score validates its input.
Drift is the population stability index (PSI) of each profiled column's shares in its training bins (deciles, a
category's levels, other and missing), and of the probability's in the validation split's bins: sum over bins of
(actual - expected) * ln(actual / expected). By the usual reading, below 0.1 is stable, 0.1 to 0.25 a moderate
shift and above 0.25 a major one. The estimates (fraudflow/monitoring.py's LabelFree) take each row's label as
drawn from its probability: their intervals hold only while the model stays calibrated on these rows.
REPORT (.json, written atomically) has the PSIs, the columns above the threshold and the estimates; a one-screen
summary goes to stdout.

Exit status: 0 when no PSI is above the threshold, 3 when one is (the report is written either way), 1 on an error
(one line, no report), 2 on a usage error.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fraudflow import inputs
from fraudflow.common import CSV_SUFFIXES, EXPORT_DIR, StageError, run, write_json
from fraudflow.monitoring import LabelFree, category_counts, chance_psi, number_counts, psi
from fraudflow.schema import checked_categories, checked_costs, checked_numbers, fail_at

CARD_FILE = EXPORT_DIR / "model.json"
PSI_THRESHOLD = 0.25  # above it, a major shift by the usual reading
DRIFT_STATUS = 3  # the exit status when a PSI is above the threshold
SHOWN = 10  # the columns the summary lists, largest PSI first
SCORES = "probability"  # the score column, binned as the profile's "scores"


def load_card() -> dict:
    """export/model.json, which must have the training split's profile."""
    if not CARD_FILE.is_file():
        raise StageError(f"{CARD_FILE}: not found; run 'dvc repro export' to make it")
    card = json.loads(CARD_FILE.read_text())
    if "profile" not in card:
        raise StageError(f"{CARD_FILE}: no training profile to compare with; run 'dvc repro export' to make it again")
    return card


def required(card: dict) -> list[str]:
    """The columns a scored file must have: the profiled ones, the rule's cost column, probability and flagged."""
    cost = [card["cost_column"]] if "cost_column" in card else []
    return list(dict.fromkeys([*card["profile"]["columns"], *cost, SCORES, "flagged"]))


def csv_input(path: Path, card: dict):
    """The CSV's batches, the numeric columns it needs as float64, every other as text."""
    names = inputs.csv_first_block(path).schema.names
    inputs.require_columns(names, path, required(card))
    categories = {name for name, profile in card["profile"]["columns"].items() if profile["type"] == "category"}
    numeric = set(required(card)) - categories
    schema = pa.schema([(name, pa.float64() if name in numeric else pa.string()) for name in names])
    text = pa.schema([(name, pa.string()) for name in names])

    def name_bad_value(path, first_row):
        """Validate the block Arrow could not convert again, read as text: that names the column, row and value."""
        block = inputs.csv_block_at(path, first_row, text)
        if block is not None:
            rule_inputs(block, card, path, first_row)
            bin_counts(block, card, path, first_row)

    return inputs.csv_batches(path, schema, "monitor", name_bad_value)


def parquet_input(path: Path, card: dict):
    """The batches of a Parquet file or folder."""
    dataset = inputs.parquet_dataset(path)
    inputs.require_columns(dataset.schema.names, path, required(card))
    return inputs.parquet_batches(dataset, "monitor")


def rule_inputs(batch, card: dict, path, first_row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
    """Each row's probability (a number in [0, 1]), whether it is flagged (0 or 1) and what it costs if it is a
    missed positive (its cost column's value, or the flat cost_false_negative); fails naming the first bad row."""
    if "cost_column" in card:
        name = card["cost_column"]
        missed = checked_costs(
            inputs.numbers_if_possible(batch.column(name)).to_pandas(), path, name, first_row
        ).to_numpy()
    else:
        missed = card["cost_false_negative"]
    scores = {}
    for name, valid, what in [
        (SCORES, lambda v: (v >= 0) & (v <= 1), "a number in [0, 1]"),
        ("flagged", lambda v: v.isin([0, 1]), "0 or 1"),
    ]:
        raw = inputs.numbers_if_possible(batch.column(name)).to_pandas()
        values = pd.to_numeric(raw, errors="coerce")
        fail_at(path, name, raw, [(~valid(values), f"not {what}")], first_row)
        scores[name] = values.to_numpy(np.float64)
    return scores[SCORES], scores["flagged"] == 1, missed


def bin_counts(batch, card: dict, path, first_row: int) -> dict[str, np.ndarray]:
    """Each profiled column's counts in its training bins, its values validated as score validates them."""
    counts = {}
    for name, profile in card["profile"]["columns"].items():
        if profile["type"] == "number":
            raw = inputs.numbers_if_possible(batch.column(name)).to_pandas()
            values = checked_numbers(raw, path, name, name in card["log"], card["missing"], first_row).to_numpy()
            if "log_eps" in profile:  # binned as clean transforms the column
                values = np.log(values + profile["log_eps"])
            counts[name] = number_counts(values, profile["edges"])
        else:
            raw = pc.cast(batch.column(name), pa.string()).to_pandas()
            values = checked_categories(raw, path, name, card["missing"], first_row).to_numpy()
            counts[name] = category_counts(values, profile["levels"])
    return counts


def watch(source: Path, card: dict) -> tuple[int, dict[str, np.ndarray], LabelFree]:
    """Stream the scored file: its rows, the bin counts of each profiled column and of the probability, and the
    rule's label-free sums."""
    read = csv_input if source.name.endswith(CSV_SUFFIXES) else parquet_input
    rows, counts, label_free = 0, {}, LabelFree()
    for batch in inputs.exact_batches(read(source, card), inputs.batch_rows()):
        probability, flagged, missed = rule_inputs(batch, card, source, rows)
        found = bin_counts(batch, card, source, rows)
        found[SCORES] = number_counts(probability, card["profile"]["scores"]["edges"])
        counts = {name: counts.get(name, 0) + found[name] for name in found}
        label_free.add(probability, flagged, missed)
        rows += batch.num_rows
    if rows == 0:
        raise inputs.header_only(source)
    return rows, counts, label_free


def make_report(source: Path, card: dict, threshold: float) -> dict:
    """The report of a scored file: drift per profiled column and of the scores, the columns above the threshold
    (largest first) and the rule's estimates."""
    rows, counts, label_free = watch(source, card)
    profile = card["profile"]
    shares = {name: spec["shares"] for name, spec in profile["columns"].items()} | {SCORES: profile["scores"]["shares"]}
    every = {name: psi(expected, counts[name]) for name, expected in shares.items()}
    chance = {name: chance_psi(expected, rows) for name, expected in shares.items()}
    drifted = [name for name, value in every.items() if value > max(threshold, chance[name])]
    return {
        "scored_file": str(source),
        "rows": rows,
        "strategy": card["strategy"],
        "threshold": threshold,
        "drift": {"columns": {name: every[name] for name in profile["columns"]}, "scores": every[SCORES]},
        "chance": chance,  # the PSI each column reaches by chance in this many rows: drift is flagged above it
        "drifted": sorted(drifted, key=lambda n: -every[n]),
        "estimates": label_free.result(card["cost_false_positive"]),
    }


def summary(report: dict, card: dict) -> str:
    """The report on one screen."""
    threshold, drift, estimates = report["threshold"], report["drift"], report["estimates"]
    lines = [f"{report['scored_file']}: {report['rows']:,} rows, scored by the {report['strategy']} model"]
    lines.append(f"drift (PSI against the training split; below 0.1 stable, above 0.25 major; * above {threshold:g}):")
    by_chance = max(report["chance"].values())
    if by_chance > threshold:
        lines.append(f"  (in {report['rows']:,} rows a PSI up to {by_chance:.3f} arises by chance: * only above it)")
    columns = sorted(drift["columns"].items(), key=lambda item: -item[1])

    def line(name, value):
        return f"  {name:<28}{value:8.3f}{'  *' if name in report['drifted'] else ''}"

    lines += [line(name, value) for name, value in columns[:SHOWN]]
    if len(columns) > SHOWN:
        lines.append(f"  ({len(columns) - SHOWN} more columns, lower; every one is in the report)")
    lines.append(line(SCORES, drift["scores"]) + "  (the scores)")
    value = f"the positives' {card['cost_column']}" if "cost_column" in card else "the positives"
    lines.append("at the deployed rule, estimated without labels (95 % intervals, if the model is calibrated here):")
    lines.append(f"  precision            {shown(estimates['precision'], 3)}  ({estimates['flagged']:,} rows flagged)")
    lines.append(f"  caught               {shown(estimates['caught'], 3)}  (the share of {value})")
    lines.append(f"  cost per 1,000 rows  {shown(estimates['cost_per_1000'], 1)}")
    if report["drifted"]:
        lines.append(f"drift: {', '.join(report['drifted'])} above {threshold:g} (exit status {DRIFT_STATUS})")
    else:
        lines.append(f"no drift: no PSI above {threshold:g} beyond chance")
    return "\n".join(lines)


def shown(entry: dict, digits: int) -> str:
    """'estimate [lower, upper]', or 'undefined'."""
    if entry["estimate"] is None:
        return "undefined"
    return f"{entry['estimate']:.{digits}f} [{entry['lower']:.{digits}f}, {entry['upper']:.{digits}f}]"


def threshold_value(text: str) -> float:
    """--threshold's value: a number > 0."""
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def main():
    parser = argparse.ArgumentParser(
        prog="python -m fraudflow.monitor",
        description="How far a scored file has drifted from the training split (population stability index, PSI), "
        "and the deployed rule's precision, caught share and cost per 1,000 rows, estimated without labels.",
        epilog="PSI: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a major one. Exit status: 0 no PSI "
        f"above the threshold, {DRIFT_STATUS} one above it (the report is written either way), 1 an error, 2 a usage "
        "error.",
    )
    parser.add_argument("scores", type=Path, help="scored rows: .csv, .csv.gz, .parquet or a folder of Parquet files")
    parser.add_argument("report", type=Path, help="the report to write: .json")
    parser.add_argument(
        "--threshold",
        type=threshold_value,
        default=PSI_THRESHOLD,
        help="the PSI above which a column counts as drifted (default %(default)g: a major shift)",
    )
    args = parser.parse_args()
    suffixes = (*CSV_SUFFIXES, ".parquet")
    if not args.scores.exists():
        raise StageError(f"{args.scores}: file not found")
    if not (args.scores.is_dir() or args.scores.name.endswith(suffixes)):
        raise StageError(f"{args.scores}: expected a folder or a file name ending in {', '.join(suffixes)}")
    if not args.report.name.endswith(".json"):
        raise StageError(f"{args.report}: expected a file name ending in .json")
    if not args.report.parent.is_dir():
        raise StageError(f"{args.report}: folder '{args.report.parent}' does not exist")
    card = load_card()
    report = make_report(args.scores, card, args.threshold)
    write_json(args.report, report)
    print(summary(report, card))
    if report["drifted"]:
        sys.exit(DRIFT_STATUS)  # for a scheduler to act on


if __name__ == "__main__":
    run(main)
