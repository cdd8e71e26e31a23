"""Scoring on Spark: `python -m stages.score INPUT OUTPUT --engine spark [--master URL]`, a Parquet folder (or file)
into a Parquet folder, partition by partition where the data lives. Each task runs the same validation, model and
rule as `python -m stages.score` (its model_inputs, cost_values, flags and top_reasons, in mapInArrow over batches
of score's size) with the exported ONNX models, which travel inside the task (their bytes, loaded once per
partition); the project's code reaches the workers as a zip (SparkContext.addPyFile). pyspark is optional:
requirements-spark.txt.
"""

import os
import re
import sys
import zipfile
from pathlib import Path

from fraudflow.common import StageError, atomic_output, log
from fraudflow.inputs import batch_rows

FILE_COLUMN = "__fraudflow_file"  # each row's file, for errors; dropped before writing
CODE = ("fraudflow", "stages")  # the packages the workers import
STAGE_ERROR = re.compile(r"fraudflow\.\w+\.\w*Error: (.*)")  # a StageError (or RowError) from a task


def spark_session(master: str):
    """A Spark session on `master` (local[*]: this machine's cores), its workers on this interpreter."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        from pyspark.sql import SparkSession
    except ImportError as error:
        raise StageError("--engine spark: pyspark is not installed (pip install -r requirements-spark.txt)") from error
    builder = SparkSession.builder.appName("fraudflow score").master(master).config("spark.ui.enabled", "false")
    builder = builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows()))  # score's batches
    return builder.getOrCreate()


def code_zip(root: Path) -> Path:
    """The project's packages as a zip in a temporary file, for the workers."""
    target = Path(os.environ.get("TMPDIR", "/tmp")) / f"fraudflow-code-{os.getpid()}.zip"
    with zipfile.ZipFile(target, "w") as packed:
        for package in CODE:
            for path in sorted((root / package).glob("*.py")):
                packed.write(path, f"{package}/{path.name}")
    return target


def output_fields(schema, reasons: int, source: Path) -> list[tuple[str, str]]:
    """The added columns, as score adds them, with their Spark DDL types."""
    from stages import score

    added = [("probability", "double"), ("flagged", "tinyint")]
    added += [(name, "string" if str(kind) == "string" else "double") for name, kind in score.reason_fields(reasons)]
    score.check_added(schema.names, [name for name, _ in added], source)
    return added


def scorer(card: dict, model: bytes, explainer: bytes | None, reasons: int, added: list[str]):
    """The function mapInArrow runs on each partition's Arrow batches: score.py's validation, rule and reasons on
    each, the models loaded on the first batch, the `added` columns after the input's. A bad value fails naming its
    file and its row there."""

    def score_batches(batches):
        import numpy as np
        import pyarrow as pa

        from fraudflow import onnx_graph
        from stages import score

        names = [entry["column"] for entry in card["inputs"]]
        predict = explain = None
        for batch in batches:
            files = batch.column(FILE_COLUMN)
            table = pa.Table.from_batches([batch]).drop_columns([FILE_COLUMN])
            try:
                costs = score.cost_values(table, card, "spark", 0)
                values, _ = score.model_inputs(table, card, "spark", 0)
            except StageError:
                name_bad_row(sorted(set(files.to_pylist())), card)
                raise
            predict = predict or onnx_graph.runner(model, "probability", 1)
            probability = np.asarray(predict(values)).ravel()
            arrays = [*table.columns, pa.array(probability), pa.array(score.flags(probability, costs, card))]
            if reasons:
                explain = explain or onnx_graph.runner(explainer, "contributions", 1)
                arrays += score.top_reasons(np.asarray(explain(values)), names, reasons)
            yield from pa.Table.from_arrays(arrays, names=[*table.column_names, *added]).to_batches()

    return score_batches


def name_bad_row(files: list[str], card: dict):
    """Validate the batch's files one by one, as stages.score reads one: the first bad value fails there, naming its
    file and its row."""
    import pyarrow as pa

    from stages import score

    for file in files:
        path = Path(re.sub(r"^file:(//)?", "", file))
        _, batches = score.parquet_input(path, card)
        rows = 0
        for batch in batches:
            table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
            score.cost_values(table, card, path, rows)
            score.model_inputs(table, card, path, rows)
            rows += table.num_rows


def score_on_spark(source: Path, destination: Path, card: dict, master: str, reasons: int) -> int:
    """Score the Parquet folder or file `source` into the Parquet folder `destination` (written whole, or not at
    all) on Spark; returns the number of rows."""
    from pyspark.errors import PythonException
    from pyspark.sql import functions

    from stages import score

    spark, code = spark_session(master), code_zip(Path(__file__).resolve().parents[1])
    try:
        spark.sparkContext.addPyFile(str(code))
        frame = spark.read.parquet(str(source))
        added = output_fields(frame.schema, reasons, source)
        score.require_columns(frame.columns, source, card)
        model = score.MODEL_FILE.read_bytes()
        explainer = score.REASONS_FILE.read_bytes() if reasons else None
        schema = ", ".join([f"`{field.name}` {field.dataType.simpleString()}" for field in frame.schema])
        schema += "".join(f", `{name}` {kind}" for name, kind in added)
        tagged = frame.withColumn(FILE_COLUMN, functions.input_file_name())
        scored = tagged.mapInArrow(scorer(card, model, explainer, reasons, [name for name, _ in added]), schema)
        with atomic_output(destination) as tmp:
            try:
                scored.write.parquet(str(tmp))
            except PythonException as error:
                found = STAGE_ERROR.findall(str(error))
                raise StageError(found[-1] if found else str(error).splitlines()[0]) from None
            rows = spark.read.parquet(str(tmp)).count()
        log.info("score: Spark (%s) wrote %s", master, destination)
        return rows
    finally:
        spark.stop()
        code.unlink()
